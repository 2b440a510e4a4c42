"""tuspy 1.1.0 (module `tusclient`, pinned in requirements.txt) against a running tusk.

    python suite.py http://127.0.0.1:1080 [scenario ...]

The server URL may also come from TUSK_URL. Every scenario verifies the
stored bytes by sha256 through the asset's signed download_url. Exits
non-zero with a message naming the failed scenario(s).
"""

import hashlib
import io
import json
import sys
import time
import traceback
import urllib.error
import urllib.request

from tusclient import client as tus_client
from tusclient.uploader import Uploader

MiB = 1024 * 1024


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def data_of(n, seed):
    """Deterministic pseudo-random bytes (fast: a sha256 counter stream)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest() * 64  # 2 KiB per step
        i += 1
    return bytes(out[:n])


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def id_of(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def http(method, url, headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_ready(server, asset_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http("GET", f"{server}/v1/assets/{asset_id}")
        check(status == 200, f"GET /v1/assets/{asset_id}: {status} {body!r}")
        asset = json.loads(body)
        if asset["state"] == "ready":
            return asset
        check(asset["state"] != "failed", f"asset {asset_id} failed: {asset}")
        check(time.monotonic() < deadline, f"asset {asset_id} not ready after {timeout} s: {asset}")
        time.sleep(0.1)


def verify_stored(server, upload_url, data):
    """The asset reports the right size and sha256 and its download_url serves those bytes."""
    asset_id = id_of(upload_url)
    asset = wait_ready(server, asset_id)
    want = sha256(data)
    check(asset["size_bytes"] == len(data), f"asset {asset_id}: size_bytes {asset['size_bytes']}, want {len(data)}")
    check(asset["sha256"] == want, f"asset {asset_id}: sha256 {asset['sha256']}, want {want}")
    check(isinstance(asset.get("download_url"), str), f"asset {asset_id}: no download_url: {asset}")
    status, _, body = http("GET", asset["download_url"])
    check(status == 200, f"download {asset['download_url']}: {status} {body[:300]!r}")
    check(len(body) == len(data), f"download of {asset_id}: {len(body)} bytes, want {len(data)}")
    check(sha256(body) == want, f"download of {asset_id}: sha256 {sha256(body)}, want {want}")
    return asset


def head_offset(url):
    status, headers, _ = http("HEAD", url, {"Tus-Resumable": "1.0.0"})
    headers = {k.lower(): v for k, v in headers.items()}
    check(status == 200, f"HEAD {url}: {status}")
    return int(headers["upload-offset"])


class CountingUploader(Uploader):
    """Records the Upload-Checksum of every PATCH it sends."""

    def upload_chunk(self):
        super().upload_chunk()
        sent = self.request._request_headers
        self.sent = getattr(self, "sent", []) + [(sent.get("upload-offset"), sent.get("upload-checksum"))]


def chunked_sha1(server, endpoint):
    """5 MiB chunks, each PATCH with `Upload-Checksum: sha1 <base64>`."""
    data = data_of(11 * MiB + 777, 1)
    client = tus_client.TusClient(endpoint)
    up = CountingUploader(
        file_stream=io.BytesIO(data),
        client=client,
        chunk_size=5 * MiB,
        upload_checksum=True,
        metadata={"filename": "py-chunked.bin"},
    )
    up.upload()
    check(len(up.sent) == 3, f"expected 3 PATCHes, sent {up.sent}")
    check(all(c and c.startswith("sha1 ") for _, c in up.sent), f"PATCHes without sha1 checksum: {up.sent}")
    asset = verify_stored(server, up.url, data)
    check(asset["name"] == "py-chunked.bin", f"asset name {asset['name']}")


class BadChecksumUploader(Uploader):
    """Sends a wrong sha1 on every PATCH."""

    @property
    def checksum_algorithm(self):
        return lambda chunk: hashlib.sha1(chunk + b"x")


def sha1_mismatch(server, endpoint):
    """A chunk whose sha1 does not match is refused with 460 and not stored."""
    from tusclient.exceptions import TusUploadFailed

    data = data_of(2 * MiB, 5)
    client = tus_client.TusClient(endpoint)
    good = Uploader(file_stream=io.BytesIO(data), client=client, chunk_size=1 * MiB, upload_checksum=True)
    good.upload(stop_at=1 * MiB)
    bad = BadChecksumUploader(file_stream=io.BytesIO(data), url=good.url, client=client,
                              chunk_size=1 * MiB, upload_checksum=True)
    try:
        bad.upload()
        raise Failure("a PATCH with a wrong sha1 was accepted")
    except TusUploadFailed as e:
        check(e.status_code == 460, f"wrong sha1: status {e.status_code}, want 460 ({e.response_content!r})")
    check(head_offset(good.url) == 1 * MiB, f"offset after a refused chunk: {head_offset(good.url)}")
    Uploader(file_stream=io.BytesIO(data), url=good.url, client=client, chunk_size=1 * MiB,
             upload_checksum=True).upload()
    verify_stored(server, good.url, data)


def resume_from_url(server, endpoint):
    """Upload part, forget the uploader, finish with a new Uploader(url=...)."""
    data = data_of(7 * MiB + 5, 2)
    client = tus_client.TusClient(endpoint)
    first = Uploader(file_stream=io.BytesIO(data), client=client, chunk_size=1 * MiB,
                     metadata={"filename": "py-resume.bin"})
    first.upload(stop_at=3 * MiB)
    url = first.url
    check(url, "no upload URL after the first part")
    check(head_offset(url) == 3 * MiB, f"HEAD after the first part: {head_offset(url)}, want {3 * MiB}")
    del first

    second = CountingUploader(file_stream=io.BytesIO(data), url=url, client=client, chunk_size=2 * MiB)
    check(second.offset == 3 * MiB, f"new uploader resumed at {second.offset}, want {3 * MiB}")
    second.upload()
    check(second.url == url, f"the new uploader used {second.url}, not {url}")
    offsets = [int(o) for o, _ in second.sent]
    check(offsets[0] == 3 * MiB, f"the resumed PATCHes started at {offsets[0]}: {offsets}")
    print(f"  resume_from_url: resumed at {offsets[0]}, sent {len(data) - offsets[0]} of {len(data)} bytes again")
    verify_stored(server, url, data)


class DeferredUploader(Uploader):
    """creation-defer-length on top of tuspy 1.1.0, which has no option for it
    (no `upload_length_deferred` in its source): POST with
    `Upload-Defer-Length: 1`, and `Upload-Length` on the PATCH that reaches the
    end, an empty PATCH when the size is a multiple of chunk_size (the way
    later tuspy versions and tus-js-client finish a deferred upload)."""

    declare = False

    def get_url_creation_headers(self):
        h = super().get_url_creation_headers()
        del h["upload-length"]
        h["upload-defer-length"] = "1"
        return h

    def get_headers(self):
        h = super().get_headers()
        if self.declare:
            # self.size, not get_file_size(): that seeks the shared stream to its end
            # after TusRequest positioned it at the offset.
            h["upload-length"] = str(self.size)
        return h

    def upload(self):
        size = self.size = self.get_file_size()
        self.stop_at = size
        self.set_url(self.create_url())
        self.offset = 0
        self.patches = []
        while True:
            n = self.get_request_length()
            self.declare = self.offset + n == size and n < self.chunk_size
            self.upload_chunk()
            self.patches.append((n, self.request._request_headers.get("upload-length")))
            if self.declare:
                return
            if self.offset == size:  # no short chunk: declare with an empty PATCH
                self.declare = True
                self.upload_chunk()
                self.patches.append((0, self.request._request_headers.get("upload-length")))
                return


def deferred_length(server, endpoint):
    client = tus_client.TusClient(endpoint)
    for size, seed in ((3 * MiB + 123, 3), (2 * MiB, 4)):
        data = data_of(size, seed)
        up = DeferredUploader(file_stream=io.BytesIO(data), client=client, chunk_size=1 * MiB,
                              metadata={"filename": "py-deferred.bin"})
        up.upload()
        check(up.patches[-1][1] == str(size), f"the last PATCH did not declare {size}: {up.patches}")
        check(all(l is None for _, l in up.patches[:-1]), f"length declared early: {up.patches}")
        verify_stored(server, up.url, data)


SCENARIOS = {
    "chunked_sha1": chunked_sha1,
    "sha1_mismatch": sha1_mismatch,
    "resume_from_url": resume_from_url,
    "deferred_length": deferred_length,
}


def main():
    import os

    args = sys.argv[1:]
    server = (args[0] if args else os.environ.get("TUSK_URL", "")).rstrip("/")
    if not server.startswith(("http://", "https://")):
        print("usage: python suite.py <server-url> [scenario ...]   (or set TUSK_URL)", file=sys.stderr)
        return 2
    endpoint = server + "/files/"
    wanted = args[1:]
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    failed = []
    for name, run in SCENARIOS.items():
        if wanted and name not in wanted:
            continue
        t0 = time.monotonic()
        try:
            run(server, endpoint)
            print(f"ok   {name} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed.append(name)
            detail = getattr(e, "response_content", None)
            print(f"FAIL {name} ({(time.monotonic() - t0) * 1000:.0f} ms): {e!r} {detail or ''}", flush=True)
            traceback.print_exc(file=sys.stdout)
    if failed:
        print(f"tuspy suite: {len(failed)} scenario(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("tuspy suite: all scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
