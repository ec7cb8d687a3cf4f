"""A real worker process for the engine tests: the production Queue, consumer and ticker + probe handlers."""

from __future__ import annotations

import tests.support.probe_handlers  # noqa: F401  (registers the probe handlers)
from qbconnect.config import Settings
from qbconnect.logs import configure_logging
from qbconnect.runtime import build_runtime
from qbconnect.worker import Queue, Ticker, start_consumer


def main() -> None:
    configure_logging(json=True)
    runtime = build_runtime(Settings())
    queue = Queue(runtime)
    queue.install()
    ticker = Ticker(runtime, queue=queue)
    ticker.start()
    consumer = start_consumer(queue, threads=2, in_process=False)
    consumer.run()


if __name__ == "__main__":
    main()
