"""Metrics of the replay exchange: what its REST trade history holds (it is bounded; see
``cryptopipe.replay.history``). The exchange serves them at ``/metrics`` on its REST port."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge

REPLAY_HISTORY_TRADES = gauge(
    "cryptopipe_replay_history_trades",
    "Trades (aggTrades and trades) the replay exchange keeps for REST backfill, all symbols.",
    (),
    "replay",
)
REPLAY_HISTORY_BYTES = gauge(
    "cryptopipe_replay_history_bytes",
    "Estimated resident bytes of that history (kept trades x 450 B, measured with tracemalloc); "
    "bounded by REPLAY_HISTORY_SECONDS x rate and REPLAY_HISTORY_LIMIT per symbol.",
    (),
    "replay",
)
REPLAY_HISTORY_TRIMMED = counter(
    "cryptopipe_replay_history_trimmed",
    "Trades let go from the history, by reason: age (played more than REPLAY_HISTORY_SECONDS ago) "
    "or count (beyond REPLAY_HISTORY_LIMIT for the symbol).",
    ("reason",),
    "replay",
)
