"""A small read-only HTTP service through which each downstream system pulls its own channels' lists.

    GET /lists                                  the lists this system may pull (date, channel, rows, sha256)
    GET /lists/<YYYY-MM-DD>/<channel>/manifest.json
    GET /lists/<YYYY-MM-DD>/<channel>/<file>    the list's data file, exactly as published

Every request carries ``Authorization: Bearer <token>``; the token names the system (``conf/downstream.yaml``,
tokens from the environment). Unknown token: 401. Another system's channel: 403. Anything but GET/HEAD: 405.
Only files named in a published manifest are served, so no path outside the exports can be reached. Each
request is appended to ``reports/pull_audit.jsonl`` (system, path, status, bytes).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import Field

from jobs.platform import business as business_conf
from jobs.platform.config import CONF_DIR, ConfModel, Paths, load_validated
from jobs.platform.errors import ConfigError

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NAME = re.compile(r"^[a-z_]+$")
PLACEMENTS = "placements"  # the passive placements' list


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


class PullService:
    def __init__(self, paths: Paths, systems: dict[str, dict]):
        self.paths = paths
        self.systems = systems
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
        for day_dir in sorted(p for p in self.paths.exports.iterdir() if DATE.match(p.name)):
            for link in sorted(p for p in day_dir.iterdir() if p.is_symlink() and p.name in self.systems[system]["channels"]):
                manifest = link / "manifest.json"
                if manifest.exists() and (link / "_SUCCESS").exists():
                    m = json.loads(manifest.read_text())
                    out.append({"date": day_dir.name, "channel": link.name, "rows": m["rows"],
                                "files": [f["name"] for f in m["files"]], "sha256": m["files"][0]["sha256"]})
        return out

    def resolve(self, system: str, parts: list[str]) -> tuple[int, Path | None]:
        """(status, file) for /lists/<date>/<channel>/<name>."""
        if len(parts) != 3 or not DATE.match(parts[0]) or not NAME.match(parts[1]):
            return 404, None
        day, channel, name = parts
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            return 404, None
        if channel not in self.systems[system]["channels"]:
            return 403, None
        folder = self.paths.exports / day / channel
        manifest = folder / "manifest.json"
        if not manifest.exists() or not (folder / "_SUCCESS").exists():
            return 404, None
        allowed = {"manifest.json", *(f["name"] for f in json.loads(manifest.read_text())["files"])}
        if name not in allowed:
            return 404, None
        return 200, folder / name

    def audit(self, record: dict) -> None:
        self.paths.reports.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.paths.reports / "pull_audit.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def make_handler(service: PullService):
    class Handler(BaseHTTPRequestHandler):
        server_version = "cpc-pull/1"

        def log_message(self, fmt, *args):  # the audit file is the log
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json", system: str | None = None) -> None:
            service.audit({"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "system": system,
                           "method": self.command, "path": self.path, "status": status, "bytes": len(body)})
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str, system: str | None = None) -> None:
            self._send(status, json.dumps({"error": message}).encode(), system=system)

        def do_GET(self):  # noqa: N802 - http.server's naming
            system = service.who(self.headers.get("Authorization"))
            if system is None:
                return self._error(401, "missing or unknown token")
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts == ["lists"]:
                return self._send(200, json.dumps(service.published(system)).encode(), system=system)
            if not parts or parts[0] != "lists":
                return self._error(404, "not found", system)
            status, path = service.resolve(system, parts[1:])
            if status != 200:
                return self._error(status, {403: "this list belongs to another system", 404: "not found"}[status], system)
            ctype = "application/json" if path.name.endswith(".json") else "application/gzip"
            return self._send(200, path.read_bytes(), ctype, system)

        do_HEAD = do_GET

        def _refuse(self):
            self._error(405, "read-only service")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


def serve(paths: Paths, host: str = "127.0.0.1", port: int = 8765, systems: dict | None = None) -> ThreadingHTTPServer:
    """A started server (call ``serve_forever`` or run it in a thread; ``shutdown`` stops it)."""
    service = PullService(paths, systems if systems is not None else load_systems())
    return ThreadingHTTPServer((host, port), make_handler(service))
