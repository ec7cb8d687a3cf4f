"""Handlers used by the job-engine tests. They log start/end lines to $PROBE_DIR/log (O_APPEND)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from qbconnect.errors import PermanentError, TransientError
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register


def _log(line: str) -> None:
    probe_dir = os.environ.get("PROBE_DIR")
    if not probe_dir:
        return
    fd = os.open(Path(probe_dir) / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@register("probe", direction="internal", title="Probe")
def probe(ctx: JobContext) -> Result:
    probe_dir = Path(os.environ.get("PROBE_DIR", "."))
    _log(f"start {ctx.entity_id} {ctx.job_id} {time.time_ns()} {os.getpid()} {ctx.attempt}")
    if (probe_dir / f"hang-{ctx.entity_id}").exists() and ctx.attempt == 1:
        (probe_dir / f"running-{ctx.entity_id}").write_text(str(os.getpid()))
        time.sleep(120)
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0.05")))
    _log(f"end {ctx.entity_id} {ctx.job_id} {time.time_ns()} {os.getpid()} {ctx.attempt}")
    return Result(summary=f"probed {ctx.entity_id}")


@register("flaky", direction="internal", title="Flaky")
def flaky(ctx: JobContext) -> Result:
    raise TransientError("QuickBooks is busy (HTTP 503)", retry_after=None)


@register("broken", direction="internal", title="Broken")
def broken(ctx: JobContext) -> Result:
    raise PermanentError("The invoice has no lines")
