"""Fixtures: tiny datasets in the ORIGINAL raw formats (builders in :mod:`smart.data.prepare.fixtures`,
shared with the paper-profile smoke run), and a loopback HTTP server.

Each builder writes the raw files from literal arrays; the tests compare the converted outputs with
expected arrays written by hand in the test modules.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from smart.data.prepare.fixtures import (
    build_ade,
    build_ade847,
    build_coco,
    build_coco2014,
    build_mapillary,
    build_pascal,
    build_refer,
    ids_to_rgb,
    refer_raw,
    write_jpg,
    write_json,
    write_png,
)


@pytest.fixture
def coco_root(tmp_path) -> Path:
    return build_coco(tmp_path / "datasets")


@pytest.fixture
def ade_root(tmp_path) -> Path:
    return build_ade(tmp_path / "datasets")


@pytest.fixture
def pascal_root(tmp_path) -> Path:
    return build_pascal(tmp_path / "datasets")


@pytest.fixture
def mapillary_root(tmp_path) -> Path:
    return build_mapillary(tmp_path / "datasets")


# ----------------------------------------------------------------------------------------------
# loopback HTTP server with optional Range support and scripted interruptions


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "TestServer/1.0"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        rng = self.headers.get("Range")
        start = 0
        if rng and srv.support_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.truncate_next > 0:  # send only part of the body, then drop the connection
            srv.truncate_next -= 1
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class LoopbackServer:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.files = {}
        self.httpd.requests = []
        self.httpd.support_range = True
        self.httpd.truncate_next = 0
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def serve(self, path: str, data: bytes) -> str:
        self.httpd.files[path] = data
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def set(self, *, support_range: bool | None = None, truncate_next: int | None = None) -> None:
        if support_range is not None:
            self.httpd.support_range = support_range
        if truncate_next is not None:
            self.httpd.truncate_next = truncate_next

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    srv = LoopbackServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def builders():
    """The raw-data builders, for tests that need a variant of a fixture."""
    import types

    return types.SimpleNamespace(coco=build_coco, ade=build_ade, ade847=build_ade847, pascal=build_pascal,
                                 mapillary=build_mapillary, refer=build_refer, coco2014=build_coco2014,
                                 refer_raw=refer_raw, write_png=write_png, write_jpg=write_jpg,
                                 ids_to_rgb=ids_to_rgb, write_json=write_json)


def prepare_ctx(root: Path, **kw):
    from smart.data.prepare.common import Context

    kw.setdefault("skip_count_check", True)
    kw.setdefault("workers", 1)
    return Context(root=root, raw_dir=kw.pop("raw_dir", root / "raw"), **kw)


@pytest.fixture
def make_ctx():
    """``make_ctx(root, **overrides)`` → a :class:`Context` (count check off, 1 worker by default)."""
    return prepare_ctx
