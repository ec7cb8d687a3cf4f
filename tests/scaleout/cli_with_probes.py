"""``qbconnect`` with the engine tests' probe handlers registered: the production CLI (serve, worker) in a
subprocess, running jobs whose start, end and hang the tests control (tests/support/probe_handlers.py)."""

from __future__ import annotations

import tests.support.probe_handlers  # noqa: F401  (registers the probe handlers)
from qbconnect.cli import main

if __name__ == "__main__":
    main()
