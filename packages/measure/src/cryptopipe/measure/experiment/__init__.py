"""Environment-comparison experiments: ``cryptopipe experiment run|compare|export``."""

from cryptopipe.measure.experiment.errors import ExperimentError, ResultError
from cryptopipe.measure.experiment.result import Result, read_result, write_result

__all__ = ["ExperimentError", "Result", "ResultError", "read_result", "write_result"]
