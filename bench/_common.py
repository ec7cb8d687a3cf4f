"""What every benchmark shares: the whole product on this machine in a throw-away folder, and its results."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-secret-key-0123456789"


@contextmanager
def bench_stack(**kwargs: Any) -> Iterator[Stack]:
    """Both emulators + the service (SQLite) in a temporary folder; jobs wait for ``drain`` unless run_worker."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs.set_dispatcher(None)
        stack = start_stack(
            database_url=f"sqlite:///{tmp}/bench.db",
            queue_url=f"sqlite:///{tmp}/queue.db",
            secret_key=SECRET,
            admin_token="bench-admin",
            **kwargs,
        )
        try:
            yield stack
        finally:
            stack.stop()


def write_results(name: str, results: Any) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
