"""A two-task pipeline for the PipelineRunView test (no ``from __future__ import annotations``: KFP reads the
annotations as types)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def measure(scale: float, metrics: dsl.Output[dsl.Metrics]) -> float:
    metrics.log_metric("map50", 0.5 * scale)
    metrics.log_metric("images_per_second", 120.0)
    return 0.5 * scale


@dsl.component(base_image="python:3.11")
def report(value: float) -> str:
    return f"mAP {value:.2f}"


@dsl.pipeline(name="viz-check")
def viz_check(scale: float = 1.0):
    m = measure(scale=scale)
    report(value=m.outputs["Output"])
