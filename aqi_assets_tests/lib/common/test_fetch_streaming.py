"""A large `Content-Encoding: gzip` body is decoded and stored in bounded memory.

The fetch runs in a child process whose peak RSS is read before and after, as in `test_reliability_core.py`,
but from /proc/self/status `VmHWM`: `ru_maxrss` of a child also counts the RSS of the process it was forked
from (Linux carries it across exec), so a large pytest process would hide the growth. The body is random hex
(it compresses only about 2:1), so the compressed wire bytes alone are ~100 MB: keeping them in memory, in
case the decode fails, would show in the figure.
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GZIP_BODY_FETCH = textwrap.dedent(
    """
    import gzip, hashlib, os, shutil, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path
    from aqi_assets.lib.common.fetch import build_session, download

    workdir, target = Path(sys.argv[1]), int(sys.argv[2])

    def peak_rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:"))

    wire_path = workdir / "wire.gz"
    # The server's file: a JSON array of random hex strings, gzip-compressed as it is written (bounded memory).
    digest, body_bytes = hashlib.sha256(), 0
    with open(wire_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        def emit(piece):
            global body_bytes
            digest.update(piece)
            out.write(piece)
            body_bytes += len(piece)
        emit(b"[")
        while body_bytes < target - (1 << 20):
            emit(b",".join(b'"' + os.urandom(1 << 15).hex().encode() + b'"' for _ in range(8)) + b",")
        emit(b'"end"]')
    wire_bytes = wire_path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(wire_bytes))
            self.end_headers()
            with open(wire_path, "rb") as wire:
                shutil.copyfileobj(wire, self.wfile, 1 << 16)
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = workdir / "lake"
    before = peak_rss_mb()
    with build_session(retries=0) as session:
        result = download(f"http://127.0.0.1:{server.server_port}/big.json", store,
                          lambda sha, at: f"snapshot_{sha[:12]}.json.gz", session=session)
    after = peak_rss_mb()
    server.shutdown()
    print(result.body_bytes, body_bytes, result.sha256, digest.hexdigest(), wire_bytes, after - before)
    print(*sorted(p.name for p in store.iterdir()))
    """
)


@pytest.mark.slow
def test_a_200_mb_gzip_encoded_body_is_decoded_to_disk_in_bounded_memory(tmp_path: Path) -> None:
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc/self/status (Linux only)")
    size = 200 * 1024 * 1024
    out = subprocess.run(
        [sys.executable, "-c", GZIP_BODY_FETCH, str(tmp_path), str(size)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    figures, files = out.stdout.splitlines()
    stored_bytes, sent_bytes, stored_sha, sent_sha, wire_bytes, extra_peak_mb = figures.split()
    assert int(sent_bytes) > 0.99 * size and int(wire_bytes) > 80 * 1024 * 1024  # big on the wire too
    # The decoded body, byte for byte: the stored file is that body, gzip-compressed.
    assert (int(stored_bytes), stored_sha) == (int(sent_bytes), sent_sha)
    assert int(extra_peak_mb) < 64, f"fetching {wire_bytes} gzip bytes raised peak RSS by {extra_peak_mb} MB"
    # Only the snapshot is left: the spooled wire copy was deleted once the body decoded.
    assert files.split() == [f"snapshot_{sent_sha[:12]}.json.gz"]
    stored = tmp_path / "lake" / files.split()[0]
    digest = hashlib.sha256()
    with gzip.open(stored, "rb") as body:
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == sent_sha
