"""Download, checksum and extraction tests against a loopback (127.0.0.1) HTTP server only."""

import hashlib
import io
import json
import pickle
import tarfile
import zipfile

import pytest

from smart.data.prepare import download as dl
from smart.data.prepare.runner import prepare_dataset
from smart.errors import DatasetError

DATA = bytes(range(256)) * 40  # 10240 bytes
MD5 = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()


def _get(srv, url, dest, **kw):
    kw.setdefault("backoff", 0)
    kw.setdefault("chunk", 1000)
    return dl.download_file(url, dest, **kw)


def test_fresh_download_tofu(http_server, tmp_path):
    url = http_server.serve("/a.bin", DATA)
    dest = tmp_path / "raw/a.bin"
    cks = tmp_path / "checksums.json"
    assert _get(http_server, url, dest, checksums_file=cks) == dest
    assert dest.read_bytes() == DATA
    assert not (tmp_path / "raw/a.bin.part").exists()
    rec = json.loads(cks.read_text())["a.bin"]
    assert rec == {"sha256": SHA256, "size": len(DATA), "url": url}
    # a second call verifies the existing file against the record, without any request
    n = len(http_server.requests)
    _get(http_server, url, dest, checksums_file=cks)
    assert len(http_server.requests) == n
    # trust on first use: a changed file is refused
    dest.write_bytes(DATA[:-1] + b"x")
    with pytest.raises(DatasetError) as ei:
        _get(http_server, url, dest, checksums_file=cks)
    assert str(dest) in str(ei.value) and "[sha256]" in str(ei.value) and "first use" in str(ei.value)


def test_known_checksum_ok(http_server, tmp_path):
    url = http_server.serve("/b.zip", DATA)
    dest = _get(http_server, url, tmp_path / "b.zip", checksum=("md5", MD5))
    assert dest.read_bytes() == DATA


def test_resume_partial_file(http_server, tmp_path):
    url = http_server.serve("/c.bin", DATA)
    dest = tmp_path / "c.bin"
    (tmp_path / "c.bin.part").write_bytes(DATA[:3000])
    _get(http_server, url, dest, checksum=("md5", MD5))
    assert dest.read_bytes() == DATA
    assert http_server.requests[-1]["range"] == "bytes=3000-"
    assert len(http_server.requests) == 1


def test_resume_server_without_range(http_server, tmp_path):
    http_server.set(support_range=False)
    url = http_server.serve("/d.bin", DATA)
    dest = tmp_path / "d.bin"
    (tmp_path / "d.bin.part").write_bytes(b"\0" * 3000)  # would be wrong if appended to
    _get(http_server, url, dest, checksum=("md5", MD5))
    assert dest.read_bytes() == DATA


def test_complete_part_file(http_server, tmp_path):
    url = http_server.serve("/e.bin", DATA)
    (tmp_path / "e.bin.part").write_bytes(DATA)  # killed after the transfer, before the rename
    _get(http_server, url, tmp_path / "e.bin", checksum=("md5", MD5))
    assert (tmp_path / "e.bin").read_bytes() == DATA
    assert not (tmp_path / "e.bin.part").exists()


def test_interrupted_transfer_is_retried_with_range(http_server, tmp_path):
    url = http_server.serve("/f.bin", DATA)
    http_server.set(truncate_next=1)
    _get(http_server, url, tmp_path / "f.bin", checksum=("md5", MD5), timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert http_server.requests[0]["range"] is None
    assert http_server.requests[1]["range"] == f"bytes={len(DATA) // 2}-"


def test_interrupted_without_retries_keeps_part(http_server, tmp_path):
    url = http_server.serve("/g.bin", DATA)
    http_server.set(truncate_next=1)
    dest = tmp_path / "g.bin"
    with pytest.raises(DatasetError) as ei:
        _get(http_server, url, dest, retries=0, timeout=5)
    assert "run again to resume" in str(ei.value) and url in str(ei.value)
    assert not dest.exists()  # atomic: no final file before the transfer is complete
    assert (tmp_path / "g.bin.part").stat().st_size == len(DATA) // 2
    _get(http_server, url, dest)  # the next run resumes
    assert dest.read_bytes() == DATA
    assert http_server.requests[-1]["range"] == f"bytes={len(DATA) // 2}-"


def test_checksum_mismatch(http_server, tmp_path):
    url = http_server.serve("/h.bin", DATA)
    dest = tmp_path / "h.bin"
    with pytest.raises(DatasetError) as ei:
        _get(http_server, url, dest, checksum=("sha1", "0" * 40))
    msg = str(ei.value)
    assert "sha1 checksum mismatch" in msg and str(dest) in msg and "0" * 40 in msg
    assert hashlib.sha1(DATA).hexdigest() in msg
    assert not dest.exists() and not (tmp_path / "h.bin.part").exists()


def test_http_error(http_server, tmp_path):
    url = http_server.serve("/exists", DATA).replace("/exists", "/missing")
    with pytest.raises(DatasetError) as ei:
        _get(http_server, url, tmp_path / "m.bin")
    assert "HTTP 404" in str(ei.value) and url in str(ei.value)


def _zip_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_extract_zip_resumable_and_safe(tmp_path):
    arc = tmp_path / "x.zip"
    arc.write_bytes(_zip_bytes({"top/a.txt": b"aaa", "top/sub/b.txt": b"bb"}))
    out = tmp_path / "out"
    (out / "top").mkdir(parents=True)
    (out / "top/a.txt").write_bytes(b"a")  # truncated by an interrupted extraction
    dl.extract_archive(arc, out)
    assert (out / "top/a.txt").read_bytes() == b"aaa" and (out / "top/sub/b.txt").read_bytes() == b"bb"
    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip_bytes({"../escape.txt": b"x"}))
    with pytest.raises(DatasetError) as ei:
        dl.extract_archive(evil, out)
    assert str(evil) in str(ei.value) and "../escape.txt" in str(ei.value)
    assert not (tmp_path / "escape.txt").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(DatasetError) as ei:
        dl.extract_archive(bad, out)
    assert str(bad) in str(ei.value)


def test_extract_tar_gz(tmp_path):
    arc = tmp_path / "trainval.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        info = tarfile.TarInfo("trainval/2008_000001.mat")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"mat"))
    dl.extract_archive(arc, tmp_path / "voc")
    assert (tmp_path / "voc/trainval/2008_000001.mat").read_bytes() == b"mat"


def test_prepare_refcoco_with_download(http_server, tmp_path, builders, make_ctx, monkeypatch):
    """End to end: --download fetches the archives (loopback URLs), extracts them and converts."""
    refs, instances = builders.refer_raw("refcoco")
    refer_zip = _zip_bytes({"refcoco/refs(unc).p": pickle.dumps(refs, protocol=2),
                            "refcoco/instances.json": json.dumps(instances).encode(),
                            "refcoco/refs(google).p": pickle.dumps([], protocol=2)})
    src = tmp_path / "src"
    builders.coco2014(src)
    images = {f"train2014/{p.name}": p.read_bytes() for p in (src / "coco/train2014").iterdir()}
    coco_zip = _zip_bytes(images)
    archives = [
        dl.Archive("refcoco.zip", http_server.serve("/refcoco.zip", refer_zip), None, "{raw}",
                   "{raw}/refcoco/refs(unc).p"),
        dl.Archive("train2014.zip", http_server.serve("/train2014.zip", coco_zip),
                   ("md5", hashlib.md5(coco_zip).hexdigest()), "{root}/coco", "{root}/coco/train2014"),
    ]
    monkeypatch.setitem(dl.ARCHIVES, "refcoco", archives)
    root = tmp_path / "datasets"
    ctx = make_ctx(root, download=True)
    assert prepare_dataset(ctx, "refcoco")
    assert (root / "refer/refcoco/val.json").is_file()
    assert (root / "raw/.extracted/refcoco.zip.done").is_file()
    cks = json.loads((root / "checksums.json").read_text())
    assert set(cks) == {"refcoco.zip", "train2014.zip"}
    assert cks["train2014.zip"]["md5"] == hashlib.md5(coco_zip).hexdigest()
    # a second run (forced) downloads nothing
    n = len(http_server.requests)
    ctx.force = True
    assert prepare_dataset(ctx, "refcoco")
    assert len(http_server.requests) == n


def test_manual_download_hint(tmp_path, make_ctx):
    with pytest.raises(DatasetError) as ei:
        prepare_dataset(make_ctx(tmp_path, download=True), "ade20k_847")
    msg = str(ei.value)
    assert str(tmp_path / "raw/ADE20K_2021_17_01.zip") in msg and "register" in msg


def test_manual_archive_placed_by_user(tmp_path, builders, make_ctx):
    """A registration-only zip placed at the expected path is extracted (and its sha256 recorded)."""
    src = builders.mapillary(tmp_path / "src")
    members = {str(p.relative_to(src / "mapillary_vistas")): p.read_bytes()
               for p in (src / "mapillary_vistas").rglob("*") if p.is_file()}
    root = tmp_path / "datasets"
    (root / "raw").mkdir(parents=True)
    (root / "raw/mapillary-vistas-dataset_public_v1.2.zip").write_bytes(_zip_bytes(members))
    assert prepare_dataset(make_ctx(root), "mapillary_vistas")
    assert (root / "mapillary_vistas/validation/panoptic/panoptic_2018.json").is_file()
    assert "mapillary-vistas-dataset_public_v1.2.zip" in json.loads((root / "checksums.json").read_text())


def test_url_table():
    for name, archives in dl.ARCHIVES.items():
        for arc in archives:
            assert arc.url is None or arc.url.startswith(("http://", "https://")), (name, arc)
    ade = {a.name: a for a in dl.ARCHIVES["ade20k_150"]}
    assert ade["ADEChallengeData2016.zip"].checksum == ("sha1", "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7")
    assert {a.name for a in dl.ARCHIVES["coco"]} >= {
        "train2017.zip", "val2017.zip", "annotations_trainval2017.zip",
        "panoptic_annotations_trainval2017.zip"}
    assert all(a.url is None for a in dl.ARCHIVES["mapillary_vistas"] + dl.ARCHIVES["ade20k_847"])
    assert [a.url for a in dl.ARCHIVES["refcoco+"]][0].endswith("/licheng/referit/data/refcoco+.zip")
