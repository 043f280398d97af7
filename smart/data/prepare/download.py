"""Resumable, checksummed downloads of the raw archives, and their extraction.

* :data:`ARCHIVES` lists, per dataset, the archives with their URL (``None`` where the data set needs
  a personal link obtained by registration: Mapillary Vistas and ADE20K-full), the known checksum if
  any, where they are extracted and a path that exists once they are (``provides``).
* :func:`download_file` downloads over HTTP(S) with :mod:`urllib` into ``<file>.part``, resuming a
  partial file with a ``Range`` request (a server that ignores ``Range`` restarts the file), retries
  an interrupted transfer, verifies the checksum and only then renames ``.part`` to the final name.
* Checksums: a known one (md5 / sha1 from the table) is verified; for every archive the SHA-256 is
  recorded in ``<root>/checksums.json`` the first time it is seen (trust on first use) and verified
  against that record on later runs.
* :func:`extract_archive` extracts zip and tar(.gz) files member by member, each member written
  atomically and skipped when it already exists with the right size (so an interrupted extraction
  resumes); members with absolute paths or ``..`` components, and links, are refused or skipped.
  A marker ``<raw>/.extracted/<archive>.done`` records a finished extraction.

Known checksums: ADEChallengeData2016.zip sha1 from ``docs/datasets.md`` §3; the COCO
``train2017`` / ``val2017`` / ``annotations_trainval2017`` / ``train2014`` md5 sums are the values
published alongside those files in widely used download scripts. The other archives (COCO panoptic
annotations, ADE instance tar, PASCAL files, RefCOCO zips) rely on trust on first use.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from smart.errors import DatasetError
from smart.utils.logging import progress

from .common import Context, atomic_path, write_json_atomic

log = logging.getLogger("smart.prepare.download")

CHECKSUMS_FILE = "checksums.json"
USER_AGENT = "smart-ovseg-prepare/0.1 (+urllib)"


@dataclass(frozen=True)
class Archive:
    """One raw archive (or plain file) of a dataset.

    ``extract_to`` and ``provides`` are templates with ``{root}`` and ``{raw}`` placeholders.
    ``local`` (a template too) names an archive that is not downloaded but found on disk, e.g. the
    nested COCO panoptic PNG zips. ``url=None`` and ``local=None``: a manual (registration) download
    expected at ``{raw}/<name>``.
    """

    name: str
    url: str | None
    checksum: tuple[str, str] | None  # (hashlib algorithm, hex digest)
    extract_to: str
    provides: str
    local: str | None = None
    manual_hint: str = ""

    @property
    def kind(self) -> str:
        n = self.name.lower()
        if n.endswith(".zip"):
            return "zip"
        if n.endswith((".tar", ".tar.gz", ".tgz")):
            return "tar"
        return "file"

    def resolve(self, template: str, ctx: Context) -> Path:
        return Path(template.format(root=ctx.root, raw=ctx.raw_dir))

    def archive_path(self, ctx: Context) -> Path:
        if self.local:
            return self.resolve(self.local, ctx)
        return Path(ctx.raw_dir) / self.name


_COCO_IMG = "http://images.cocodataset.org/zips/"
_COCO_ANN = "http://images.cocodataset.org/annotations/"
_REFER = "http://bvisionweb1.cs.unc.edu/licheng/referit/data/"

_VOC2010 = Archive("VOCtrainval_03-May-2010.tar",
                   "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar", None,
                   "{root}", "{root}/VOCdevkit/VOC2010/JPEGImages")
_PASCAL_MAT = Archive("trainval.tar.gz", "https://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
                      None, "{root}/VOCdevkit/VOC2010", "{root}/VOCdevkit/VOC2010/trainval")
_PASCAL_DETAIL = Archive("trainval_merged.json",
                         "https://codalabuser.blob.core.windows.net/public/trainval_merged.json",
                         None, "{root}/VOCdevkit/VOC2010", "{root}/VOCdevkit/VOC2010/trainval_merged.json")


def _refer_archives(name: str) -> list[Archive]:
    return [
        Archive(f"{name}.zip", f"{_REFER}{name}.zip", None, "{raw}", "{raw}/" + name + "/refs(unc).p"),
        Archive("train2014.zip", f"{_COCO_IMG}train2014.zip", ("md5", "0da8cfa0e090c266b78f30e2d2874f1a"),
                "{root}/coco", "{root}/coco/train2014"),
    ]


ARCHIVES: dict[str, list[Archive]] = {
    "coco": [
        Archive("train2017.zip", f"{_COCO_IMG}train2017.zip", ("md5", "cced6f7f71b7629ddf16f17bbcfab6b2"),
                "{root}/coco", "{root}/coco/train2017"),
        Archive("val2017.zip", f"{_COCO_IMG}val2017.zip", ("md5", "442b8da7639aecaf257c1dceb8ba8c80"),
                "{root}/coco", "{root}/coco/val2017"),
        Archive("annotations_trainval2017.zip", f"{_COCO_ANN}annotations_trainval2017.zip",
                ("md5", "f4bbac642086de4f52a3fdda2de5fa2c"),
                "{root}/coco", "{root}/coco/annotations/instances_val2017.json"),
        Archive("panoptic_annotations_trainval2017.zip", f"{_COCO_ANN}panoptic_annotations_trainval2017.zip",
                None, "{root}/coco", "{root}/coco/annotations/panoptic_val2017.json"),
        # nested zips inside the panoptic annotation archive
        Archive("panoptic_train2017.zip", None, None, "{root}/coco", "{root}/coco/panoptic_train2017",
                local="{root}/coco/annotations/panoptic_train2017.zip"),
        Archive("panoptic_val2017.zip", None, None, "{root}/coco", "{root}/coco/panoptic_val2017",
                local="{root}/coco/annotations/panoptic_val2017.zip"),
    ],
    "ade20k_150": [
        Archive("ADEChallengeData2016.zip",
                "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                ("sha1", "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"),
                "{root}", "{root}/ADEChallengeData2016/images"),
        Archive("annotations_instance.tar",
                "http://sceneparsing.csail.mit.edu/data/ChallengeData2017/annotations_instance.tar", None,
                "{root}/ADEChallengeData2016", "{root}/ADEChallengeData2016/annotations_instance"),
    ],
    "ade20k_847": [
        Archive("ADE20K_2021_17_01.zip", None, None, "{root}", "{root}/ADE20K_2021_17_01/index_ade20k.pkl",
                manual_hint=("ADE20K-full (2021_17_01) has no public URL: register at "
                             "https://groups.csail.mit.edu/vision/datasets/ADE20K/ to get your personal "
                             "{username}_{hash}.zip, then place it at {archive} (it is extracted to "
                             "{root}/ADE20K_2021_17_01), or extract it yourself so that "
                             "{root}/ADE20K_2021_17_01/index_ade20k.pkl exists")),
    ],
    "pascal_ctx_59": [_VOC2010, _PASCAL_DETAIL],  # images + the Detail API's annotations
    "pascal_ctx_459": [_PASCAL_MAT],  # .mat label maps; the images are PC-59's copies
    "mapillary_vistas": [
        Archive("mapillary-vistas-dataset_public_v1.2.zip", None, None, "{root}/mapillary_vistas",
                "{root}/mapillary_vistas/validation",
                manual_hint=("Mapillary Vistas has no public URL: register at "
                             "https://www.mapillary.com/dataset/vistas, download the v1.2 research "
                             "zip and place it at {archive} (it is extracted to {root}/mapillary_vistas), "
                             "or extract it yourself so that {root}/mapillary_vistas/validation/"
                             "{{images,labels,panoptic}} exist")),
    ],
    "refcoco": _refer_archives("refcoco"),
    "refcoco+": _refer_archives("refcoco+"),
}


# ----------------------------------------------------------------------------------------------
# checksums


def file_digests(path: str | Path, algorithms: list[str]) -> dict[str, str]:
    hashes = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def _load_checksums(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise DatasetError("expected an object {file name: {sha256, size, ...}}", path=path)
    return data


def verify_checksum(path: str | Path, *, known: tuple[str, str] | None = None,
                    checksums_file: str | Path | None = None, url: str | None = None,
                    name: str | None = None) -> str:
    """Verify ``path`` against a known checksum and/or the trust-on-first-use record.

    Returns the SHA-256. Raises :class:`DatasetError` on a mismatch. An archive not yet in
    ``checksums_file`` is recorded there under ``name`` (default: the file name) with its sha256,
    size, url and known checksum.
    """
    path = Path(path)
    name = name or path.name
    algos = ["sha256"] + ([known[0]] if known else [])
    digests = file_digests(path, algos)
    if known and digests[known[0]].lower() != known[1].lower():
        raise DatasetError(
            f"{known[0]} checksum mismatch: expected {known[1]}, got {digests[known[0]]}"
            + (f" (downloaded from {url})" if url else ""), path=path, field=known[0])
    if checksums_file is not None:
        checksums_file = Path(checksums_file)
        table = _load_checksums(checksums_file)
        rec = table.get(name)
        if rec is not None:
            if rec.get("sha256") != digests["sha256"]:
                raise DatasetError(
                    f"sha256 {digests['sha256']} differs from the value recorded on first use in "
                    f"{checksums_file} ({rec.get('sha256')}); the file changed or is corrupt — delete "
                    f"it to download again, or delete its record if the new file is trusted",
                    path=path, field="sha256")
        else:
            rec = {"sha256": digests["sha256"], "size": path.stat().st_size}
            if url:
                rec["url"] = url
            if known:
                rec[known[0]] = known[1]
            table[name] = rec
            write_json_atomic(checksums_file, dict(sorted(table.items())), indent=1)
            log.info("recorded sha256 of %s in %s (trust on first use)", name, checksums_file)
    return digests["sha256"]


# ----------------------------------------------------------------------------------------------
# download


class _Interrupted(Exception):
    pass


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    if not value:
        return None
    try:
        unit, rng = value.split(None, 1)
        start = rng.split("-", 1)[0]
        return int(start)
    except (ValueError, IndexError):
        return None


def _fetch_once(url: str, part: Path, timeout: float, chunk: int) -> None:
    """One attempt: fetch (the rest of) ``url`` into ``part``; raise _Interrupted if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _content_range_total(exc.headers.get("Content-Range"))
            if total == offset:
                return  # the partial file is already complete
            log.warning("server refused to resume %s (HTTP 416); restarting", url)
            part.unlink()
            raise _Interrupted("range not satisfiable") from None
        raise DatasetError(f"download failed: HTTP {exc.code} {exc.reason}", path=url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(str(getattr(exc, "reason", exc))) from None
    with resp:
        status = getattr(resp, "status", 200)
        if offset and status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                log.warning("server resumed %s at byte %s, not %d; restarting", url, start, offset)
                part.unlink()
                raise _Interrupted("bad Content-Range")
            mode = "ab"
            length = resp.headers.get("Content-Length")
            total = _content_range_total(resp.headers.get("Content-Range"))
            expected_end = total if total is not None else (offset + int(length) if length else None)
        else:
            if offset:
                log.info("server does not support resuming %s; downloading from the start", url)
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            expected_end = int(length) if length else None
        bar = progress(total=expected_end, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=part.name[:-5])
        written = offset
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(chunk)
                    except (http.client.HTTPException, OSError, socket.timeout) as exc:
                        raise _Interrupted(f"connection lost ({exc})") from None
                    if not block:
                        break
                    f.write(block)
                    written += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
        if expected_end is not None and written < expected_end:
            raise _Interrupted(f"got {written} of {expected_end} bytes")


def download_file(url: str, dest: str | Path, *, checksum: tuple[str, str] | None = None,
                  checksums_file: str | Path | None = None, retries: int = 3, timeout: float = 60.0,
                  backoff: float = 2.0, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic). An existing ``dest`` is verified.

    The data goes to ``dest.part``; an existing ``.part`` is resumed with a ``Range`` request. After
    the transfer the checksum is verified (a mismatch deletes ``.part`` and raises
    :class:`DatasetError`) and ``.part`` is renamed to ``dest``.
    """
    dest = Path(dest)
    if dest.is_file():
        verify_checksum(dest, known=checksum, checksums_file=checksums_file, url=url)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s -> %s%s", url, dest,
             f" (resuming at {part.stat().st_size} bytes)" if part.exists() else "")
    last = ""
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, chunk)
            break
        except _Interrupted as exc:
            last = str(exc)
            if attempt < retries:
                log.warning("download of %s interrupted (%s); retrying (%d/%d)", url, exc, attempt + 1,
                            retries)
                time.sleep(backoff * (attempt + 1))
    else:
        raise DatasetError(f"download interrupted ({last}); run again to resume from {part}", path=url)
    try:
        verify_checksum(part, known=checksum, checksums_file=checksums_file, url=url, name=dest.name)
    except DatasetError as exc:
        part.unlink()
        raise DatasetError(f"{exc.message}; the corrupt download {part} was deleted", path=dest,
                           field=exc.field) from None
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------------------------
# extraction


def _safe_member_path(dest: Path, name: str, archive: Path) -> Path | None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise DatasetError(f"unsafe member path {name!r} in archive", path=archive, field=name)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        return None
    return dest.joinpath(*parts)


def _copy_member(src, target: Path, size: int) -> None:
    if target.is_file() and target.stat().st_size == size:
        return  # extracted by an earlier (interrupted) run
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def extract_archive(archive: str | Path, dest: str | Path) -> None:
    """Extract a zip / tar(.gz) archive into ``dest``, resumably and without path traversal."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    log.info("extracting %s -> %s", archive, dest)
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for info in progress(members, desc=f"unzip {archive.name}", unit="file"):
                    target = _safe_member_path(dest, info.filename, archive)
                    if target is None:
                        continue
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    with zf.open(info) as src:
                        _copy_member(src, target, info.file_size)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for member in progress(tf, desc=f"untar {archive.name}", unit="file"):
                    target = _safe_member_path(dest, member.name, archive)
                    if target is None:
                        continue
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        src = tf.extractfile(member)
                        with src:
                            _copy_member(src, target, member.size)
                    else:
                        log.warning("skipping non-regular member %s of %s", member.name, archive)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot extract archive ({type(exc).__name__}: {exc})", path=archive) from None


def _marker(ctx: Context, arc: Archive) -> Path:
    return Path(ctx.raw_dir) / ".extracted" / f"{arc.name}.done"


def ensure_archives(ctx: Context, dataset: str) -> None:
    """Make the raw data of ``dataset`` available: extract archives found on disk, download the rest
    (with ``--download``), or fail with instructions for registration-only data sets."""
    checksums = Path(ctx.root) / CHECKSUMS_FILE
    for arc in ARCHIVES[dataset]:
        marker = _marker(ctx, arc)
        if marker.exists():
            continue
        path = arc.archive_path(ctx)
        provides = arc.resolve(arc.provides, ctx)
        if not path.is_file():
            if provides.exists():
                continue  # already in place (extracted by the user)
            if arc.local:
                continue  # produced by another archive; the conversion reports it if still missing
            if arc.url is None:
                if ctx.download:
                    raise DatasetError(arc.manual_hint.format(archive=path, root=ctx.root,
                                                              username="{username}", hash="{hash}"),
                                       path=path)
                continue
            if not ctx.download:
                continue  # the conversion reports the missing directory (and suggests --download)
            download_file(arc.url, path, checksum=arc.checksum, checksums_file=checksums)
        else:
            verify_checksum(path, known=arc.checksum, checksums_file=checksums, url=arc.url)
        target = arc.resolve(arc.extract_to, ctx)
        if arc.kind == "file":
            with atomic_path(target / arc.name) as tmp:
                shutil.copyfile(path, tmp)
        else:
            extract_archive(path, target)
        if not provides.exists():
            raise DatasetError(f"extracted into {target}, but {provides} does not exist: the archive's "
                               f"layout differs from the expected one; move the extracted files so that "
                               f"{provides} exists", path=path)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{path}\n", encoding="utf-8")
