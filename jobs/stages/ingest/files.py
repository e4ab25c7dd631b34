"""Extract: the driver-side file checks (archive, control file, MD5, gzip scan, header), no Spark.

They are cheap and pull no data into Spark: a file that fails them is rejected before it is parsed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from jobs.platform.config import Paths
from schemas import DELIMITER, FileSchema

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
HEADER_LIMIT = 65536  # bytes of decompressed output searched for the end of the header line


@dataclass
class FileCheck:
    kind: str
    day: dt.date
    path: Path
    md5: str | None = None
    control_rows: int | None = None
    problem: str | None = None
    lines: int | None = None  # data lines counted on the driver (None when the gzip cannot be read)

    @property
    def name(self) -> str:
        return self.path.name


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - file integrity, as the operator's control files use
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_control(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def archive(paths: Paths, schema: FileSchema, day: dt.date) -> None:
    """Copy the raw file and its control file to the archive, keeping an earlier different copy."""
    src_dir = paths.landing_day(day)
    dst_dir = paths.archive_day(day)
    for name in (schema.file_name(day), schema.control_name(day)):
        src = src_dir / name
        if not src.exists():
            continue
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / name
        if dst.exists() and _md5(dst) != _md5(src):
            dst.rename(dst.with_name(f"{name}.{_md5(dst)[:12]}"))
        if not dst.exists():
            shutil.copy2(src, dst)


def scan_gzip(path: Path) -> tuple[bytes, int]:
    """Decompress the whole file once, streaming: (header line, number of data lines). The members of a
    multi-member gzip are read one after the other, as one text. Raises on a truncated gzip (EOFError), a file
    that is not gzip at all (gzip.BadGzipFile) or corrupt data (zlib.error, gzip.BadGzipFile on a failed
    CRC), which a Spark read would otherwise report as a cryptic task failure mid-job."""
    newlines, head, last = 0, b"", b"\n"
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            newlines += chunk.count(b"\n")
            if len(head) < HEADER_LIMIT and b"\n" not in head:
                head += chunk[:HEADER_LIMIT]
            last = chunk[-1:]
    lines = newlines + (0 if last == b"\n" else 1)
    header = head.split(b"\n", 1)[0].rstrip(b"\r")
    return header, max(lines - 1, 0)


def _starts_as_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def _gzip_problem(path: Path, exc: Exception) -> str:
    """Why scan_gzip could not read a file: not gzip at all, or a gzip that is truncated or corrupt."""
    if isinstance(exc, gzip.BadGzipFile) and not _starts_as_gzip(path):
        return f"not a gzip file: {exc}"
    return f"truncated or corrupt gzip: {exc}"


def _control_problem(fc: FileCheck, control: Path) -> str | None:
    """Reads the control file into ``fc``; the problem with it or the file's checksum, if any."""
    if not control.exists():
        return f"control file {control.name} missing"
    ctl = _read_control(control)
    try:
        fc.control_rows = int(ctl["rows"])
        expected_md5 = ctl["md5"].lower()
    except (KeyError, ValueError):
        return f"control file {control.name} malformed: needs rows=<int> and md5=<hex>, has {sorted(ctl)}"
    if expected_md5 != fc.md5:
        return f"checksum mismatch: control file says md5 {expected_md5}, file has {fc.md5} (truncated or altered in transit)"
    return None


def _header_problem(schema: FileSchema, header_bytes: bytes) -> str | None:
    try:
        header = header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return "header is not UTF-8 (a GBK export?); files must be UTF-8"
    if header == "":
        return "no header line"
    cols = header.split(DELIMITER)
    if cols == schema.names:
        return None
    if len(cols) == 1 and any(d in header for d in (",", "\t", ";")):
        return f"wrong delimiter: header {header[:80]!r} is not separated by {DELIMITER!r}"
    missing = [c for c in schema.names if c not in cols]
    extra = [c for c in cols if c not in schema.names]
    return (
        f"header does not match the schema: missing columns {missing}, extra columns {extra}"
        if missing or extra
        else f"columns out of order: {cols}"
    )


def check_file(paths: Paths, schema: FileSchema, day: dt.date, closed_md5: str | None = None) -> FileCheck:
    """File-level checks on the driver. ``problem`` says why the file cannot be parsed at all."""
    path = paths.landing_day(day) / schema.file_name(day)
    fc = FileCheck(schema.kind, day, path)
    control = paths.landing_day(day) / schema.control_name(day)
    if not path.exists():
        fc.problem = "file not delivered" + ("" if not control.exists() else " (its control file is there)")
        return fc
    if path.stat().st_size == 0:
        fc.problem = "empty file (0 bytes, not even a header)"
        return fc
    fc.md5 = _md5(path)
    fc.problem = _control_problem(fc, control)
    if fc.problem is not None:
        return fc
    try:
        header_bytes, fc.lines = scan_gzip(path)
    except (OSError, EOFError, zlib.error) as exc:
        fc.problem = _gzip_problem(path, exc)
        return fc
    fc.problem = _header_problem(schema, header_bytes)
    if fc.problem is None and fc.lines != fc.control_rows:
        fc.problem = f"row count mismatch: control file says {fc.control_rows} rows, file has {fc.lines}"
    if fc.problem is None and closed_md5 is not None and closed_md5 != fc.md5:
        fc.problem = (f"day {day} is closed (its lists were published) and this delivery differs from the one "
                      f"ingested; run `cpc reopen --date {day}` to accept it and rerun the day")
    return fc
