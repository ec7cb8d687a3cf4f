"""Size before reading: a 300 MB body streamed at a running ``qbconnect serve`` leaves its memory flat.

The code as it stood read the whole body before checking its size (764 MB resident for a 300 MB POST).
Resident memory is measured before and after, and so is its peak (``VmHWM``): a body read whole and then
freed leaves the resident size flat afterwards (large allocations go back to the system) but not the peak."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qbconnect.sandbox.server import free_port

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
SECRET = "memory-test-secret-key-0123456789abcdef"


def _memory_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its peak so far (``VmHWM``) of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def _stream_chunked(port: int, path: str, total: int, chunk: int = MB) -> bytes:
    """POST ``total`` bytes with chunked transfer encoding; returns whatever the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        block = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        sent = 0
        try:
            while sent < total:
                sock.sendall(block)
                sent += chunk
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what it said is still in the socket
        try:
            return sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return b""


def test_300_mb_streamed_body_does_not_grow_the_server(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBCONNECT_")}
    env |= {
        "QBCONNECT_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}",
        "QBCONNECT_SECRET_KEY": SECRET,
        "QBCONNECT_ADMIN_TOKEN": SECRET,
        "PYTHONPATH": str(REPO / "src"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "qbconnect.cli", "serve", "--no-worker", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        # Warm up the paths once (imports, first request), then measure.
        _stream_chunked(port, "/webhooks/crm", 6 * MB)
        before, peak_before = _memory_mb(proc.pid), _memory_mb(proc.pid, "VmHWM")
        crm = _stream_chunked(port, "/webhooks/crm", 300 * MB)
        qbo = _stream_chunked(port, "/webhooks/qbo", 300 * MB)
        time.sleep(0.5)
        after, peak_after = _memory_mb(proc.pid), _memory_mb(proc.pid, "VmHWM")
        print(
            f"resident memory of serve: {before:.0f} MB before, {after:.0f} MB after 2 x 300 MB streamed "
            f"(peak {peak_before:.0f} MB before, {peak_after:.0f} MB after)"
        )
        assert after - before < 50, f"grew from {before:.0f} MB to {after:.0f} MB"
        assert peak_after - peak_before < 50, f"peaked at {peak_after:.0f} MB (was {peak_before:.0f} MB)"
        for reply in (crm, qbo):
            assert reply == b"" or reply.startswith(b"HTTP/1.1 413"), reply[:80]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
