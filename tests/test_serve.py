"""The downstream pull service over loopback with real HTTP requests, including refused ones."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import urllib.error
import urllib.request

import pytest

from jobs.platform.config import Paths
from jobs.serving.pull import serve

DAY = "2026-11-20"
TOKENS = {"sms_gateway": "sms-secret-1", "call_centre": "cc-secret-2"}


def publish(paths: Paths, channel: str, rows: list[str]) -> None:
    """Lay out a list as the export job publishes it: a version folder behind a symlink."""
    folder = paths.exports / DAY
    version = folder / f".{channel}-v1"
    version.mkdir(parents=True)
    data = gzip.compress(("\n".join(["msisdn,product_id", *rows]) + "\n").encode(), mtime=0)
    name = f"{channel}_20261120.csv.gz"
    (version / name).write_bytes(data)
    (version / "manifest.json").write_text(json.dumps({"channel": channel, "rows": len(rows), "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest()}]}))
    (version / "_SUCCESS").write_text("")
    (folder / channel).symlink_to(version.name)


@pytest.fixture()
def server(tmp_path):
    paths = Paths(tmp_path)
    publish(paths, "sms_push", ["13800000001,P_NEWS", "13800000002,P_MUSIC"])
    publish(paths, "outbound_call", ["13800000003,P_HANDSET_5G"])
    (paths.exports / DAY / "secret.txt").write_text("not a list")
    systems = {"sms_gateway": {"channels": {"sms_push"}, "token": TOKENS["sms_gateway"]},
               "call_centre": {"channels": {"outbound_call"}, "token": TOKENS["call_centre"]},
               "email_platform": {"channels": {"email"}, "token": ""}}
    srv = serve(paths, "127.0.0.1", 0, systems)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", paths
    srv.shutdown()
    srv.server_close()


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test server
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_system_lists_and_downloads_its_own_channel(server):
    base, paths = server
    status, body = get(f"{base}/lists", TOKENS["sms_gateway"])
    assert status == 200
    listed = json.loads(body)
    assert [(x["date"], x["channel"], x["rows"]) for x in listed] == [(DAY, "sms_push", 2)]
    status, data = get(f"{base}/lists/{DAY}/sms_push/sms_push_20261120.csv.gz", TOKENS["sms_gateway"])
    assert status == 200 and hashlib.sha256(data).hexdigest() == listed[0]["sha256"]
    assert gzip.decompress(data).decode().splitlines()[1] == "13800000001,P_NEWS"
    audit = [json.loads(line) for line in (paths.reports / "pull_audit.jsonl").read_text().splitlines()]
    assert audit[-1]["system"] == "sms_gateway" and audit[-1]["status"] == 200


@pytest.mark.parametrize(
    ("path", "token", "method", "status"),
    [
        ("/lists", None, "GET", 401),
        ("/lists", "wrong-token", "GET", 401),
        ("/lists", "", "GET", 401),  # a system without a configured token cannot log in with an empty one
        (f"/lists/{DAY}/outbound_call/outbound_call_20261120.csv.gz", TOKENS["sms_gateway"], "GET", 403),
        (f"/lists/{DAY}/sms_push/manifest.json", TOKENS["call_centre"], "GET", 403),
        (f"/lists/{DAY}/sms_push/..%2F..%2Fsecret.txt", TOKENS["sms_gateway"], "GET", 404),
        (f"/lists/{DAY}/sms_push/../secret.txt", TOKENS["sms_gateway"], "GET", 404),
        ("/lists/2026-13-45/sms_push/manifest.json", TOKENS["sms_gateway"], "GET", 404),
        (f"/lists/{DAY}/sms_push/manifest.json", TOKENS["sms_gateway"], "DELETE", 405),
    ],
    ids=["no-token", "wrong-token", "empty-token", "other-systems-list", "other-systems-manifest", "encoded-traversal",
         "traversal", "bad-date", "delete"],
)
def test_refused_requests(server, path, token, method, status):
    base, _ = server
    assert get(base + path, token, method)[0] == status
