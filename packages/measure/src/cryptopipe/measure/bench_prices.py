"""``cryptopipe bench prices``: replay exchange -> ingest -> Kafka -> consumer -> Redis, measured.

The pipeline runs exactly as ``cryptopipe up`` runs it (same processes, same settings). System
latency (Redis written minus local receive time) comes from the consumer's exact per-trade
samples, not histogram buckets. Floors are measured in the same run on the same servers: the raw
broker round trip (produce one record, consume it) and a raw Redis ``SET``. The broker floor that
``ratio_p99_to_floor`` divides by is taken after the main run, on the warmed-up broker;
``floor_broker_rtt_cold_ms`` is the same measurement before it, on a broker that may have just started.
``floor_broker_rtt_at_rate_ms`` is the raw round trip under the run's own load: bare clients produce
at ``--rate`` for ``--floor-at-rate-seconds`` and consume it back, with no pipeline code on the path
(``ratio_p99_to_floor_at_rate`` divides by it). It shows how much of the pipeline's tail is the
broker's own at that rate on this machine.
The measured run follows an unmeasured warm-up at the same rate (``--warmup``, 30 s) for the same
reason: a fresh broker JVM spends the first minute of traffic compiling its request path.

``max_sustained_msgs_per_s`` walks a ladder of offered rates and keeps the highest one at which
the pipeline kept up: ingest received at least 90 % of the offered trades and the consumer's lag,
sampled through the step, never exceeded half a second's worth of trades, and its books balanced.

Every run's books are balanced as ``cryptopipe up`` balances them (:class:`cryptopipe.cli.Books`):
each trade ingest published is written to Redis, stale or dead-lettered, or it is ``unwritten``.
The JSON carries ``unwritten``, ``lost`` and the main run's ``reconciliation``; when the main run's
books do not balance, one line says so and the exit status is 3, as ``up``'s.

Scale-out: ``--ingest-shards N --consumers N`` run the pipeline as ``up`` does with the same flags
(N ingest processes on disjoint symbols, N prices consumers in one group). Each consumer writes
its own latency samples; the figures are over all of them. ``cpu_seconds`` is each component's
CPU time during the measured window (every process of it, the broker's and Redis' too when this
machine runs them), and ``cpu_us_per_msg`` the same per trade ingest published in the window
(live and backfilled: what the broker and the consumers carried).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from cryptopipe.infra import KafkaEndpoint, RedisEndpoint, resolve_kafka, resolve_redis
from cryptopipe.measure.floors import (
    FLOOR_SAMPLES,
    bench_parser,
    floor_ms,
    measure_broker_rtt,
    measure_broker_rtt_at_rate,
    ratio,
)
from cryptopipe.measure.samples import latency_stages, merge_samples, read_samples
from cryptopipe.observability import Scrape, exact_percentiles_ms
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline import (
    EXIT_UNBALANCED,
    AlertingConfig,
    Books,
    ExchangeConfig,
    ObservabilityConfig,
    Pipeline,
    PipelineConfig,
    ServersConfig,
    books_of,
    component_of,
    member_names,
    parse_symbols,
    split_symbols,
)
from cryptopipe.pipeline.config import alerting_settings
from cryptopipe.pipeline.drain import drain
from cryptopipe.pipeline.summary import summary
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import write_json_atomic
from cryptopipe.schemas import ConfigError, KafkaSettings, RedisSettings, load_settings
from cryptopipe.store.bench import measure_redis_set_floor


def _progress(text: str) -> None:
    print(f"bench prices: {text}", file=sys.stderr, flush=True)


def pipeline_config(rate: float, base: argparse.Namespace, run_dir: Path, prefix: str) -> PipelineConfig:
    """What ``up --source replay --rate R`` runs, on free ports and in the run's own topics and keys,
    with each consumer's latency samples in ``run_dir``; the prices path alone unless
    ``--with-alerting`` (the Spark job would share the same cores)."""
    depth: Any = getattr(base, "depth", "off")  # bench books keeps order books; bench prices none
    market = getattr(base, "market_size", 0)
    replay = load_settings(
        ReplaySettings,
        speed="1",
        clock="live",
        rate=rate,
        seed=base.seed,
        symbols=None if market else base.symbols,
        burst=False,
        book=depth != "off" or None,
        market_size=market or None,
        depth_drop_every=getattr(base, "depth_drop_every", None),
    )
    alerting = AlertingConfig(enabled=False)
    if base.with_alerting:
        alerting = AlertingConfig(settings=alerting_settings(master="local[2]"))
    return PipelineConfig(
        exchange=ExchangeConfig(source="replay", replay=replay),
        symbols=() if market else tuple(parse_symbols(base.symbols)),
        depth=depth,
        ingest_shards=base.ingest_shards,
        consumers=base.consumers,
        book_consumers=getattr(base, "book_consumers", 1),
        latency_samples=run_dir,
        alerting=alerting,
        observability=ObservabilityConfig(metrics_base_port=0, prometheus=False, dashboard=False),
        servers=ServersConfig(
            kafka=load_settings(KafkaSettings, topic_prefix=prefix),
            redis=load_settings(RedisSettings, key_prefix=f"cryptopipe:{prefix}"),
        ),
    )


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU time (user + system, children included) of each named process so far; a process
    that is gone counts 0."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            process = psutil.Process(pid)
            total = 0.0
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            total = 0.0
        out[name] = total
    return out


def component_cpu(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds between two :func:`cpu_seconds` snapshots, summed per component
    (``ingest`` and ``ingest-2`` count as ``ingest``)."""
    out: dict[str, float] = {}
    for name, value in after.items():
        component = component_of(name)
        out[component] = out.get(component, 0.0) + max(0.0, value - before.get(name, 0.0))
    return {name: round(value, 3) for name, value in out.items()}


def _pids(pipeline: Pipeline, kafka: KafkaEndpoint, redis: RedisEndpoint) -> dict[str, int]:
    pids = {name: s.pid for name, s in pipeline.state.services.items() if s.pid is not None}
    for name, server in (("broker", kafka.server), ("redis", redis.server)):
        if server is not None and server.pid is not None:
            pids[name] = server.pid
    return pids


def run_pipeline(
    rate: float,
    seconds: float,
    *,
    base: argparse.Namespace,
    kafka: KafkaEndpoint,
    redis: RedisEndpoint,
    workdir: Path,
    sample_lag: bool = False,
    warmup: Callable[[Pipeline], None] | None = None,
) -> dict[str, Any]:
    """One pipeline run at an offered rate; returns counts, lag samples, latency samples (every
    consumer's) and each component's CPU seconds during the window, which starts once ``warmup``
    (if any) returns."""
    run_id = uuid.uuid4().hex[:6]
    consumers = member_names("prices-consumer", base.consumers)
    run_dir = workdir / f"latency-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        pipeline = Pipeline(pipeline_config(rate, base, run_dir, f"bench-{run_id}-"), stack, workdir)
        pipeline.start(servers=(kafka, redis), observability=False)
        samples = [path for path in map(pipeline.latency_samples_file, consumers) if path is not None]
        pids = _pids(pipeline, kafka, redis)
        shards = pipeline.members("ingest")
        if warmup is not None:
            warmup(pipeline)
        counts_before = _ingest_counts(_scrape_ingest(pipeline, shards))
        book_readers = pipeline.members("books-consumer")
        # The books consumers' histograms at the window's start: their warm-up (events buffered
        # until a snapshot, minutes at a whole market) stays out of the window's latency.
        books_before = (
            pipeline.scrape(*book_readers, timeout=30.0, strict=True) if book_readers else Scrape([])
        )
        cpu_before = cpu_seconds(pids)
        elapsed, max_lag = _window(pipeline, seconds, [*consumers, *book_readers] if sample_lag else [])
        cpu = component_cpu(cpu_before, cpu_seconds(pids))
        ingest_scrape = _scrape_ingest(pipeline, shards)
        counts = _ingest_counts(ingest_scrape)
        drain(pipeline)
        books = books_of(pipeline)
        figures = summary(pipeline, elapsed, books)
    return {
        "summary": figures,
        "books": books,
        "elapsed_s": elapsed,
        "max_lag": max_lag,
        "latency_rows": merge_samples([read_samples(path) for path in samples]),
        "cpu_seconds": cpu,
        "window": {key: int(counts[key] - counts_before[key]) for key in counts},
        "producer_latency_ms": producer_latency_ms(ingest_scrape),
        "topic_prefix": f"bench-{run_id}-",
        "final": dict(pipeline.state.final),
        "books_before": books_before,
        "pids": pids,
    }


def _window(pipeline: Pipeline, seconds: float, readers: Sequence[str]) -> tuple[float, float]:
    """Let the run go for ``seconds``, checking every 0.5 s that no service died and, with
    ``readers``, sampling their summed lag; returns the seconds it lasted and the highest lag."""
    started = time.monotonic()
    max_lag = 0.0
    while (elapsed := time.monotonic() - started) < seconds:
        time.sleep(0.5)
        if readers:
            max_lag = max(max_lag, pipeline.scrape(*readers).total(m.CONSUMER_LAG))
        dead = pipeline.dead_service()
        if dead is not None:
            raise RuntimeError(f"{dead.name} died: {dead.log_tail()}")
    return elapsed, max_lag


def producer_latency_ms(scrape: Scrape) -> dict[str, dict[str, float | None]]:
    """The ingest producers' own latency in librdkafka's last statistics window before the run
    ended (``cryptopipe_kafka_producer_latency_seconds``), in ms: per stage, p50 and p99, the
    highest over brokers and shards. None where no window had a sample."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in ("queue", "outbuf", "rtt"):
        out[stage] = {}
        for quantile in ("p50", "p99"):
            values = [s.value for s in scrape.samples(m.PRODUCER_LATENCY, stage=stage, quantile=quantile)]
            out[stage][quantile] = round(max(values) * 1000, 3) if values else None
    return out


def _scrape_ingest(pipeline: Pipeline, shards: Sequence[str]) -> Scrape:
    """The ingest shards' /metrics, allowed 30 s: a busy ingest may be slow to render its page, and
    the window's counts must never read as 0 because a scrape timed out (RuntimeError instead)."""
    return pipeline.scrape(*shards, timeout=30.0, strict=True)


def _ingest_counts(scrape: Scrape) -> dict[str, float]:
    """Trades every ingest shard received live and published so far, and the diff-depth events
    it took in (0 without order books)."""
    return {
        "received": scrape.total(m.TRADES_RECEIVED),
        "published": scrape.total(m.TRADES_PUBLISHED),
        "book_events": scrape.total(m.BOOK_EVENTS),
    }


def walk_ladder(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> Iterator[tuple[float, dict[str, Any], dict[str, Any]]]:
    """Run each ``--ladder`` rate for ``--step-seconds`` until one falls behind: for each step, the
    rate, its run and its common figures (``kept_up``: ingest took in 90 % of the offer, the readers'
    lag stayed within half a second's worth, the books balanced)."""
    for rate in [float(r) for r in args.ladder.split(",") if r.strip()]:
        _progress(f"ladder step {rate:.0f} msg/s for {args.step_seconds:.0f} s")
        step = run_pipeline(
            rate, args.step_seconds, base=args, kafka=kafka, redis=redis, workdir=workdir, sample_lag=True
        )
        received = step["summary"]["trades_received"]
        step_books: Books = step["books"]
        kept_up = (
            received >= 0.9 * rate * step["elapsed_s"]
            and step["max_lag"] <= rate * 0.5
            and step_books.balanced
        )
        figures = {
            "offered_msgs_per_s": rate,
            "received": received,
            "received_msgs_per_s": round(received / step["elapsed_s"], 1),
            "max_lag": step["max_lag"],
            "unwritten": step_books.unwritten,
            "kept_up": kept_up,
        }
        _progress(
            f"  received {received} ({figures['received_msgs_per_s']:.0f}/s), max lag "
            f"{step['max_lag']:.0f}, unwritten {step_books.unwritten}: "
            f"{'kept up' if kept_up else 'fell behind'}"
        )
        yield rate, step, figures
        if not kept_up:
            return


def _ladder(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> tuple[list[dict[str, Any]], float]:
    """Each ladder step's figures, and the highest offered rate the pipeline kept up with."""
    steps = [figures for _, _, figures in walk_ladder(args, kafka, redis, workdir)]
    kept = [step["offered_msgs_per_s"] for step in steps if step["kept_up"]]
    return steps, max(kept, default=0.0)


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("prices", __doc__)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered trades/s (default 2000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at --rate (default 20)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="run the pipeline at --rate this long first, unmeasured, so that a broker started for the "
        "bench has JIT-compiled its request path (default 30; 0 measures a cold broker)",
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.add_argument("--symbols", default="btcusdt,ethusdt")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--ladder",
        default="2000,5000,10000,20000,30000,40000",
        help="offered rates for max_sustained_msgs_per_s; empty string skips it",
    )
    parser.add_argument("--step-seconds", type=float, default=6.0)
    parser.add_argument(
        "--floor-samples",
        type=int,
        default=FLOOR_SAMPLES,
        help=f"broker round trips and Redis SETs per idle floor (default {FLOOR_SAMPLES})",
    )
    parser.add_argument(
        "--floor-at-rate-seconds",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="measure the raw broker round trip at --rate this long after the run (default 10; 0 skips it)",
    )
    parser.add_argument(
        "--with-alerting",
        action="store_true",
        help="run the Spark alert job beside the prices path (the whole pipeline's figure)",
    )
    parser.add_argument(
        "--ingest-shards",
        type=int,
        default=1,
        metavar="N",
        help="ingest processes on disjoint symbols, as `up --ingest-shards` (default 1)",
    )
    parser.add_argument(
        "--consumers",
        type=int,
        default=1,
        metavar="N",
        help="prices consumers in one group, as `up --consumers` (default 1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        split_symbols(parse_symbols(args.symbols), args.ingest_shards)
    except ConfigError as exc:
        _progress(str(exc))
        return 2
    if args.consumers < 1:
        _progress(f"--consumers must be at least 1, got {args.consumers}")
        return 2
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cryptopipe-bench-") as tmp:
        kafka = resolve_kafka(KafkaSettings(), stack=stack)
        redis = resolve_redis(RedisSettings(), stack=stack)
        _progress(f"broker {kafka}; redis {redis}")
        _progress(f"floors: {args.floor_samples} broker round trips and Redis SETs")
        cold_rtt = measure_broker_rtt(kafka.settings, args.floor_samples)
        redis_set = measure_redis_set_floor(redis.url.get_secret_value(), args.floor_samples)
        warmup = _warm_up(args, kafka, redis, Path(tmp))
        _progress(
            f"pipeline at {args.rate:.0f} msg/s for {args.duration:.0f} s "
            f"({args.ingest_shards} ingest shard(s), {args.consumers} consumer(s))"
        )
        main_run = run_pipeline(
            args.rate, args.duration, base=args, kafka=kafka, redis=redis, workdir=Path(tmp)
        )
        # The floor the ratio uses is measured again once the run has warmed the broker up: a
        # broker started for this bench is a fresh JVM whose first round trips run before the JIT
        # compiled its request path (measured: p99 12-18 ms cold, about 1 ms warm), and a ratio to
        # a cold floor would flatter the pipeline.
        _progress(f"floor again on the warm broker: {args.floor_samples} round trips")
        broker_rtt = measure_broker_rtt(kafka.settings, args.floor_samples)
        at_rate_rtt: list[float] = []
        if args.floor_at_rate_seconds > 0:
            _progress(f"floor at {args.rate:.0f} msg/s: bare clients for {args.floor_at_rate_seconds:.0f} s")
            at_rate_rtt = measure_broker_rtt_at_rate(kafka.settings, args.rate, args.floor_at_rate_seconds)
        sustained, best = _ladder(args, kafka, redis, Path(tmp))
    result = _result(args, main_run, broker_rtt, redis_set)
    result["floor_broker_rtt_cold_ms"] = floor_ms(cold_rtt)
    at_rate = floor_ms(at_rate_rtt)  # p50 and p99 None when it was skipped
    result["floor_broker_rtt_at_rate_ms"] = at_rate
    result["ratio_p99_to_floor_at_rate"] = ratio(result["system_latency_ms"]["p99"], at_rate["p99"])
    result["max_sustained_msgs_per_s"] = best
    result["warmup"] = warmup
    result["ladder"] = sustained
    _report(result, args.json_path)
    books: Books = main_run["books"]
    _progress(books.line())
    return 0 if books.balanced else EXIT_UNBALANCED


def _report(result: dict[str, Any], json_path: Path | None) -> None:
    """The headline figures, one per line, and the whole result as JSON when asked."""
    for key in (
        "system_latency_ms",
        "system_latency_stages_ms",
        "ingest_producer_latency_ms",
        "received_msgs_per_s",
        "throughput_msgs_per_s",
        "max_sustained_msgs_per_s",
        "floor_broker_rtt_ms",
        "floor_broker_rtt_cold_ms",
        "floor_broker_rtt_at_rate_ms",
        "floor_redis_set_ms",
        "ratio_p99_to_floor",
        "ratio_p99_to_floor_at_rate",
        "unwritten",
        "lost",
        "cpu_seconds",
        "cpu_us_per_msg",
    ):
        print(f"{key:28} {result[key]}")
    if json_path is not None:
        write_json_atomic(json_path, result, indent=2)


def _warm_up(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> dict[str, Any]:
    """The pipeline at ``--rate`` for ``--warmup`` s, unmeasured: measured on a broker started for
    the bench, its CPU per trade fell from 275 to 89 µs over the first minute of traffic (JIT), and
    the latency tail with it. Its books are balanced like every run's, and said."""
    if args.warmup <= 0:
        return {"seconds": 0.0}
    _progress(f"warm-up: pipeline at {args.rate:.0f} msg/s for {args.warmup:.0f} s, not measured")
    run = run_pipeline(args.rate, args.warmup, base=args, kafka=kafka, redis=redis, workdir=workdir)
    books: Books = run["books"]
    _progress(f"warm-up: {books.line()}")
    return {
        "seconds": round(run["elapsed_s"], 2),
        "trades_published": run["summary"]["trades_published"],
        "unwritten": books.unwritten,
        "balanced": books.balanced,
    }


def _result(
    args: argparse.Namespace, main_run: dict[str, Any], broker_rtt: list[float], redis_set: list[float]
) -> dict[str, Any]:
    """The main run's figures, as the JSON carries them."""
    figures = main_run["summary"]
    books: Books = main_run["books"]
    rows = main_run["latency_rows"]
    system = exact_percentiles_ms(value for value, _ in rows)
    floor_broker = floor_ms(broker_rtt)
    window = main_run["window"]
    return {
        "broker": figures["broker"],
        "redis": figures["redis"],
        "ingest_shards": figures["ingest_shards"],
        "consumers": figures["consumers"],
        # False: the prices path alone (the default); True: the Spark alert job ran beside it.
        "with_alerting": bool(args.with_alerting),
        "offered_rate_msgs_per_s": args.rate,
        "duration_s": round(main_run["elapsed_s"], 2),
        "trades_received": figures["trades_received"],
        "trades_published": figures["trades_published"],
        "prices_written": figures["prices_written"],
        "unwritten": books.unwritten,
        "lost": books.lost,
        "reconciliation": books.as_dict(),
        "system_latency_ms": system,
        "system_latency_samples": len(rows),
        "system_latency_stages_ms": latency_stages(rows),
        "ingest_producer_latency_ms": main_run["producer_latency_ms"],
        "e2e_latency_ms": figures["e2e_latency_ms"],
        "received_msgs_per_s": round(figures["trades_received"] / main_run["elapsed_s"], 1),
        "throughput_msgs_per_s": round(figures["prices_written"] / main_run["elapsed_s"], 1),
        "cpu_seconds": main_run["cpu_seconds"],
        "cpu_window_trades": window,
        "cpu_us_per_msg": {
            name: round(seconds / window["published"] * 1e6, 1) if window["published"] else None
            for name, seconds in main_run["cpu_seconds"].items()
        },
        "floor_broker_rtt_ms": floor_broker,
        "floor_redis_set_ms": floor_ms(redis_set),
        "ratio_p99_to_floor": ratio(system["p99"], floor_broker["p99"]),
    }
