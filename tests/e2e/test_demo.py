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


def _start_demo(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    """``qbconnect demo`` as a user runs it, its temporary folder under ``tmp_path``, stdout and stderr apart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBCONNECT_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the demo makes its temporary data folder
    (tmp_path / "tmp").mkdir()
    out, err, log_file = tmp_path / "demo.out", tmp_path / "demo.err", tmp_path / "logs" / "demo.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbconnect.cli", "demo", "--port", str(port), "--log-file", str(log_file)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    return proc, out, err, log_file


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


BLOCK = re.compile(
    r"qbconnect demo is running.*?Settings page:\s+(?P<url>\S+)\s.*?Admin token:\s+(?P<token>\S+)\s"
    r".*?Data:\s+(?P<data>\S+) \(removed when the demo stops\)\s.*?Log:\s+(?P<log>\S+) .*?Ctrl-C to stop",
    re.S,
)


def test_demo_serves_health_and_syncs_its_traffic(tmp_path: Path) -> None:
    port = free_port()
    proc, out, err, log_file = _start_demo(tmp_path, port)
    stopped = False
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        block = None
        while block is None:
            assert proc.poll() is None, out.read_text() + err.read_text()
            assert time.monotonic() < deadline, out.read_text() + err.read_text()
            block = BLOCK.search(out.read_text(errors="replace"))
            time.sleep(0.3)
        token = block["token"]
        location = re.search(r"location_id=(\w+)", block["url"])
        assert location is not None and block["url"].startswith(base + "/settings/integrations?")
        assert Path(block["log"]) == log_file.resolve()
        data_dir = Path(block["data"])
        assert data_dir.parent == tmp_path / "tmp" and (data_dir / "qbconnect.db").exists()

        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        headers = {"Authorization": f"Bearer {token}"}
        state = httpx.get(f"{base}/api/locations/{location[1]}", headers=headers, timeout=5).json()
        assert state["quickbooks"]["status"] == "connected" and state["is_syncing"] is True
        done: list[dict[str, object]] = []
        while not done:
            assert time.monotonic() < deadline + 60, out.read_text()
            rows = httpx.get(f"{base}/api/locations/{location[1]}/activity", headers=headers, timeout=5).json()["items"]
            done = [row for row in rows if row["status"] == "done" and row["direction"] == "crm_to_qbo"]
            time.sleep(1)
        page = httpx.get(f"{base}/settings/integrations?location_id={location[1]}", headers=headers, timeout=10)
        assert page.status_code == 200 and "Greenleaf Gardening LLC" in page.text
        # An agency installed the app in two locations at once; each has its own QuickBooks company.
        also = re.search(r"Also: Greenleaf Landscaping:\s+\S+location_id=(\w+)", out.read_text())
        assert also is not None and also[1] != location[1]
        second = httpx.get(f"{base}/api/locations/{also[1]}", headers=headers, timeout=5).json()
        assert second["quickbooks"]["status"] == "connected"
        assert second["quickbooks"]["realm_id"] != state["quickbooks"]["realm_id"]
        crm_page = re.search(r"In the CRM:\s+(\S+)", out.read_text())
        assert crm_page is not None and f"/ui/locations/{location[1]}/integrations" in crm_page[1]
        framed = httpx.get(crm_page[1], timeout=5)
        assert framed.status_code == 200 and f"{base}/sso/crm" in framed.text

        # A CRM workflow on the "QuickBooks invoice overdue" trigger fired once (docs/workflows.md).
        while '"event": "demo.workflow_fired"' not in log_file.read_text():
            assert '"event": "demo.workflow_failed"' not in log_file.read_text(), log_file.read_text()[-3000:]
            assert time.monotonic() < deadline + 120, log_file.read_text()[-3000:]
            time.sleep(0.5)
        # The traffic went to the log file, not to the terminal: the block is the last thing on screen.
        logged = log_file.read_text()
        assert '"event": "demo.action"' in logged and '"event": "job.finished"' in logged
        assert token not in logged
        screen = out.read_text()
        assert screen.rstrip().splitlines()[-1].strip("─ ") == "Ctrl-C to stop"
        assert '"event"' not in screen and '"event"' not in err.read_text()

        assert _stop(proc, signal.SIGINT) == 0
        stopped = True
        assert not data_dir.exists()
        assert f"{data_dir} removed" in out.read_text() and log_file.exists()
    finally:
        if not stopped:
            _stop(proc, signal.SIGINT)


def test_demo_stopped_while_starting_removes_its_folder(tmp_path: Path) -> None:
    proc, out, err, log_file = _start_demo(tmp_path, free_port())
    deadline = time.monotonic() + 60
    while not list((tmp_path / "tmp").glob("qbconnect-demo-*")):
        assert proc.poll() is None, out.read_text() + err.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _stop(proc, signal.SIGTERM) == 0, out.read_text() + err.read_text()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "removed" in out.read_text() and "Traceback" not in err.read_text() and log_file.exists()


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
