"""A Spark standalone cluster on this machine: one master and workers, as separate processes.

Tooling, not the job: starting the cluster needs the ``cluster`` extra
(``cryptopipe-alerting[cluster]``, which brings ``cryptopipe-infra``; imported only when a cluster
starts), and nothing the job runs imports this module.

What ``--master spark://...`` runs against in the tests, and a quick way to try the job on a
cluster without installing Spark: pyspark's wheel ships ``spark-class``::

    with start_standalone_cluster(cores=2) as cluster:
        ...  # cryptopipe alerting --master {cluster.master_url}

Everything binds 127.0.0.1. On a real cluster, every node needs the same Python environment
(cryptopipe, pyarrow, confluent-kafka) at the path ``spark.pyspark.python`` names, and the
checkpoint directory must be on storage all nodes share (HDFS, S3, NFS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptopipe.alerting.spark import find_java, log4j_config
from cryptopipe.runtime import free_port

if TYPE_CHECKING:
    from cryptopipe.infra import LocalServer

logger = logging.getLogger(__name__)


def spark_home() -> Path:
    """The Spark distribution inside the pyspark package (``bin/spark-class``, ``jars/``)."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def _environment() -> dict[str, str]:
    java = find_java()
    options = f"-Dlog4j2.configurationFile=file:{log4j_config('WARN')}"
    return {
        **os.environ,
        "JAVA_HOME": str(java.home),
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_JAVA_OPTS": options,
        "PYSPARK_PYTHON": sys.executable,
    }


def master_status(ui_port: int) -> dict[str, object]:
    """The master's JSON status page (workers, active and completed applications)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
        status: dict[str, object] = json.load(response)
    return status


def _alive_workers(ui_port: int) -> int:
    return int(str(master_status(ui_port).get("aliveworkers", 0)))


def _workers_ready(ui_port: int, count: int) -> Callable[[LocalServer], bool]:
    def ready(_server: LocalServer) -> bool:
        return _alive_workers(ui_port) >= count

    return ready


@dataclass
class StandaloneCluster:
    master_port: int
    master_ui_port: int
    servers: list[LocalServer] = field(default_factory=list)

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def alive_workers(self) -> int:
        return _alive_workers(self.master_ui_port)

    def status(self) -> dict[str, object]:
        return master_status(self.master_ui_port)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def __enter__(self) -> StandaloneCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_standalone_cluster(
    *, workers: int = 1, cores: int = 2, memory: str = "1g", ready_timeout: float = 90.0
) -> StandaloneCluster:
    """Start ``spark-class ...Master`` and ``workers`` times ``...Worker`` on 127.0.0.1.

    Raises ImportError, naming the extra to install, without ``cryptopipe-alerting[cluster]``.
    """
    try:
        from cryptopipe.infra import LocalServer
        from cryptopipe.infra.process import port_open
    except ImportError as exc:
        raise ImportError(
            "a Spark standalone cluster starts its processes with cryptopipe-infra: "
            "pip install 'cryptopipe-alerting[cluster]'"
        ) from exc
    env = _environment()
    spark_class = str(spark_home() / "bin" / "spark-class")
    cluster = StandaloneCluster(master_port=free_port(), master_ui_port=free_port())

    def start(name: str, argv: list[str], ready: Callable[[LocalServer], bool]) -> None:
        server = LocalServer(
            name, [spark_class, *argv], ready=ready, ready_timeout=ready_timeout, stop_grace=10.0, env=env
        )
        cluster.servers.append(server)
        server.start()

    master_argv = [
        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
        "--port", str(cluster.master_port), "--webui-port", str(cluster.master_ui_port),
    ]  # fmt: skip
    with contextlib.ExitStack() as undo:
        undo.callback(cluster.stop)
        start(
            "spark-master",
            master_argv,
            lambda _s: (
                port_open("127.0.0.1", cluster.master_port) and _alive_workers(cluster.master_ui_port) >= 0
            ),
        )
        for index in range(workers):
            worker_argv = [
                "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
                "--cores", str(cores), "--memory", memory,
                "--webui-port", str(free_port()), "--work-dir", "{workdir}",
            ]  # fmt: skip
            start(f"spark-worker-{index}", worker_argv, _workers_ready(cluster.master_ui_port, index + 1))
        undo.pop_all()
    logger.info("Spark standalone cluster at %s with %d worker(s)", cluster.master_url, workers)
    return cluster


@contextlib.contextmanager
def standalone_cluster(**kwargs: object) -> Iterator[StandaloneCluster]:
    cluster = start_standalone_cluster(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
