"""`qbconnect demo` boots the whole product: health, a connected location, traffic flowing into the sync log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qbconnect.sandbox.server import free_port

REPO = Path(__file__).resolve().parents[2]


def test_demo_serves_health_and_syncs_its_traffic(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBCONNECT_")}
    env["PYTHONPATH"] = str(REPO / "src")
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbconnect.cli", "demo", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        token = location = None
        while token is None:
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            text = out.read_text(errors="replace")
            found_token = re.search(r"admin token: (\S+)", text)
            found_location = re.search(r"location_id=(\w+)", text)
            if found_token and found_location:
                token, location = found_token.group(1), found_location.group(1)
            time.sleep(0.3)
        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        headers = {"Authorization": f"Bearer {token}"}
        state = httpx.get(f"{base}/api/locations/{location}", headers=headers, timeout=5).json()
        assert state["quickbooks"]["status"] == "connected" and state["is_syncing"] is True
        done: list[dict[str, object]] = []
        while not done:
            assert time.monotonic() < deadline + 60, out.read_text()
            rows = httpx.get(f"{base}/api/locations/{location}/activity", headers=headers, timeout=5).json()["items"]
            done = [row for row in rows if row["status"] == "done" and row["direction"] == "crm_to_qbo"]
            time.sleep(1)
        page = httpx.get(f"{base}/settings/integrations?location_id={location}", headers=headers, timeout=10)
        assert page.status_code == 200 and "Greenleaf Gardening LLC" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_demo_traffic_survives_every_action_from_an_empty_start(tmp_path: Path) -> None:
    from qbconnect.demo import DemoTraffic
    from tests.support.stack_fixtures import build_stack

    stack = build_stack(tmp_path)
    try:
        location = stack.install_crm_location(name="Greenleaf Gardening")
        realm = stack.connect_quickbooks(location, name="Greenleaf Gardening LLC", country="US")
        traffic = DemoTraffic(stack, location, realm, seed=7)
        for _, action in traffic.actions:  # every action, including those with nothing to act on yet
            traffic.actions = [(1, action)]
            assert isinstance(traffic.step(), str)
        traffic = DemoTraffic(stack, location, realm, seed=11)
        outcomes = [traffic.step() for _ in range(60)]
        assert sum(not o.startswith("skipped") for o in outcomes) > 30
        stack.deliver_webhooks()
        stack.drain()
    finally:
        stack.stop()
