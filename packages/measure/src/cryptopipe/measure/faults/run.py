"""A running scenario as its fault sees it: the pipeline, the servers, the monitor, what may be down."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptopipe.measure.faults.books import BookWatch
from cryptopipe.measure.faults.config import FaultConfig, Progress, ScenarioError, Servers
from cryptopipe.measure.faults.monitor import Monitor
from cryptopipe.pipeline import (
    Pipeline,
)
from cryptopipe.schemas import (
    KafkaSettings,
)

# --- one run -------------------------------------------------------------------------------------


@dataclass
class Run:
    """A running scenario, as its fault sees it."""

    name: str
    servers: Servers
    config: FaultConfig
    pipeline: Pipeline
    kafka_settings: KafkaSettings
    prices_topic: str
    progress: Progress
    monitor: Monitor
    books: BookWatch | None = None
    """Watches the books in Redis against the exchange's (with ``config.depth``)."""
    expected_down: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    """What the fault found wrong on its way (merged into the result's problems)."""
    ingest_killed_us: int | None = None
    """Wall clock (µs) when ingest was killed (ingest-kill)."""
    ingest_back_us: int | None = None
    """Wall clock (µs) when the restarted ingest answered (ingest-kill)."""
    excused: int = 0
    """Trades the pipeline cannot deliver (played while no ingest was subscribed): the wait for
    it to catch up does not wait for them; the reconciliation checks they are just those."""

    def hold(self, what: str) -> None:
        """Keep the fault on for ``config.outage`` seconds, with a progress line every 5 s."""
        self.progress(f"{what}; holding the fault for {self.config.outage:g} s")
        end = time.monotonic() + self.config.outage
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 5.0))
            self.report("  during the fault:")

    def report(self, what: str) -> None:
        offered, written = self.monitor.offered, self.monitor.written
        self.progress(
            f"{what} offered {'?' if offered is None else offered}/{self.config.count}, "
            + ("Redis not answering" if written is None else f"in Redis {written}")
        )

    @contextlib.contextmanager
    def down(self, *services: str) -> Iterator[None]:
        """While inside, ``services`` may be down without failing the scenario."""
        self.expected_down.update(services)
        try:
            yield
        finally:
            self.expected_down.difference_update(services)

    def check_services(self) -> None:
        for name, service in self.pipeline.state.services.items():
            if name not in self.expected_down and not service.running():
                raise ScenarioError(
                    f"{name} exited with code {service.returncode()} during {self.name}: {service.log_tail()}"
                )


Fault = Callable[[Run], str]
"""Injects a fault, holds it, heals it (blocking); returns what it did, for the progress line."""
