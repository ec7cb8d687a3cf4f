"""Run benchmarks: ``python -m bench`` (all) or ``python -m bench burst budget`` (some).

Each benchmark is a module ``bench/<name>.py`` with a ``main()`` that prints its figures and writes them to
``bench/results/<name>.json``. Benchmarks are not part of ``make test`` (no timing asserts in tests).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    import logging

    from qbconnect.logs import configure_logging

    configure_logging(json=False, level=logging.WARNING)
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
