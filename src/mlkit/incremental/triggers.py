"""Triggers: a daily timer window AND a condition on a metric.

Sedna compares a list-valued metric (per-class ``precision_delta``) with a number, which is never
true, so its example deploy condition never fires. Here a list metric is reduced by its mean (over the
defined entries) unless the condition indexes it: ``precision_delta[1]`` (class id) or
``precision_delta[helmet]`` (class name).

Sedna's train trigger counts samples only. Here it may also watch the edge worker's edge/cloud agreement
(``agreement`` from audited frames, ``agreement_hard`` from uploaded hard frames; per class like ``agreement[helmet]``),
so a site change starts a round without waiting for a sample count.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Mapping, Sequence

from mlkit.errors import MlkitError
from mlkit.incremental.spec import Condition, Timer

_OPS = {">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne, "<": operator.lt,
        "<=": operator.le}


def compare(value: float, op: str, threshold: float) -> bool:
    """``value <op> threshold``; ``=`` and ``!=`` compare with a 1e-9 tolerance (metrics are floats)."""
    if op not in _OPS:
        raise MlkitError(f"unknown operator {op!r}; use one of {' '.join(_OPS)}")
    if op in ("=", "!="):
        equal = math.isclose(value, threshold, rel_tol=0.0, abs_tol=1e-9)
        return equal if op == "=" else not equal
    return _OPS[op](value, threshold)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_window(timer: Timer | None, now: dt.datetime | dt.time) -> bool:
    """Whether ``now`` (local time of day) is in ``[start, end)``; a window with end < start wraps past midnight.

    No timer means always; start == end means the whole day.
    """
    if timer is None:
        return True
    t = now.time() if isinstance(now, dt.datetime) else now
    minute = t.hour * 60 + t.minute
    start, end = _minutes(timer.start), _minutes(timer.end)
    if start == end:
        return True
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # e.g. 22:00-02:00


def resolve_metric(condition: Condition, metrics: Mapping[str, float | Sequence[float | None] | None],
                   class_names: Sequence[str] = ()) -> float:
    """The number a condition compares: a scalar, a list entry (indexed) or a list's mean (not indexed).

    ``None`` entries (undefined, e.g. a class with no ground truth) are left out of the mean; indexing
    one is an error naming it. Raises ``MlkitError`` for a missing metric or a bad index.
    """
    name, index = condition.metric_name, condition.metric_index
    if name not in metrics:
        raise MlkitError(f"metric {name!r} is not available; have {sorted(metrics)}")
    value = metrics[name]
    if value is None:
        raise MlkitError(f"metric {name!r} is undefined")
    if isinstance(value, int | float):
        if index is not None:
            raise MlkitError(f"metric {name!r} is a number, it cannot be indexed ({condition.metric})")
        return float(value)
    values = list(value)
    if index is None:
        defined = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not defined:
            raise MlkitError(f"metric {name!r} has no defined entry to average")
        return sum(defined) / len(defined)
    if isinstance(index, str):
        if index not in class_names:
            raise MlkitError(f"{condition.metric}: {index!r} is not a class; classes: {list(class_names)}")
        index = list(class_names).index(index)
    if not -len(values) <= index < len(values):
        raise MlkitError(f"{condition.metric}: index {index} is out of range for {len(values)} entries")
    picked = values[index]
    if picked is None or not math.isfinite(float(picked)):
        raise MlkitError(f"{condition.metric} is undefined (the class has no ground truth in the eval set)")
    return float(picked)


def evaluate_condition(condition: Condition, metrics: Mapping, class_names: Sequence[str] = ()) -> tuple[bool, float]:
    """``(holds, value)`` for a condition over ``metrics``."""
    value = resolve_metric(condition, metrics, class_names)
    return compare(value, condition.operator, condition.threshold), value


def should_train(trigger, metrics: Mapping, now: dt.datetime, class_names: Sequence[str] = ()) -> tuple[bool, str]:
    """The train trigger: timer window AND condition on its metric; returns (fire, why).

    ``metrics``: ``{"num_of_samples": n}``, plus ``agreement`` / ``agreement_hard`` (per-class lists,
    ``mlkit.incremental.store.read_agreement``) when measured; a metric that is missing does not fire.
    """
    if not in_window(trigger.timer, now):
        return False, f"outside the timer window {trigger.timer.start}-{trigger.timer.end} ({now:%H:%M})"
    name = trigger.condition.metric_name
    if metrics.get(name) is None:
        return False, f"{trigger.condition.describe()} cannot be checked: {name} is not measured yet"
    holds, value = evaluate_condition(trigger.condition, metrics, class_names)
    verdict = "holds" if holds else "does not hold"
    shown = f"{int(value)}" if name == "num_of_samples" else f"{value:.3f}"
    return holds, f"{trigger.condition.describe()} {verdict} ({trigger.condition.metric} = {shown})"


def deploy_metrics(new: Mapping, deployed: Mapping, class_names: Sequence[str]) -> dict[str, list[float | None]]:
    """Per-class deltas ``new - deployed`` (same eval set): precision_delta, recall_delta, map_delta.

    ``new`` and ``deployed`` are ``EvaluationResult.to_dict()``s; a class undefined in either is ``None``.
    """
    def per_class(key: str) -> list[float | None]:
        out = []
        for c in class_names:
            a, b = new[key].get(c), deployed[key].get(c)
            out.append(None if a is None or b is None else float(a) - float(b))
        return out

    return {"precision_delta": per_class("precision_per_class"), "recall_delta": per_class("recall_per_class"),
            "map_delta": per_class("ap50_per_class")}
