"""The Spark alerting job as one of the run's processes: its settings, its checkpoint, its ready file."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cryptopipe.pipeline.priority import lower_priority

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def start_alerting(pipeline: Pipeline) -> None:
    """The Spark job, reading prices from the start of the topic; with ``checkpoint_per_run`` its
    checkpoint lives with this run (the local broker keeps nothing between runs, so neither may it)."""
    port = pipeline.ports.of("alerting")
    ready = pipeline.workdir / "alerting-ready.json"
    overrides: dict[str, Any] = {"metrics_port": port, "starting_offsets": "earliest", "ready_file": ready}
    if pipeline.config.alerting.checkpoint_per_run:
        overrides["checkpoint_dir"] = pipeline.workdir / "checkpoints"
    settings = pipeline.alerting_settings(**overrides)
    env = pipeline.service_env(settings, pipeline.stats_file("alerting"))
    service = pipeline.launch(
        "alerting", ["alerting"], env=env, metrics_port=port, ready_file=ready, ready_timeout=180.0
    )
    if service.pid:
        lower_priority(
            service.pid,
            pipeline.config.background_nice,
            pipeline.config.background_cpus,
            pipeline.config.background_sched,
        )
    state = pipeline.state
    state.spark = settings.master
    figures = json.loads(ready.read_text())
    state.alerting_source = str(figures.get("source", "-"))
    state.alerting_express = bool(figures.get("express", False))
