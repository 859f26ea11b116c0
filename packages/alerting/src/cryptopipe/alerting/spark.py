"""Starting Spark: Java (runtime's finder), pointing Python workers at this interpreter, quiet logs.

PySpark launches a JVM (``spark-submit``) that starts Python worker processes of its own; they
must run this very interpreter (``PYSPARK_PYTHON``), or they cannot import cryptopipe, pyarrow and
confluent-kafka and fail with "Python worker failed to connect back".
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptopipe.runtime import jvm
from cryptopipe.runtime.jvm import JavaRuntime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cryptopipe.alerting.settings import AlertingSettings

logger = logging.getLogger(__name__)

#: Spark 4 runs on Java 17 or 21.
MIN_JAVA = 17


def find_java() -> JavaRuntime:
    """Java for Spark: :func:`cryptopipe.runtime.jvm.find_java` at Spark's minimum version."""
    return jvm.find_java(MIN_JAVA)


_LOG4J_TEMPLATE = """\
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss.SSS}} %p spark %c{{1}}: %m%n%ex
# Spark 4.3 warns this on every start of a stateful query, even with AQE already off (session_conf
# turns it off); one message, not its logger, so MicroBatchExecution's other warnings still show.
appender.console.filter.aqe.type = RegexFilter
appender.console.filter.aqe.regex = .*Disabling AQE since AQE is not supported in stateful workloads.*
appender.console.filter.aqe.onMatch = DENY
appender.console.filter.aqe.onMismatch = NEUTRAL
# Expected on every start of a stateful streaming query; not actionable.
logger.aqe1.name = org.apache.spark.sql.execution.streaming.runtime.ResolveWriteToStream
logger.aqe1.level = ERROR
logger.aqe2.name = org.apache.spark.sql.catalyst.analysis.ResolveWriteToStream
logger.aqe2.level = ERROR
logger.nativeio.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativeio.level = ERROR
logger.cancel.name = org.apache.spark.scheduler.DAGScheduler
logger.cancel.level = ERROR
# A state-store maintenance task that races the session's stop warns "SparkEnv not active" with a
# stack trace (seen at the end of `bench alerting`); the state is already committed by then.
logger.statestore.name = org.apache.spark.sql.execution.streaming.state.StateStore
logger.statestore.level = ERROR
"""


def log4j_config(level: str) -> Path:
    """A log4j2 properties file that keeps Spark at ``level`` from the very first line."""
    path = Path(tempfile.gettempdir()) / f"cryptopipe-alerting-log4j2-{level.lower()}.properties"
    text = _LOG4J_TEMPLATE.format(level=level.upper())
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def prepare_environment(java: JavaRuntime) -> None:
    """Environment the Spark JVM inherits: Java, this interpreter for workers, loopback."""
    os.environ["JAVA_HOME"] = str(java.home)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


#: What Spark redacts (``spark.redaction.regex``): its default plus SASL's JAAS line.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|jaas"
#: The same for data source options (``spark.sql.redaction.options.regex``), whose default is ``url``.
OPTIONS_REDACTION_REGEX = r"(?i)url|secret|password|token|access[.]?key|jaas"


def session_conf(settings: AlertingSettings) -> dict[str, str]:
    """Spark settings tuned for a small-state, low-latency streaming job on few cores."""
    log4j = log4j_config(settings.spark_log_level)
    java_options = f"-Dlog4j2.configurationFile=file:{log4j}"
    # Stopping a query while a Python task runs makes Spark match a regular expression against the
    # task's error text (StreamExecution.isInterruptionException), recursing once per character:
    # a default 1 MB thread stack overflows. 16 MB is reserved address space, not memory.
    conf = {
        "spark.app.name": "cryptopipe-alerting",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "spark.driver.bindAddress": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "spark.driver.extraJavaOptions": f"{java_options} -Xss16m",
        "spark.executor.extraJavaOptions": java_options,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
        "spark.python.worker.reuse": "true",
        # JVM <-> Python worker traffic over Unix sockets instead of loopback TCP: about 40 ms less
        # per micro-batch here (measured). Not with the Python Data Source: see build_session.
        "spark.python.unix.domain.socket.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # Tiny state: a few rows per (rule, symbol, open window).
        "spark.sql.streaming.minBatchesToRetain": "20",
        "spark.sql.streaming.stateStore.maintenanceInterval": "30s",
        # Memory that stays flat for days: the driver's heap is bounded (its resident size then
        # levels off near heap + ~0.4 GB of metaspace, code cache and threads), and what Spark keeps
        # of past micro-batches for its (disabled) UI and listeners is a few minutes' worth, not the
        # defaults' 1,000 SQL executions and jobs (about 8 minutes of half-second batches, each
        # holding its plan and metrics: the JVM grew for that long, then was flat).
        "spark.driver.memory": "1g",
        "spark.sql.ui.retainedExecutions": "50",
        "spark.ui.retainedJobs": "100",
        "spark.ui.retainedStages": "100",
        "spark.ui.retainedTasks": "2000",
        "spark.sql.streaming.numRecentProgressUpdates": "20",
        "spark.log.level": settings.spark_log_level,
        # Kafka credentials travel in options (kafka.sasl.password, kafka.sasl.jaas.config,
        # kafka.ssl.key.password): keys and values matching these are shown as *********(redacted)
        # in Spark's logs, plans and UI (Spark's defaults miss "jaas").
        "spark.redaction.regex": REDACTION_REGEX,
        "spark.sql.redaction.options.regex": OPTIONS_REDACTION_REGEX,
    }
    if settings.master.startswith("local"):
        # Our worker daemon: quiet when a stopped query closes a running task's socket (see the
        # module). Local mode only: a cluster's executors need not have cryptopipe installed.
        conf["spark.python.daemon.module"] = "cryptopipe.alerting.pyspark_daemon"
    conf.update(settings.spark_conf)
    return conf


#: Spark setting that records which Kafka connector the session got, or why it got none.
CONNECTOR_CONF = "spark.cryptopipe.kafkaConnector"
_UNAVAILABLE = "unavailable: "


def spark_jars_dir() -> Path:
    """The directory of the jars Spark runs with (``$SPARK_HOME/jars``, else pyspark's)."""
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home) / "jars"
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def connector_conf(settings: AlertingSettings, conf: dict[str, str]) -> dict[str, str]:
    """``spark.jars`` with Spark's Kafka connector (cached, else resolved from Maven Central once).

    Nothing when the Python source was asked for, or when ``spark.jars.packages`` already names
    the connector. When it cannot be had, :data:`CONNECTOR_CONF` says why (the job falls back or
    refuses, see ``AlertingJob.source_kind``).
    """
    if settings.source == "python":
        return {}
    if "spark-sql-kafka" in conf.get("spark.jars.packages", ""):
        return {CONNECTOR_CONF: "spark.jars.packages"}
    import pyspark

    from cryptopipe.runtime.jvm import JvmError, spark_kafka_jars

    try:
        connector = spark_kafka_jars(pyspark.__version__, spark_jars_dir())
    except JvmError as exc:
        return {CONNECTOR_CONF: f"{_UNAVAILABLE}{exc}"[:1000]}
    jars = [item for item in conf.get("spark.jars", "").split(",") if item]
    jars += [str(jar) for jar in connector.jars]
    return {"spark.jars": ",".join(jars), CONNECTOR_CONF: f"spark-sql-kafka {connector.version}"}


def connector_problem(spark: SparkSession) -> str | None:
    """Why this session has no Kafka connector, when :func:`connector_conf` could not get one."""
    recorded = spark.conf.get(CONNECTOR_CONF, None)
    if recorded and recorded.startswith(_UNAVAILABLE):
        return recorded[len(_UNAVAILABLE) :]
    return None


def build_session(settings: AlertingSettings) -> SparkSession:
    """A SparkSession for ``settings.master``, or the one this process already runs."""
    java = find_java()
    prepare_environment(java)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info("reusing the running SparkSession (master %s)", active.sparkContext.master)
        return active
    builder = SparkSession.builder.master(settings.master)
    conf = session_conf(settings)
    conf.update(connector_conf(settings, conf))
    if "spark.jars" not in conf and "spark.python.unix.domain.socket.enabled" not in settings.spark_conf:
        # The Python Data Source's runner prints an EOFError/BrokenPipeError traceback when a query
        # stops while it talks over a Unix socket; over loopback TCP it stops quietly (measured).
        conf["spark.python.unix.domain.socket.enabled"] = "false"
    for key, value in conf.items():
        builder = builder.config(key, value)
    logger.info(
        "starting Spark (%s, Java %d at %s, Kafka connector: %s)",
        settings.master,
        java.major,
        java.home,
        conf.get(CONNECTOR_CONF, "none"),
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.spark_log_level)
    return session
