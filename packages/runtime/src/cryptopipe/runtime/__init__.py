"""The kit every cryptopipe service stands on.

- :class:`Stop` and :func:`stop_on_signals`: run until a signal (or until told).
- :func:`configure_logging`, :class:`RateLimitedLog`, :func:`rate_limited_logger`: logging
  configured once, and one rate limit for lines a peer or an outage can repeat.
- :class:`Backoff`: the one retry delay (capped, full jitter).
- :func:`ensure_topics`: the one way topics get created.
- :func:`run_service`, :func:`write_stats`, :func:`read_stats`: ``/metrics`` and final stats, one way.
- :func:`environ_of`: settings handed to a child process as its environment.
- :func:`stop_process`: a child asked to stop, killed after a grace period.
- :func:`write_json_atomic`, :func:`read_json_object`, :func:`free_port`, :func:`positive_int`: small
  jobs every command shares, each with one home.
"""

from cryptopipe.runtime.args import plain_text, positive_int, positive_seconds, seconds_or_zero
from cryptopipe.runtime.backoff import Backoff
from cryptopipe.runtime.env import environ_of
from cryptopipe.runtime.files import read_json_object, write_json_atomic, write_private
from cryptopipe.runtime.logs import (
    RateLimitedLog,
    RateLimiter,
    RateLimitFilter,
    configure_logging,
    rate_limited_logger,
)
from cryptopipe.runtime.net import free_port
from cryptopipe.runtime.process import stop_process
from cryptopipe.runtime.service import (
    RunSettings,
    add_run_arguments,
    configured,
    required_kafka,
    run_service,
    run_settings_from,
)
from cryptopipe.runtime.stats import final_scrape, read_stats, write_stats
from cryptopipe.runtime.stop import Interrupted, Stop, stop_on_signals
from cryptopipe.runtime.topics import end_offsets, ensure_topics

__all__ = [
    "Backoff",
    "Interrupted",
    "RateLimitFilter",
    "RateLimitedLog",
    "RateLimiter",
    "RunSettings",
    "Stop",
    "add_run_arguments",
    "configure_logging",
    "configured",
    "end_offsets",
    "ensure_topics",
    "environ_of",
    "final_scrape",
    "free_port",
    "plain_text",
    "positive_int",
    "positive_seconds",
    "rate_limited_logger",
    "read_json_object",
    "read_stats",
    "required_kafka",
    "run_service",
    "run_settings_from",
    "seconds_or_zero",
    "stop_on_signals",
    "stop_process",
    "write_json_atomic",
    "write_private",
    "write_stats",
]
