"""Measuring the pipeline: ``cryptopipe bench`` (one module per bench, floors beside them), the
fault scenarios (:mod:`cryptopipe.measure.faults`) and environment-comparison experiments
(:mod:`cryptopipe.measure.experiment`). Every run builds a :class:`~cryptopipe.pipeline.PipelineConfig`."""
