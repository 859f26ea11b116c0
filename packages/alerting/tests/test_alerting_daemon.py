"""Stopping a query while a Python task runs prints no Python traceback (our worker daemon)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cryptopipe.alerting.pyspark_daemon import quiet_when_peer_gone
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.alerting.spark import session_conf
from cryptopipe.schemas import settings_of

DAEMON_CONF = "spark.python.daemon.module"


@pytest.mark.parametrize("gone", [BrokenPipeError, ConnectionResetError, EOFError])
def test_a_worker_whose_jvm_side_is_gone_ends_quietly(gone: type[Exception]) -> None:
    def worker(sock: socket.socket, authenticated: bool) -> int:
        raise gone("the JVM closed the socket")

    with socket.socket() as sock:
        assert quiet_when_peer_gone(worker)(sock, True) == 1  # 1: do not reuse this worker


def test_other_worker_errors_and_results_pass_through() -> None:
    def failing(sock: socket.socket, authenticated: bool) -> int:
        raise ValueError("a real bug")

    def fine(sock: socket.socket, authenticated: bool) -> int:
        return 0 if authenticated else 7

    with socket.socket() as sock:
        with pytest.raises(ValueError, match="a real bug"):
            quiet_when_peer_gone(failing)(sock, True)
        assert quiet_when_peer_gone(fine)(sock, False) == 7


def test_the_daemon_is_ours_in_local_mode_only() -> None:
    local = session_conf(settings_of(AlertingSettings, master="local[2]"))
    assert local[DAEMON_CONF] == "cryptopipe.alerting.pyspark_daemon"
    # A cluster's executors need not have cryptopipe installed.
    assert DAEMON_CONF not in session_conf(settings_of(AlertingSettings, master="spark://10.0.0.5:7077"))


# A streaming query whose Python task (mapInPandas) marks a file when it starts on a frame and
# then takes 1 s, less than Spark's 2 s before it kills an interrupted task's worker. The driver
# stops the query as soon as the mark appears, twice: the JVM closes the worker's socket under
# it, and the worker meets the closed socket when it writes its result.
_STOP_MID_TASK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cryptopipe.alerting.settings import AlertingSettings
    from cryptopipe.alerting.spark import build_session

    MARK = Path(sys.argv[1])
    spark = build_session(AlertingSettings())
    print("daemon:", spark.conf.get("spark.python.daemon.module"), file=sys.stderr, flush=True)
    jvm_heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    retained = spark.sparkContext.getConf().get("spark.sql.ui.retainedExecutions")
    print("bounds:", jvm_heap, retained, file=sys.stderr, flush=True)

    def slow(batches):
        for frame in batches:
            with MARK.open("a") as mark:
                mark.write("x")
            time.sleep(1.0)
            yield frame.head(1)

    rows = spark.readStream.format("rate").option("rowsPerSecond", 50).load()
    for attempt in range(2):
        MARK.write_text("")
        query = (
            rows.mapInPandas(slow, schema=rows.schema).writeStream.format("noop")
            .trigger(processingTime="100 milliseconds").start()
        )
        deadline = time.monotonic() + 120
        while not MARK.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("stopping mid-task", attempt, file=sys.stderr, flush=True)
        query.stop()
    time.sleep(2)  # what the stopped workers print comes now
    spark.stop()
    print("stopped cleanly", file=sys.stderr, flush=True)
    """
)


def _stop_mid_task(tmp_path: Path, extra_env: dict[str, str]) -> str:
    script = tmp_path / "stop_mid_task.py"
    script.write_text(_STOP_MID_TASK, encoding="utf-8")
    env = {**os.environ, **extra_env}
    argv = [sys.executable, str(script), str(tmp_path / "task-running")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "stopped cleanly" in done.stderr, done.stderr[-4000:]
    assert done.stderr.count("stopping mid-task") == 2
    return done.stderr


@pytest.mark.slow
def test_stopping_a_query_mid_task_prints_no_python_traceback(tmp_path: Path) -> None:
    # pyspark's own daemon, for contrast: the scenario does reach the worker mid-write.
    stock = _stop_mid_task(tmp_path, {"ALERTING_SPARK_CONF": f"{DAEMON_CONF}=pyspark.daemon"})
    assert "daemon: pyspark.daemon" in stock
    assert "BrokenPipeError" in stock, "the scenario no longer stops a Python task mid-write"
    ours = _stop_mid_task(tmp_path, {})
    assert "daemon: cryptopipe.alerting.pyspark_daemon" in ours
    # The driver's memory is bounded as session_conf says: a 1 GB heap (the JVM reports a little
    # less: one survivor space), and 50 past SQL executions kept, not 1,000.
    (bounds,) = [line.split()[1:] for line in ours.splitlines() if line.startswith("bounds:")]
    assert 0.8 * 2**30 <= int(bounds[0]) <= 2**30
    assert bounds[1] == "50"
    for sign in ("Traceback", "BrokenPipeError", "EOFError", "ConnectionResetError"):
        assert sign not in ours, ours[-4000:]
