"""The downstream pull service over loopback with real HTTP requests, including refused ones."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from jobs.platform.config import Paths
from jobs.serving.pull import CHUNK, Unsatisfiable, byte_range, serve

DAY = "2026-11-20"
TOKENS = {"sms_gateway": "sms-secret-1", "call_centre": "cc-secret-2"}
SMS = f"/lists/{DAY}/sms_push/sms_push_20261120.csv.gz"


def publish(paths: Paths, channel: str, rows: list[str], version: int = 1, data: bytes | None = None) -> str:
    """Lay out a list as the export job publishes it: a version folder behind a symlink, swapped atomically
    on a republication. ``data`` stands in for the gzip of ``rows`` if given. Returns the file's SHA-256."""
    folder = paths.exports / DAY
    target = f".{channel}-v{version}"
    (folder / target).mkdir(parents=True)
    if data is None:
        data = gzip.compress(("\n".join(["msisdn,product_id", *rows]) + "\n").encode(), mtime=0)
    name = f"{channel}_20261120.csv.gz"
    sha = hashlib.sha256(data).hexdigest()
    (folder / target / name).write_bytes(data)
    manifest = {"channel": channel, "rows": len(rows), "files": [{"name": name, "sha256": sha}]}
    (folder / target / "manifest.json").write_text(json.dumps(manifest))
    (folder / target / "_SUCCESS").write_text("")
    (folder / f".{channel}.link").symlink_to(target)
    os.replace(folder / f".{channel}.link", folder / channel)
    return sha


def many_rows(n: int, seed: str) -> list[str]:
    """Rows that gzip does not squeeze to nothing, so a list spans several of the server's chunks."""
    return [f"138{i:08d},P_{hashlib.sha256(f'{seed}{i}'.encode()).hexdigest()[:16]}" for i in range(n)]


@pytest.fixture()
def server(tmp_path):
    paths = Paths(tmp_path)
    publish(paths, "sms_push", ["13800000001,P_NEWS", "13800000002,P_MUSIC"])
    publish(paths, "outbound_call", ["13800000003,P_HANDSET_5G"])
    publish(paths, "wechat", ["13800000004,P_NEWS"])  # published, but no system of this server pulls it
    (paths.exports / DAY / "secret.txt").write_text("not a list")
    systems = {"sms_gateway": {"channels": {"sms_push"}, "token": TOKENS["sms_gateway"]},
               "call_centre": {"channels": {"outbound_call"}, "token": TOKENS["call_centre"]},
               "email_platform": {"channels": {"email"}, "token": ""}}
    srv = serve(paths, "127.0.0.1", 0, systems)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", paths
    srv.shutdown()
    srv.server_close()


def request(url: str, token: str | None = None, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test server
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    status, _, body = request(url, token, method)
    return status, body


def raw(base: str, data: bytes) -> bytes:
    """Bytes sent as they are, the answer read to the end (what a broken client would see, if anything)."""
    host, port = base.removeprefix("http://").split(":")
    answer = b""
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:  # the server may close before reading all of a request it refused
        pass
    return answer


def audited(paths: Paths, n: int, timeout: float = 5.0) -> list[dict]:
    """The audit's records once there are n: each is written just after its answer went out, so a client
    can read an answer before its record is there. The server answers each request on a thread of its own, so
    records of successive requests may land in either order: compare them as a multiset."""
    file = paths.reports / "pull_audit.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        lines = file.read_text().split("\n")[:-1] if file.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    time.sleep(0.1)  # and no record more than those comes after
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


def test_system_lists_and_downloads_its_own_channel(server):
    base, paths = server
    status, body = get(f"{base}/lists", TOKENS["sms_gateway"])
    assert status == 200
    listed = json.loads(body)
    assert [(x["date"], x["channel"], x["rows"]) for x in listed] == [(DAY, "sms_push", 2)]
    status, data = get(f"{base}/lists/{DAY}/sms_push/sms_push_20261120.csv.gz", TOKENS["sms_gateway"])
    assert status == 200 and hashlib.sha256(data).hexdigest() == listed[0]["sha256"]
    assert gzip.decompress(data).decode().splitlines()[1] == "13800000001,P_NEWS"
    download = next(r for r in audited(paths, 2) if r["path"].endswith(".csv.gz"))
    assert download["system"] == "sms_gateway" and download["status"] == 200
    assert download["bytes"] == len(data)


@pytest.mark.parametrize(
    ("path", "token", "method", "status"),
    [
        ("/lists", None, "GET", 401),
        ("/lists", "wrong-token", "GET", 401),
        ("/lists", "", "GET", 401),  # a system without a configured token cannot log in with an empty one
        (f"/lists/{DAY}/outbound_call/outbound_call_20261120.csv.gz", TOKENS["sms_gateway"], "GET", 403),
        (f"/lists/{DAY}/sms_push/manifest.json", TOKENS["call_centre"], "GET", 403),
        (f"/lists/{DAY}/email/manifest.json", TOKENS["sms_gateway"], "GET", 403),  # configured, not published
        (f"/lists/{DAY}/wechat/manifest.json", TOKENS["sms_gateway"], "GET", 403),  # published, no system's
        (f"/lists/{DAY}/fax/manifest.json", TOKENS["sms_gateway"], "GET", 404),  # no such list at all
        (f"/lists/{DAY}/fax/manifest.json", TOKENS["sms_gateway"], "HEAD", 404),
        ("/lists/2026-11-21/sms_push/manifest.json", TOKENS["sms_gateway"], "GET", 404),  # not that day
        (f"/lists/{DAY}/sms_push/..%2F..%2Fsecret.txt", TOKENS["sms_gateway"], "GET", 404),
        (f"/lists/{DAY}/sms_push/../secret.txt", TOKENS["sms_gateway"], "GET", 404),
        ("/lists/2026-13-45/sms_push/manifest.json", TOKENS["sms_gateway"], "GET", 404),
        (f"/lists/{DAY}/sms_push/manifest.json", TOKENS["sms_gateway"], "DELETE", 405),
        (f"/lists/{DAY}/sms_push/manifest.json", TOKENS["sms_gateway"], "PROPFIND", 501),  # http.server's own
        ("/lists", None, "TRACE", 501),
    ],
    ids=["no-token", "wrong-token", "empty-token", "other-systems-list", "other-systems-manifest",
         "configured-not-published", "published-not-configured", "unknown-channel", "unknown-channel-head",
         "unknown-date", "encoded-traversal", "traversal", "bad-date", "delete", "propfind", "trace"],
)
def test_refused_requests(server, path, token, method, status):
    base, paths = server
    code, headers, body = request(base + path, token, method)
    assert code == status
    if method != "HEAD":
        assert "error" in json.loads(body)
    if status == 405:
        assert headers["Allow"] == "GET, HEAD"
    [record] = audited(paths, 1)
    assert (record["method"], record["path"], record["status"]) == (method, path, status)
    assert record["bytes"] == len(body)  # 0 for HEAD
    systems = {TOKENS["sms_gateway"]: "sms_gateway", TOKENS["call_centre"]: "call_centre"}
    assert record["system"] == systems.get(token)


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),  # a suffix longer than the file: all of it
        ("bytes=95-1000", 100, (95, 99)),  # a last byte past the end: the file's last
        ("Bytes=1-1", 100, (1, 1)),  # the unit is case-insensitive
        (None, 100, None),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        ("bytes=9-2", 100, None),  # malformed: ignored
        ("items=0-9", 100, None),
        ("bytes=-", 100, None),
        ("bytes=100-", 100, Unsatisfiable),
        ("bytes=100-200", 100, Unsatisfiable),
        ("bytes=-0", 100, Unsatisfiable),
        ("bytes=-5", 0, Unsatisfiable),
    ],
)
def test_byte_range(header, size, span):
    if span is Unsatisfiable:
        with pytest.raises(Unsatisfiable):
            byte_range(header, size)
    else:
        assert byte_range(header, size) == span


def test_resumed_download_gives_the_same_bytes(server):
    base, paths = server
    sha = publish(paths, "sms_push", many_rows(40_000, "v2"), version=2)
    token = TOKENS["sms_gateway"]
    status, headers, full = request(base + SMS, token)
    assert status == 200 and hashlib.sha256(full).hexdigest() == sha and len(full) > 3 * CHUNK
    assert headers["Accept-Ranges"] == "bytes" and headers["ETag"] == f'"{sha}"'
    assert "Content-Range" not in headers
    cut = len(full) // 3 + 7  # mid-chunk
    status, headers, head = request(base + SMS, token, headers={"Range": f"bytes=0-{cut - 1}"})
    assert status == 206 and head == full[:cut]
    assert headers["Content-Range"] == f"bytes 0-{cut - 1}/{len(full)}"
    assert headers["Content-Length"] == str(cut) and headers["ETag"] == f'"{sha}"'
    resume = {"Range": f"bytes={cut}-", "If-Range": f'"{sha}"'}
    status, headers, rest = request(base + SMS, token, headers=resume)
    assert status == 206 and head + rest == full
    assert headers["Content-Range"] == f"bytes {cut}-{len(full) - 1}/{len(full)}"
    status, _, tail = request(base + SMS, token, headers={"Range": "bytes=-100"})
    assert status == 206 and tail == full[-100:]
    audit = audited(paths, 4)
    assert Counter((r["status"], r["bytes"], r["range"]) for r in audit) == Counter([
        (200, len(full), None), (206, cut, f"bytes=0-{cut - 1}"), (206, len(full) - cut, f"bytes={cut}-"),
        (206, 100, "bytes=-100")])


def test_unsatisfiable_range(server):
    base, paths = server
    size = len(get(base + SMS, TOKENS["sms_gateway"])[1])
    for asked in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        status, headers, body = request(base + SMS, TOKENS["sms_gateway"], headers={"Range": asked})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        assert "error" in json.loads(body)
    assert sorted(r["status"] for r in audited(paths, 4)) == [200, 416, 416, 416]


@pytest.mark.parametrize("asked", ["bytes=0-1,5-6", "bytes=9-2", "items=0-9"])
def test_ranges_not_served_get_the_whole_file(server, asked):
    base, _ = server
    full = get(base + SMS, TOKENS["sms_gateway"])[1]
    status, headers, body = request(base + SMS, TOKENS["sms_gateway"], headers={"Range": asked})
    assert status == 200 and body == full and "Content-Range" not in headers


def test_if_range_with_a_stale_etag_gets_the_whole_new_file(server):
    base, paths = server
    token = TOKENS["sms_gateway"]
    status, headers, first_part = request(base + SMS, token, headers={"Range": "bytes=0-9"})
    old_etag = headers["ETag"]
    assert status == 206 and len(first_part) == 10
    new_sha = publish(paths, "sms_push", many_rows(3, "v2"), version=2)  # republished mid-download
    for validator in (old_etag, f'W/"{new_sha}"'):  # a stale ETag; a weak one never matches
        resume = {"Range": "bytes=10-", "If-Range": validator}
        status, headers, body = request(base + SMS, token, headers=resume)
        assert status == 200 and "Content-Range" not in headers
        assert hashlib.sha256(body).hexdigest() == new_sha and headers["ETag"] == f'"{new_sha}"'
    assert json.loads(get(f"{base}/lists", token)[1])[0]["sha256"] == new_sha


def test_head_sends_the_headers_and_is_audited_with_no_bytes(server):
    base, paths = server
    token = TOKENS["sms_gateway"]
    _, got, full = request(base + SMS, token)
    status, headers, body = request(base + SMS, token, "HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(full)) and headers["ETag"] == got["ETag"]
    assert headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == "application/gzip"
    status, headers, _ = request(base + SMS, token, "HEAD", {"Range": "bytes=0-9"})  # ranges are for GET
    assert status == 200 and headers["Content-Length"] == str(len(full))
    assert request(f"{base}/lists", token, "HEAD")[0] == 200
    assert Counter((r["method"], r["bytes"]) for r in audited(paths, 4)) == Counter([
        ("GET", len(full)), ("HEAD", 0), ("HEAD", 0), ("HEAD", 0)])


def test_a_10kb_url_is_refused_414_and_audited(server):
    base, paths = server
    path = "/lists/" + "a" * 10_000
    status, _, body = request(base + path, TOKENS["sms_gateway"])
    assert status == 414
    [record] = audited(paths, 1)
    assert (record["status"], record["system"], record["method"]) == (414, "sms_gateway", "GET")
    assert record["bytes"] == len(body)
    assert record["path"].startswith("/lists/aaa") and len(record["path"]) < 400  # clipped


def test_malformed_requests_answered_by_http_server_are_audited(server):
    base, paths = server
    assert raw(base, b"GET /lists and more HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 400")
    raw(base, b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n")  # past http.server's own line limit
    records = audited(paths, 2)
    assert sorted(r["status"] for r in records) == [400, 414]
    bad = next(r for r in records if r["status"] == 400)
    assert (bad["method"], bad["path"], bad["system"]) == (None, "GET /lists and more HTTP/1.0", None)


def test_a_broken_download_is_audited_with_the_bytes_written(server):
    base, paths = server
    size = 16 << 20  # past what the kernel's socket buffers hold, so the server is still writing
    publish(paths, "sms_push", ["13800000001,P_NEWS"], version=2, data=os.urandom(size))
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {SMS} HTTP/1.0\r\nAuthorization: Bearer {TOKENS['sms_gateway']}\r\n\r\n".encode())
    got = b""
    while len(got) < 4096:  # the headers and some of the body
        got += sock.recv(1024)
    assert got.startswith(b"HTTP/1.0 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    sock.close()
    [record] = audited(paths, 1)
    assert record["status"] == 200 and 0 < record["bytes"] < size


def test_every_request_is_audited_once(server):
    base, paths = server
    sms = TOKENS["sms_gateway"]
    calls = [  # (token, path, method, headers)
        (sms, "/lists", "GET", {}), (None, "/lists", "GET", {}), (sms, SMS, "GET", {}),
        (sms, SMS, "GET", {"Range": "bytes=3-"}), (sms, SMS, "GET", {"Range": "bytes=9999-"}),
        (sms, SMS, "HEAD", {}), (sms, f"/lists/{DAY}/fax/x.csv.gz", "GET", {}),
        (sms, f"/lists/{DAY}/outbound_call/manifest.json", "GET", {}), (sms, SMS, "DELETE", {}),
        (sms, SMS, "PROPFIND", {}), (sms, "/" + "b" * 10_000, "GET", {}), (sms, "/nowhere", "GET", {}),
    ]
    expected = Counter()
    for token, path, method, headers in calls:
        status, _, body = request(base + path, token, method, headers)
        expected[(method, path[:50], status, len(body), headers.get("Range"))] += 1
    records = audited(paths, len(calls))
    seen = Counter((r["method"], r["path"][:50], r["status"], r["bytes"], r["range"]) for r in records)
    assert seen == expected
    assert {r["status"] for r in records} == {200, 206, 416, 404, 403, 405, 501, 414, 401}
