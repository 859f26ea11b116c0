"""The alerting job: prices -> Spark Structured Streaming -> alerts, restartable from a checkpoint.

Use it from Python (``cryptopipe up`` runs it as a child process, ``cryptopipe alerting``)::

    job = AlertingJob(AlertingSettings(), KafkaSettings())
    job.start()                 # returns once the query runs
    job.await_termination(5)    # re-raises the query's own exception if it died
    job.stop()

or :meth:`AlertingJob.run` to keep it running, restarting a failed query from its checkpoint
with backoff, until a stop event is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptopipe.alerting.errors import SourceUnavailableError
from cryptopipe.alerting.express import ExpressLane
from cryptopipe.alerting.lag import LagProbe
from cryptopipe.alerting.listener import PHASES, ProgressRecorder
from cryptopipe.alerting.plan import alert_windows, native_trades
from cryptopipe.alerting.rules import book_rules, price_rules
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.alerting.sink import (
    AlertPublisher,
    TriggerTracker,
    count_published,
    observation_of,
    windows_to_alerts,
)
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import Stop, ensure_topics
from cryptopipe.schemas import ALERTS, BOOK_UPDATES, PRICES, Alert, KafkaSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

logger = logging.getLogger(__name__)

SourceKind = Literal["native", "python"]
NATIVE_KAFKA_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
#: ``spark.jars.packages`` coordinate that provides the native source (needs Maven Central).
NATIVE_KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:{version}"

AlertCallback = Callable[[Sequence[Alert], Sequence[int]], None]


@dataclass(frozen=True, slots=True)
class JobStats:
    batches: int = 0
    alerts_published: int = 0
    restarts: int = 0
    last_batch_id: int = -1
    dropped_late: int = 0


def native_kafka_available(spark: SparkSession) -> bool:
    """Whether Spark's own Kafka source (spark-sql-kafka-0-10) is on the classpath."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        return bool(jvm.org.apache.spark.util.Utils.classIsLoadable(NATIVE_KAFKA_CLASS))
    except Exception:  # py4j reports a missing method/class as a generic error
        logger.debug("cannot ask the JVM for %s", NATIVE_KAFKA_CLASS, exc_info=True)
        return False


def native_kafka_options(kafka: KafkaSettings, topic: str, settings: AlertingSettings) -> dict[str, str]:
    """Options for ``format("kafka")``: the Kafka section as the Java client takes it, each key
    ``kafka.``-prefixed (a password travels in ``kafka.sasl.jaas.config``, which Spark redacts)."""
    options = {f"kafka.{key}": value for key, value in kafka.java_client_config().items()}
    options.update(
        {"subscribe": topic, "startingOffsets": settings.starting_offsets, "failOnDataLoss": "false"}
    )
    if settings.max_records_per_trigger:
        options["maxOffsetsPerTrigger"] = str(settings.max_records_per_trigger)
    return options


class AlertingJob:
    """One streaming query from the prices topic to the alerts topic.

    ``spark``: an existing session to use (tests share one); by default one is built from the
    settings and stopped by :meth:`close`. ``on_alerts(alerts, ack_times_us)`` is called on the
    driver after each micro-batch's alerts were acknowledged by Kafka.
    """

    def __init__(
        self,
        settings: AlertingSettings,
        kafka: KafkaSettings,
        *,
        spark: SparkSession | None = None,
        query_name: str | None = None,
        on_alerts: AlertCallback | None = None,
    ) -> None:
        if not kafka.bootstrap_servers:
            raise ValueError("KafkaSettings.bootstrap_servers is empty: the job needs a broker")
        self.settings = settings
        self.kafka = kafka
        self.prices_topic = PRICES.with_prefix(kafka.topic_prefix).name
        self.alerts_topic = ALERTS.with_prefix(kafka.topic_prefix).name
        self.book_topic = BOOK_UPDATES.with_prefix(kafka.topic_prefix).name
        self.book_rules = book_rules(settings.rules)
        self.rules = {rule.name: rule for rule in settings.rules}
        self._prime_metrics()
        self.query_name = query_name or f"cryptopipe-alerting-{self.prices_topic}"
        self.on_alerts = on_alerts
        self._spark = spark
        self._owns_spark = spark is None
        self._query: StreamingQuery | None = None
        self._book_query: StreamingQuery | None = None
        self._source_kind: SourceKind | None = None
        self._publisher: AlertPublisher | None = None
        self._express: ExpressLane | None = None
        self._tracker = TriggerTracker(rule.window_us for rule in price_rules(settings.rules))
        self._recorder = ProgressRecorder(
            self.query_name,
            on_progress=self._absorb,
            keep=settings.progress_history,
            delay_ms=settings.watermark_delay_ms,
        )
        self._lag = LagProbe(kafka, self.prices_topic, lambda: self._recorder.offsets)
        self._listening = False
        self._run_first_batch: int | None = None
        self._stats = JobStats()
        self._lock = threading.Lock()

    # --- public -----------------------------------------------------------------------------

    def _prime_metrics(self) -> None:
        """Series for events that may not happen yet (no alert, no data batch) read 0, not no data."""
        kinds = ("final", "early")
        m.prime(m.ALERTING_ALERTS, *({"rule": r, "kind": k} for r in self.rules for k in kinds))
        m.prime(m.ALERTING_PUBLISH_LATENCY, *({"kind": k} for k in kinds))
        m.prime(m.ALERTING_BATCHES, {"data": "true"}, {"data": "false"})
        m.prime(m.ALERTING_BATCH_PHASE, *({"phase": p} for p in PHASES))

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from cryptopipe.alerting.spark import build_session

            self._spark = build_session(self.settings)
        return self._spark

    @property
    def query(self) -> StreamingQuery | None:
        return self._query

    @property
    def recorder(self) -> ProgressRecorder:
        """Progress of every micro-batch of this job (and the metrics it feeds)."""
        return self._recorder

    @property
    def express(self) -> ExpressLane | None:
        """The express lane, once started (``ALERTING_EXPRESS``)."""
        return self._express

    @property
    def stats(self) -> JobStats:
        return self._stats

    @property
    def source_kind(self) -> SourceKind:
        if self._source_kind is None:
            self._source_kind = self._resolve_source()
        return self._source_kind

    @property
    def checkpoint_location(self) -> Path:
        return self.settings.checkpoint_location(self.prices_topic, self.source_kind).absolute()

    def start(self) -> StreamingQuery:
        """Start (or restart, from the checkpoint) the streaming query; returns once it runs."""
        if self._query is not None and self._query.isActive:
            if self.book_rules and (self._book_query is None or not self._book_query.isActive):
                self._book_query = self._start_book_query(self.spark)
            return self._query
        prefix = self.kafka.topic_prefix
        topics = [PRICES, ALERTS, *([BOOK_UPDATES] if self.book_rules else [])]
        ensure_topics(self.kafka, [spec.with_prefix(prefix) for spec in topics])
        # The express lane first: it alerts while Spark is still starting (tens of seconds).
        if self.settings.express and self._express is None:
            self._express = self._start_express()
        spark = self.spark
        spark.conf.set("spark.sql.shuffle.partitions", str(self.settings.shuffle_partitions))
        if self._publisher is None:
            self._publisher = AlertPublisher(
                self.kafka, self.alerts_topic, flush_timeout_s=self.settings.producer_flush_timeout_s
            )
        if not self._listening:
            spark.streams.addListener(self._recorder)
            self._listening = True
        windows = alert_windows(self._trades(spark), self.settings.rules, self.settings.watermark_delay_ms)
        location = self.checkpoint_location
        location.parent.mkdir(parents=True, exist_ok=True)
        writer = (
            windows.writeStream.queryName(self.query_name)
            .outputMode("append")
            .foreachBatch(self._process_batch)
            .option("checkpointLocation", str(location))
        )
        if self.settings.trigger_interval_ms:
            writer = writer.trigger(processingTime=f"{self.settings.trigger_interval_ms} milliseconds")
        self._run_first_batch = None
        self._query = writer.start()
        self._book_query = self._start_book_query(spark)
        self._lag.start()
        logger.info(
            "alerting query %s: %s -> %s, alerting_source=%s, express lane %s, checkpoint %s, rules: %s",
            self.query_name,
            self.prices_topic,
            self.alerts_topic,
            self.source_kind,
            "on" if self._express is not None else "off",
            location,
            "; ".join(rule.describe() for rule in self.settings.rules),
        )
        return self._query

    def await_termination(self, timeout: float | None = None) -> bool:
        """True once the query has stopped; re-raises the query's exception if it (or the book
        rules' query) failed."""
        self._check_book_query()
        if self._query is None:
            return True
        if timeout is None:
            self._query.awaitTermination()
            return True
        return bool(self._query.awaitTermination(timeout))  # type: ignore[arg-type]  # takes float seconds

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the queries, each between two micro-batches if one ends within ``grace_s``.

        A micro-batch cut short is not lost (it is not committed, so a restart replays it);
        stopping between batches just saves that replay.
        """
        for query in (self._query, self._book_query):
            if query is not None and query.isActive:
                _stop_query(query, grace_s)

    def close(self) -> None:
        """Stop the query, detach from Spark and flush the producer; stops a session it built."""
        self.stop()
        self._lag.stop()
        if self._express is not None:
            self._express.stop()
            self._express.publisher.close()
            self._express = None
        if self._listening and self._spark is not None:
            self._spark.streams.removeListener(self._recorder)
            self._listening = False
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        if self._owns_spark and self._spark is not None:
            self._spark.stop()
            self._spark = None

    def run(self, stop: threading.Event | Stop, on_started: Callable[[], None] | None = None) -> JobStats:
        """Run until ``stop`` is set; a failed query restarts from its checkpoint with backoff.

        ``on_started`` is called each time the query (re)starts.
        """
        from pyspark.errors import StreamingQueryException

        backoff = 1.0
        try:
            while not stop.is_set():
                query = self.start()
                if on_started is not None:
                    on_started()
                started = time.monotonic()
                try:
                    while not stop.is_set():
                        self._check_book_query()
                        if query.awaitTermination(0.5):  # type: ignore[arg-type]  # takes float seconds
                            logger.warning("alerting query stopped by someone else; not restarting")
                            return self._stats
                except StreamingQueryException as exc:
                    m.ERRORS.labels(component="alerting", reason="query_failed").inc()
                    m.ALERTING_QUERY_RESTARTS.inc()
                    self._stats = replace(self._stats, restarts=self._stats.restarts + 1)
                    if time.monotonic() - started > 60:
                        backoff = 1.0
                    logger.error("alerting query failed, restarting in %.0f s: %s", backoff, str(exc)[:2000])
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.restart_backoff_max_s)
        finally:
            self.stop()
        return self._stats

    # --- internals --------------------------------------------------------------------------

    def _start_express(self) -> ExpressLane:
        publisher = AlertPublisher(
            self.kafka, self.alerts_topic, flush_timeout_s=self.settings.producer_flush_timeout_s
        )
        lane = ExpressLane(
            self.kafka,
            self.prices_topic,
            self.settings.rules,
            self.settings.watermark_delay_ms,
            publisher,
            book_topic=self.book_topic,
        )
        lane.start()
        return lane

    def _check_book_query(self) -> None:
        """Re-raise the book rules' query's exception if it died (``run`` then restarts it)."""
        book = self._book_query
        if book is not None and not book.isActive:
            book.awaitTermination(0)

    def _start_book_query(self, spark: SparkSession) -> StreamingQuery | None:
        """The book rules' query (book-updates -> BookWindows -> this job's sink), when there are
        book rules; Spark's own Kafka source only (the Python Data Source decodes trades)."""
        if not self.book_rules:
            return None
        if self.source_kind != "native":
            logger.warning(
                "book rules run in the express lane only: their Spark query needs Spark's own Kafka source "
                "(alerting_source=%s)",
                self.source_kind,
            )
            return None
        from cryptopipe.alerting.book_plan import book_windows, native_book_records

        records = native_book_records(spark, native_kafka_options(self.kafka, self.book_topic, self.settings))
        location = self.settings.checkpoint_location(self.book_topic, self.source_kind, book=True).absolute()
        location.parent.mkdir(parents=True, exist_ok=True)
        writer = (
            book_windows(records, self.book_rules, self.settings.watermark_delay_ms)
            .writeStream.queryName(f"{self.query_name}-books")
            .outputMode("append")
            .foreachBatch(self._process_book_batch)
            .option("checkpointLocation", str(location))
        )
        if self.settings.trigger_interval_ms:
            writer = writer.trigger(processingTime=f"{self.settings.trigger_interval_ms} milliseconds")
        logger.info("book rules query: %s -> %s, checkpoint %s", self.book_topic, self.alerts_topic, location)
        return writer.start()

    def _resolve_source(self) -> SourceKind:
        from cryptopipe.alerting.spark import connector_problem

        choice = self.settings.source
        if choice == "python":
            return "python"
        if native_kafka_available(self.spark):
            return "native"
        reason = connector_problem(self.spark) or "spark-sql-kafka is not on Spark's classpath"
        coordinate = NATIVE_KAFKA_PACKAGE.format(version=self.spark.version)
        if choice == "native":
            raise SourceUnavailableError(
                f"ALERTING_SOURCE=native but Spark's Kafka connector ({coordinate}) cannot be had: {reason}. "
                "Run once with access to Maven Central (the jars are cached), or use ALERTING_SOURCE=python"
            )
        logger.warning(
            "alerting_source=python: Spark's native Kafka connector (%s) cannot be had (%s); "
            "falling back to the confluent-kafka Python Data Source",
            coordinate,
            reason,
        )
        return "python"

    def _trades(self, spark: SparkSession) -> DataFrame:
        if self.source_kind == "native":
            logger.info("reading %s with Spark's native Kafka source", self.prices_topic)
            return native_trades(spark, native_kafka_options(self.kafka, self.prices_topic, self.settings))
        from cryptopipe.alerting.kafka_source import SOURCE_NAME, KafkaTradeSource, source_options

        logger.info("reading %s with the confluent-kafka Python Data Source", self.prices_topic)
        spark.dataSource.register(KafkaTradeSource)
        extra: dict[str, str] = {"startingOffsets": self.settings.starting_offsets}
        if self.settings.max_records_per_trigger:
            extra["maxRecordsPerTrigger"] = str(self.settings.max_records_per_trigger)
        options = source_options(self.kafka.client_config(), self.prices_topic, **extra)
        return spark.readStream.format(SOURCE_NAME).options(**options).load()

    def _absorb(self, progress: Any) -> None:
        observation = observation_of(progress)
        if observation is not None:
            self._tracker.absorb(*observation)

    def _process_batch(self, frame: DataFrame, batch_id: int) -> None:
        rows = [row.asDict() for row in frame.collect()]
        if self._run_first_batch is None:
            self._run_first_batch = batch_id
        elif (
            rows
            and self._tracker.last_batch < batch_id - 1
            and not self._recorder.wait_for_batch(batch_id - 1, timeout=0.2)
            and self._query is not None
        ):
            # The previous batch's observation tells which trade closed these windows.
            last = self._query.lastProgress
            if last is not None:
                self._absorb(last)
        self._publish_rows(rows, batch_id, self._tracker)

    def _process_book_batch(self, frame: DataFrame, batch_id: int) -> None:
        """The book rules' micro-batch: their rows are timed by the record that decided each."""
        self._publish_rows([row.asDict() for row in frame.collect()], batch_id, None)

    def _publish_rows(
        self, rows: list[dict[str, Any]], batch_id: int, tracker: TriggerTracker | None
    ) -> None:
        now_us = time.time_ns() // 1000
        late = sum(int(row["dropped"] or 0) for row in rows if row["kind"] == "late")
        if late:
            m.ALERTING_DROPPED_LATE.inc(late)
        alerts = windows_to_alerts(rows, self.rules, tracker, now_us)
        assert self._publisher is not None
        acked = self._publisher.publish(alerts)
        count_published(alerts, acked, m.ALERTING_ALERTS, m.ALERTING_PUBLISH_LATENCY)
        with self._lock:
            self._stats = replace(
                self._stats,
                batches=self._stats.batches + 1,
                alerts_published=self._stats.alerts_published + len(alerts),
                last_batch_id=batch_id,
                dropped_late=self._stats.dropped_late + late,
            )
        if alerts:
            logger.info("batch %d: %d alert(s) published", batch_id, len(alerts))
        if self.on_alerts is not None and alerts:
            self.on_alerts(alerts, acked)


def _stop_query(query: StreamingQuery, grace_s: float) -> None:
    """Stop ``query``, between two micro-batches if one ends within ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            if not query.status["isTriggerActive"]:
                break
        except Exception:  # the query died meanwhile: stop() below still cleans up
            break
        time.sleep(0.002)
    # A micro-batch cut short fails its foreachBatch call with an InterruptedException, which
    # py4j logs with a traceback; it is expected here (the batch is replayed on restart).
    py4j_log = logging.getLogger("py4j.clientserver")
    level = py4j_log.level
    py4j_log.setLevel(logging.CRITICAL)
    try:
        query.stop()
    finally:
        py4j_log.setLevel(level)
