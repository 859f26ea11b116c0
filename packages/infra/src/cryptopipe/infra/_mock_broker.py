"""Child process that hosts librdkafka's mock cluster and prints its address.

The mock broker lives inside a librdkafka client, so this process keeps one client alive until
SIGTERM/SIGINT (or until its parent dies: the parent sets PR_SET_PDEATHSIG). It prints one line,
``bootstrap=HOST:PORT``, once the broker listens.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


def main() -> int:
    from confluent_kafka import Producer

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    producer = Producer({"test.mock.num.brokers": 1})
    metadata = producer.list_topics(timeout=30)
    broker = next(iter(metadata.brokers.values()))
    print(f"bootstrap={broker.host}:{broker.port}", flush=True)
    while not stop.wait(1.0):
        producer.poll(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
