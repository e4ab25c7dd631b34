"""Extract: the driver-side file checks (archive, control file, MD5, gzip scan, header), no Spark.

They are cheap and pull no data into Spark: a file that fails them is rejected before it is parsed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from jobs.platform.config import Paths
from schemas import DELIMITER, FileSchema

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark: an encoding marker some exports put before the header
CHUNK = 1 << 20
MAX_LINE = 16 << 20  # a line longer than this is not a delimited text file (or its line ends are lost)


@dataclass
class FileCheck:
    kind: str
    day: dt.date
    path: Path
    md5: str | None = None
    control_rows: int | None = None
    problem: str | None = None
    lines: int | None = None  # data lines counted on the driver, blank ones apart (None when unreadable)
    notes: list[str] = field(default_factory=list)  # what was handled, e.g. a byte-order mark removed

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


class GzipScan(NamedTuple):
    header: bytes  # the header line, without its line end and without a byte-order mark
    lines: int  # data lines, blank ones apart
    blank: int  # blank lines after the header (a trailing empty line, say): a format slip, not rows
    bom: bool  # the file started with UTF-8's byte-order mark


def scan_gzip(path: Path) -> GzipScan:
    """Decompress the whole file once, streaming, and count its lines (the members of a multi-member gzip are
    read one after the other, as one text). Raises on a truncated gzip (EOFError), a file that is not gzip at all
    (gzip.BadGzipFile), corrupt data (zlib.error, gzip.BadGzipFile on a failed CRC) or a line longer than
    ``MAX_LINE`` (ValueError), which a Spark read would otherwise report as a cryptic task failure mid-job."""
    header, lines, blank, carry = None, 0, 0, b""
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            if len(carry) > MAX_LINE:
                raise ValueError(f"a line longer than {MAX_LINE >> 20} MB: not a delimited text file")
            if header is None and parts:
                header = parts.pop(0)
            lines += len(parts)
            blank += parts.count(b"") + parts.count(b"\r")
    if carry and header is None:
        header = carry
    elif carry:  # a last line without its line end
        lines += 1
        blank += carry == b"\r"
    header = (header or b"").rstrip(b"\r")
    bom = header.startswith(BOM)
    return GzipScan(header[len(BOM):] if bom else header, lines - blank, blank, bom)


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


def _read_lines(fc: FileCheck, schema: FileSchema) -> str | None:
    """Scan the file into ``fc`` (lines, notes); the problem with its gzip stream or its header, if any."""
    try:
        scan = scan_gzip(fc.path)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        return _gzip_problem(fc.path, exc)
    fc.lines = scan.lines
    if scan.bom:
        fc.notes.append("a UTF-8 byte-order mark before the header was removed")
    if scan.blank:
        fc.notes.append(f"{scan.blank} blank line(s) skipped (not rows)")
    return _header_problem(schema, scan.header)


def _repeat_problem(fc: FileCheck, earlier: dict[str, tuple[str, dt.date]]) -> str | None:
    """A file identical to one delivered before under another name or date: the same file sent again."""
    seen = earlier.get(fc.md5 or "")
    if seen and seen != (fc.name, fc.day) and fc.lines:  # header-only files are alike on every quiet day
        return (f"identical to {seen[0]} delivered for {seen[1]} (same MD5 {fc.md5}): the same file delivered again "
                f"under this name? Ask the sender for this day's file")
    return None


def check_file(paths: Paths, schema: FileSchema, day: dt.date, closed_md5: str | None = None,
               earlier: dict[str, tuple[str, dt.date]] | None = None) -> FileCheck:
    """File-level checks on the driver. ``problem`` says why the file cannot be parsed at all; a readable
    file's lines are counted whatever its problem, so that they can be kept in the quarantine. ``earlier`` maps
    the MD5 of files ingested before to (file name, delivery date)."""
    path = paths.landing_day(day) / schema.file_name(day)
    fc = FileCheck(schema.kind, day, path)
    control = paths.landing_day(day) / schema.control_name(day)
    if not path.exists():
        fc.problem = "file not delivered" + ("" if not control.exists() else " (its control file is there)")
        if control.exists():
            _control_problem(fc, control)  # its declared row count, for the ledger
        return fc
    if path.stat().st_size == 0:
        fc.problem = "empty file (0 bytes, not even a header)"
        return fc
    fc.md5 = _md5(path)
    problems = [_control_problem(fc, control), _read_lines(fc, schema)]
    if fc.lines is not None and fc.control_rows is not None and fc.lines != fc.control_rows:
        problems.append(f"row count mismatch: control file says {fc.control_rows} rows, file has {fc.lines}")
    problems.append(_repeat_problem(fc, earlier or {}))
    if closed_md5 is not None and closed_md5 != fc.md5:
        problems.append(f"day {day} is closed (its lists were published) and this delivery differs from the one "
                        f"ingested; run `cpc reopen --date {day}` to accept it and rerun the day")
    fc.problem = next((p for p in problems if p), None)
    return fc


def unrecognised(paths: Paths, day: dt.date, known: set[str]) -> list[FileCheck]:
    """Files in the day's landing folder that no file kind is named after, or second copies of a known file
    under another name: each is archived (under ``archive/<date>/unrecognised/``) and gets a ledger row."""
    folder = paths.landing_day(day)
    if not folder.exists():
        return []
    by_md5 = {_md5(folder / n): n for n in sorted(known) if (folder / n).is_file() and not n.endswith(".ctl")}
    out = []
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in known):
        fc = FileCheck("unrecognised", day, f, md5=_md5(f))
        copy_of = by_md5.get(fc.md5)
        fc.problem = (f"a second copy of {copy_of} (same MD5) under another name; not ingested twice" if copy_of else
                      f"no file kind is named {f.name!r} (expected <kind>_{day:%Y%m%d}.csv.gz with its .ctl); not ingested")
        target = paths.archive_day(day) / "unrecognised" / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or _md5(target) != fc.md5:
            shutil.copy2(f, target)
        out.append(fc)
    return out
