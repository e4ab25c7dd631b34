"""A small read-only HTTP service through which each downstream system pulls its own channels' lists.

    GET /lists                                  the lists this system may pull (date, channel, rows, sha256)
    GET /lists/<YYYY-MM-DD>/<channel>/manifest.json
    GET /lists/<YYYY-MM-DD>/<channel>/<file>    the list's data file, exactly as published

Every request carries ``Authorization: Bearer <token>``; the token names the system (``conf/downstream.yaml``,
tokens from the environment). Unknown token: 401. A channel of another system (one that some system of
``conf/downstream.yaml`` pulls, or one published): 403. A channel that is neither, an unknown date or file:
404. POST/PUT/DELETE/PATCH: 405; any other method but GET/HEAD: 501. A request target longer than
``MAX_PATH`` characters: 414. Only files named in a published manifest are served, so no path outside the
exports can be reached.

Files (a list's data file and its ``manifest.json``) are streamed, with ``Accept-Ranges: bytes`` and a strong
``ETag``: the SHA-256 the manifest records for the file (for ``manifest.json``, that of its own bytes). A GET
with one byte range (``Range: bytes=a-b``, ``bytes=a-``, ``bytes=-n``) gets 206 and the slice, with
``Content-Range: bytes a-b/total``; a range starting at or past the end (or ``bytes=-0``) gets 416 with
``Content-Range: bytes */total``. Several ranges, another unit or a malformed header are ignored: the whole
file with 200, as RFC 9110 allows. With ``If-Range``, the range is honoured only if it names the file's
current ETag; otherwise (the list was republished since the download began) the whole new file comes with
200, so a resumed download never splices two versions. HEAD gets GET's headers without a body (and no ranges:
RFC 9110 defines them for GET alone).

Every request is appended once to ``reports/pull_audit.jsonl`` after its answer, including the answers
http.server produces itself (400, 414, 431, 501), by one function (``PullService.audit``): ``at``,
``system`` (the token's system, or null), ``method``, ``path`` (the request line when no path could be
parsed; clipped to ``AUDIT_CHARS``), ``status``, ``bytes`` (body bytes handed to the socket: 0 for HEAD, the
slice's length for 206, fewer when the client went away midway) and ``range`` (the Range header, or null).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from jobs.platform import business as business_conf
from jobs.platform.config import CONF_DIR, ConfModel, Paths, load_validated
from jobs.platform.errors import ConfigError

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NAME = re.compile(r"^[a-z_]+$")
PLACEMENTS = "placements"  # the passive placements' list
RANGE = re.compile(r"^bytes=(\d{0,30})-(\d{0,30})$", re.IGNORECASE)  # one range; 30 digits is past any file
MAX_PATH = 2048  # characters of a request target; a list's own URL is under 100
AUDIT_CHARS = 256  # a path or Range header longer than this is clipped in the audit
CHUNK = 1 << 16  # bytes read and written at a time when streaming a file
_UNSET = object()  # a request's system, not looked up yet


class SystemConf(ConfModel):
    channels: list[str] = Field(min_length=1)  # the lists it may pull: active channels and/or "placements"
    token_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")  # the environment variable holding its token


class DownstreamConf(ConfModel):
    """``conf/downstream.yaml``."""

    systems: dict[str, SystemConf]


def load_systems(env: dict[str, str] | None = None) -> dict[str, dict]:
    """System -> {channels, token}; systems whose token variable is unset cannot log in."""
    env = os.environ if env is None else env
    conf = load_validated(CONF_DIR / "downstream.yaml", DownstreamConf)
    lists = {*business_conf.channels().ids("active"), PLACEMENTS}
    out = {}
    for name, spec in conf.systems.items():
        unknown = sorted(set(spec.channels) - lists)
        if unknown:
            raise ConfigError(f"conf/downstream.yaml: systems.{name}: channels: unknown list(s) {unknown} "
                              f"(active channels of conf/channels.yaml, or {PLACEMENTS!r})")
        out[name] = {"channels": set(spec.channels), "token": env.get(spec.token_env, "")}
    return out


class Unsatisfiable(Exception):
    """A byte range that selects nothing of the file: 416."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes (first, last), inclusive, that one ``Range`` header asks of a ``size``-byte file.

    None (send the whole file) when there is no header or it is not a single well-formed byte range
    (several ranges, another unit, ``a-b`` with b < a). Raises ``Unsatisfiable`` for a range starting at or
    past the end, or a zero-length suffix; a last byte past the end is the file's last byte.
    """
    match = RANGE.match((header or "").strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # bytes=-n: the last n bytes
        if int(last) == 0 or size == 0:
            raise Unsatisfiable
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise Unsatisfiable
    return int(first), size - 1 if last == "" else min(int(last), size - 1)


def clip(text: str | None, limit: int = AUDIT_CHARS) -> str | None:
    return text if text is None or len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


@dataclass(frozen=True)
class Target:
    """A file to serve: its path in one published version folder, its strong ETag (a SHA-256) and type."""

    path: Path
    etag: str
    ctype: str


class PullService:
    def __init__(self, paths: Paths, systems: dict[str, dict]):
        self.paths = paths
        self.systems = systems
        self.known = {c for s in systems.values() for c in s["channels"]}  # every system's channels
        self._lock = threading.Lock()

    def who(self, header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        given = header[len("Bearer "):].strip().encode()
        for name, s in self.systems.items():
            if s["token"] and hmac.compare_digest(given, s["token"].encode()):
                return name
        return None

    def published(self, system: str) -> list[dict]:
        out = []
        if not self.paths.exports.exists():
            return out
        mine = self.systems[system]["channels"]
        for day_dir in sorted(p for p in self.paths.exports.iterdir() if DATE.match(p.name)):
            for link in sorted(p for p in day_dir.iterdir() if p.is_symlink() and p.name in mine):
                manifest = link / "manifest.json"
                if manifest.exists() and (link / "_SUCCESS").exists():
                    m = json.loads(manifest.read_text())
                    out.append({"date": day_dir.name, "channel": link.name, "rows": m["rows"],
                                "files": [f["name"] for f in m["files"]], "sha256": m["files"][0]["sha256"]})
        return out

    def version(self, day: str, channel: str) -> Path | None:
        """The version folder a day's channel is published in now (its link resolved once), or None."""
        folder = (self.paths.exports / day / channel).resolve()
        if (folder / "manifest.json").exists() and (folder / "_SUCCESS").exists():
            return folder
        return None

    def exists(self, channel: str) -> bool:
        """Whether a channel is a list at all: some system's in the configuration, or published some day."""
        if channel in self.known:
            return True
        exports = self.paths.exports
        days = (d.name for d in exports.iterdir() if DATE.match(d.name)) if exports.exists() else ()
        return any(self.version(day, channel) for day in days)

    def resolve(self, system: str, parts: list[str]) -> tuple[int, Target | None]:
        """(200, file) for /lists/<date>/<channel>/<name>; else (403, None) for another system's list and
        (404, None) for an unknown date, channel or file."""
        if len(parts) != 3 or not DATE.match(parts[0]) or not NAME.match(parts[1]):
            return 404, None
        day, channel, name = parts
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            return 404, None
        if channel not in self.systems[system]["channels"]:
            return (403 if self.exists(channel) else 404), None
        folder = self.version(day, channel)
        try:
            manifest = (folder / "manifest.json").read_bytes() if folder else None
        except FileNotFoundError:  # republished and the old version removed meanwhile
            manifest = None
        if manifest is None:
            return 404, None
        if name == "manifest.json":
            return 200, Target(folder / name, hashlib.sha256(manifest).hexdigest(), "application/json")
        sha = {f["name"]: f["sha256"] for f in json.loads(manifest)["files"]}.get(name)
        if sha is None:
            return 404, None
        ctype = "application/json" if name.endswith(".json") else "application/gzip"
        return 200, Target(folder / name, sha, ctype)

    def audit(self, *, system: str | None, method: str | None, path: str | None, status: int, sent: int,
              range_header: str | None) -> None:
        """The one place an audit record is made and written: one line of ``reports/pull_audit.jsonl``."""
        record = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "system": system,
                  "method": method, "path": clip(path), "status": status, "bytes": sent,
                  "range": clip(range_header)}
        self.paths.reports.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.paths.reports / "pull_audit.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


class PullHandler(BaseHTTPRequestHandler):
    """The service's answers; ``make_handler`` binds it to a ``PullService``."""

    server_version = "cpc-pull/1"
    service: PullService

    def handle_one_request(self):
        """http.server's request cycle, audited once whatever answers it: this handler or http.server."""
        self._status, self._sent, self._system = None, 0, _UNSET
        self.command = self.path = self.headers = None
        self.requestline = ""
        try:
            super().handle_one_request()
        except ConnectionError:  # the client went away mid-answer: audited with what was written
            self.close_connection = True
        except Exception:
            if self._status is None and self.command:  # a fault before any answer: 500, audited too
                self.send_error(500, "internal error")
            raise
        finally:
            if self._status is not None:
                self._audit()

    def _audit(self) -> None:
        self.service.audit(system=self._who(), method=self.command or None,
                           path=self.path or self.requestline or None, status=self._status, sent=self._sent,
                           range_header=self.headers.get("Range") if self.headers is not None else None)

    def _who(self) -> str | None:
        if self._system is _UNSET:
            auth = self.headers.get("Authorization") if self.headers is not None else None
            self._system = self.service.who(auth)
        return self._system

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.path) > MAX_PATH:
            self.send_error(414)
            return False
        return True

    def log_request(self, code="-", size="-"):  # called by send_response: the answer's status, for the audit
        self._status = int(code)

    def log_message(self, fmt, *args):  # the audit file is the log
        return

    def send_error(self, code, message=None, explain=None):
        """Every error answer, this handler's and http.server's own: a JSON body, audited like the rest."""
        self._error(int(code), message or self.responses.get(code, ("error",))[0])

    def _head(self, status: int, ctype: str, length: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _write(self, data: bytes) -> None:
        """Body bytes to the socket (headers went through the unbuffered ``wfile`` before), each counted as
        the kernel takes it, so a download broken midway is audited with what went out."""
        view = memoryview(data)
        while view:
            sent = self.connection.send(view)
            self._sent += sent
            view = view[sent:]

    def _reply(self, status: int, body: bytes, ctype: str = "application/json",
               headers: dict[str, str] | None = None) -> None:
        self._head(status, ctype, len(body), headers)
        if self.command != "HEAD":
            self._write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._reply(status, json.dumps({"error": message}).encode(), headers=headers)

    def do_GET(self):  # noqa: N802 - http.server's naming
        system = self._who()
        if system is None:
            return self._error(401, "missing or unknown token")
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts == ["lists"]:
            return self._reply(200, json.dumps(self.service.published(system)).encode())
        if not parts or parts[0] != "lists":
            return self._error(404, "not found")
        status, target = self.service.resolve(system, parts[1:])
        if target is None:
            return self._error(status, {403: "this list belongs to another system", 404: "not found"}[status])
        return self._file(target)

    do_HEAD = do_GET

    def _file(self, target: Target) -> None:
        """The file, whole (200) or the one byte range asked (206), or 416; streamed."""
        try:
            fh = target.path.open("rb")
        except FileNotFoundError:  # republished and the old version removed since its manifest was read
            return self._error(404, "not found")
        with fh:
            size = os.fstat(fh.fileno()).st_size
            headers = {"Accept-Ranges": "bytes", "ETag": f'"{target.etag}"'}
            try:
                span = byte_range(self._range(target.etag), size)
            except Unsatisfiable:
                headers["Content-Range"] = f"bytes */{size}"
                return self._error(416, "range not satisfiable", headers)
            first, last = span or (0, size - 1)
            if span:
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            self._head(206 if span else 200, target.ctype, last - first + 1, headers)
            if self.command != "HEAD":
                self._stream(fh, first, last - first + 1)

    def _range(self, etag: str) -> str | None:
        """The Range header to honour: on a GET, a single one, and only if an If-Range names this ETag."""
        ranges = self.headers.get_all("Range") or []
        if self.command != "GET" or len(ranges) != 1:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != f'"{etag}"':  # strong comparison: W/ never matches
            return None
        return ranges[0]

    def _stream(self, fh: BinaryIO, first: int, length: int) -> None:
        fh.seek(first)
        while length > 0:
            chunk = fh.read(min(CHUNK, length))
            if not chunk:  # shorter than it was: published files never change, so this is not expected
                self.close_connection = True
                return
            self._write(chunk)
            length -= len(chunk)

    def _refuse(self):
        self._error(405, "read-only service", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


def make_handler(service: PullService) -> type[PullHandler]:
    return type("Handler", (PullHandler,), {"service": service})


def serve(paths: Paths, host: str = "127.0.0.1", port: int = 8765,
          systems: dict | None = None) -> ThreadingHTTPServer:
    """A started server (call ``serve_forever`` or run it in a thread; ``shutdown`` stops it)."""
    service = PullService(paths, systems if systems is not None else load_systems())
    return ThreadingHTTPServer((host, port), make_handler(service))
