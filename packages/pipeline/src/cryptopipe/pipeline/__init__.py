"""The whole pipeline as a library: one typed config, one start sequence, the drain, the books.

    config = PipelineConfig(exchange=ExchangeConfig(source="replay"), alerting=AlertingConfig(enabled=False))
    with contextlib.ExitStack() as stack:
        pipeline = Pipeline(config, stack, workdir)
        pipeline.start()
        ...
        drain.drain(pipeline)
        books = books_of(pipeline)
        figures = summary.summary(pipeline, elapsed, books)

``drain`` and ``summary`` are the modules :mod:`cryptopipe.pipeline.drain` and
:mod:`cryptopipe.pipeline.summary`. ``cryptopipe up`` is a thin command over this; benches,
fault runs and experiments (``cryptopipe.measure``) build a :class:`PipelineConfig` the same way.
"""

from cryptopipe.pipeline.books import Books, TopicBooks, alerts_published_by, books_of
from cryptopipe.pipeline.config import (
    AlertingConfig,
    ExchangeConfig,
    ObservabilityConfig,
    PipelineConfig,
    ServersConfig,
)
from cryptopipe.pipeline.names import component_of, member_names, parse_symbols, split_symbols
from cryptopipe.pipeline.pipeline import Pipeline, RunState
from cryptopipe.pipeline.progress import progress_line
from cryptopipe.pipeline.service import Service

#: ``up``'s exit status when the books do not balance (1 and 2 are failures and bad configuration).
EXIT_UNBALANCED = 3

__all__ = [
    "EXIT_UNBALANCED",
    "AlertingConfig",
    "Books",
    "ExchangeConfig",
    "ObservabilityConfig",
    "Pipeline",
    "PipelineConfig",
    "RunState",
    "ServersConfig",
    "Service",
    "TopicBooks",
    "alerts_published_by",
    "books_of",
    "component_of",
    "member_names",
    "parse_symbols",
    "progress_line",
    "split_symbols",
]
