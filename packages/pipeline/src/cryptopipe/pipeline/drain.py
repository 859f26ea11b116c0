"""Stopping a run front to back so nothing in flight is lost, reading final figures on the way.

Every ingest shard first (together), then the exchange, the prices consumers once they handled
all that ingest published, the Spark job once it read every prices record, and the alerts
consumer once it handled every alert. A wait gives up only when its service stops making progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException

from cryptopipe.ingest import IngestStats
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline.books import alerts_published_by, book_records_published, stats_from
from cryptopipe.pipeline.names import component_of
from cryptopipe.pipeline.say import say
from cryptopipe.pipeline.service import Service
from cryptopipe.runtime import end_offsets, final_scrape, read_stats

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def drain(pipeline: Pipeline) -> None:
    """Stop every service of ``pipeline`` front to back (see the module docstring)."""
    services = pipeline.state.services
    read_and_stop(pipeline, [n for n in pipeline.members("ingest") if n in services], "ingest")
    replay = services.get("replay-exchange")
    if replay is not None:
        replay.stop()
    published = ingest_published(pipeline)
    drain_consumers(pipeline, pipeline.members("prices-consumer"), published)
    drain_consumers(pipeline, pipeline.members("books-consumer"), book_records_published(pipeline))
    alerting = services.get("alerting")
    if alerting is not None and alerting.running():
        drain_alerting(pipeline, published)
        read_and_stop(pipeline, ["alerting"], "alerting")
    alerts_published = None
    if "alerting" in pipeline.state.final:
        alerts_published = alerts_published_by(pipeline.state.final["alerting"])
    drain_consumers(pipeline, pipeline.members("alerts-consumer"), alerts_published)


def stop_all(services: Sequence[Service]) -> None:
    """Stop services at once (each stop waits for its process to flush and exit)."""
    if len(services) == 1:
        services[0].stop()
        return
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="stop") as pool:
        for future in [pool.submit(service.stop) for service in services]:
            future.result()


def read_and_stop(pipeline: Pipeline, names: Sequence[str], component: str) -> None:
    """Stop the running ones at once, then read their final figures (each, and all together).

    A service writes its whole metrics registry into its stats file after it flushed, so the
    figures include the last batch. Only a service that left none (killed before it could
    write) is read from the scrape taken just before the stop, and the run says so.
    """
    state = pipeline.state
    running = [n for n in names if state.services[n].running()]
    if not running:
        return
    before = {name: pipeline.scrape(name) for name in running}
    state.stopped.update(running)
    stop_all([state.services[n] for n in running])
    for name in running:
        final = final_scrape(read_stats(state.stats_files.get(name)))
        if final is None:
            say(f"cryptopipe up: {name} left no final figures; its books use its last scrape")
            final = before[name]
        state.final[name] = final
    state.final_groups[component] = Scrape.merged(*(state.final[n] for n in running))


def wait_until(
    pipeline: Pipeline,
    names: str | Sequence[str],
    done: Callable[[Scrape], bool],
    timeout: float = 30.0,
    *,
    progress: Callable[[Scrape], float] | None = None,
    limit: float = 600.0,
    left: Callable[[Scrape], str] | None = None,
) -> bool:
    """Wait until ``done`` (on one scrape of ``names``); give up after ``timeout`` s, or after
    ``timeout`` s without ``progress`` growing (never beyond ``limit`` s), so a slow but busy
    service is waited for. A wait past 5 s says every 5 s what is ``left``."""
    names = (names,) if isinstance(names, str) else tuple(names)
    started = time.monotonic()
    deadline = started + timeout
    next_line = started + 5.0
    last: float | None = None
    while time.monotonic() < deadline:
        scrape = pipeline.scrape(*names)
        if done(scrape):
            return True
        if progress is not None:
            value = progress(scrape)
            if last is not None and value > last:
                deadline = min(max(deadline, time.monotonic() + timeout), started + limit)
            last = value if last is None else max(last, value)
        if left is not None and time.monotonic() >= next_line:
            say(f"cryptopipe up: waiting for {', '.join(names)}: {left(scrape)}")
            next_line += 5.0
        time.sleep(0.2)
    waited = time.monotonic() - started
    say(f"cryptopipe up: {', '.join(names)} did not catch up within {waited:.0f} s; stopping anyway")
    return False


def drain_consumers(pipeline: Pipeline, names: Sequence[str], expected: int | None) -> None:
    """Wait until a group's consumers have no lag and together handled ``expected`` records
    (written, stale or dead-lettered), as long as they make progress; read them, stop them."""
    services = pipeline.state.services
    running = [n for n in names if n in services and services[n].running()]
    if not running:
        return
    component = component_of(running[0])
    before = sum(pipeline.state.handled_before.get(n, 0) for n in running)

    def handled(s: Scrape) -> float:
        return before + s.total(m.CONSUMED) + s.total(m.DEAD_LETTERS, component=component)

    def left(s: Scrape) -> str:
        of = "" if expected is None else f" of {expected}"
        return f"{handled(s):.0f}{of} records handled, lag {s.total(m.CONSUMER_LAG):.0f}"

    wait_until(
        pipeline,
        running,
        lambda s: s.total(m.CONSUMER_LAG) == 0 and (expected is None or handled(s) >= expected),
        pipeline.config.drain_timeout_s,
        progress=handled,
        left=left,
    )
    read_and_stop(pipeline, running, component)


def drain_alerting(pipeline: Pipeline, published: int | None) -> None:
    """Wait until the Spark job has read every prices record, as long as it makes progress.

    Every record: its read offsets reach the partitions' ends, asked of the broker now that
    ingest has stopped; on a broker whose ends cannot be trusted (Tansu), the rows it read reach
    what ingest ``published``. A window closes in the micro-batch that reads the trade taking its
    symbol past the window's end, and Spark runs no batch without new data, so waiting for "one
    more" would only time out.
    """
    ends = prices_ends(pipeline)

    def read(s: Scrape) -> dict[str, float]:
        return {x.labels.get("partition", ""): x.value for x in s.samples(m.ALERTING_READ_OFFSET)}

    def unread(s: Scrape) -> int | None:
        if ends:
            return int(sum(max(0.0, end - read(s).get(str(p), 0.0)) for p, end in ends.items()))
        return None if published is None else int(max(0.0, published - s.total(m.ALERTING_INPUT_ROWS)))

    if ends or published is not None:
        # Progress is fewer records left to read.
        wait_until(
            pipeline,
            "alerting",
            lambda s: unread(s) == 0,
            progress=lambda s: -(unread(s) or 0),
            left=lambda s: f"{unread(s)} prices records to read",
        )
    else:  # neither figure: give a batch in flight the time to finish
        batches = pipeline.scrape("alerting").total(m.ALERTING_BATCHES)
        wait_until(pipeline, "alerting", lambda s: s.total(m.ALERTING_BATCHES) > batches, timeout=5.0)
    remaining = unread(pipeline.scrape("alerting"))
    pipeline.state.alerting_unread = remaining
    if remaining:
        say(
            f"cryptopipe up: the alerting job stops with {remaining} prices records unread: "
            "no alert comes from them in this run"
        )


def ingest_published(pipeline: Pipeline) -> int | None:
    """What every ingest shard published, from their final stats files (None while one of them
    left none: then the consumers are drained by their lag alone)."""
    files = pipeline.state.stats_files
    shards = [stats_from(IngestStats, read_stats(files.get(n))) for n in pipeline.members("ingest")]
    if not shards or any(shard is None for shard in shards):
        return None
    return sum(shard.published for shard in shards if shard is not None)


def prices_ends(pipeline: Pipeline) -> dict[int, int] | None:
    """Each non-empty prices partition's end offset (None where the broker's ListOffsets cannot
    be trusted, or does not answer)."""
    kafka = pipeline.kafka
    if kafka is None or kafka.quirks.list_offsets_unreliable:
        return None
    try:
        ends = end_offsets(kafka.settings, pipeline.prices_topic)
    except KafkaException:
        return None
    return {p: end for p, end in ends.items() if end > 0}
