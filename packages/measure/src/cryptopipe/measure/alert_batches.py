"""The alerting bench's view of the Spark query: micro-batch times, their phases, the rate read."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptopipe.measure.alert_load import percentiles, percentiles_ms


def micro_batches(progress: Sequence[Any]) -> dict[str, Any]:
    """Micro-batch durations (all, with data, without), and the mean of each phase."""
    durations = [p.durationMs.get("triggerExecution", 0) / 1000 for p in progress]
    data = [p.durationMs.get("triggerExecution", 0) / 1000 for p in progress if p.numInputRows]
    nodata = [p.durationMs.get("triggerExecution", 0) / 1000 for p in progress if not p.numInputRows]
    phases: dict[str, float] = {}
    for phase in ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets", "getBatch"):
        values = [p.durationMs.get(phase, 0) / 1000 for p in progress if phase in p.durationMs]
        if values:
            phases[phase] = statistics.fmean(values)
    return {
        "micro_batch_ms": percentiles_ms(durations),
        "sustained_input_rate": _sustained_rate(progress),
        "micro_batch_s": percentiles(durations),
        "micro_batch_data_s": percentiles(data),
        "micro_batch_nodata_s": percentiles(nodata),
        "micro_batch_phase_mean_s": phases,
    }


def _sustained_rate(progress: Sequence[Any]) -> float:
    """Trades per second the job read over the measured micro-batches (first to last)."""
    if len(progress) < 2:
        return 0.0
    span_s = (progress_time_us(progress[-1]) - progress_time_us(progress[0])) / 1e6
    rows = sum(int(p.numInputRows or 0) for p in progress[1:])
    return round(rows / span_s, 1) if span_s > 0 else 0.0


def progress_time_us(progress: Any) -> int:
    return int(datetime.fromisoformat(progress.timestamp.replace("Z", "+00:00")).timestamp() * 1e6)
