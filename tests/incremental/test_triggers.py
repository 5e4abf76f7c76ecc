"""Triggers: every operator, timer windows (plain, wrapping past midnight, outside), list metrics."""

from __future__ import annotations

import datetime as dt

import pytest

from mlkit.errors import MlkitError
from mlkit.incremental.spec import Condition, Timer, TrainTrigger
from mlkit.incremental.triggers import compare, deploy_metrics, evaluate_condition, in_window, should_train

CLASSES = ("person", "helmet", "helmet-on", "helmet-off")


@pytest.mark.parametrize(("op", "below", "equal", "above"), [
    (">", False, False, True), (">=", False, True, True), ("=", False, True, False),
    ("!=", True, False, True), ("<", True, False, False), ("<=", True, True, False),
])
def test_each_operator(op, below, equal, above):
    assert compare(0.4, op, 0.5) is below
    assert compare(0.5, op, 0.5) is equal
    assert compare(0.6, op, 0.5) is above
    cond = Condition(operator=op, threshold=500, metric="num_of_samples")
    assert evaluate_condition(cond, {"num_of_samples": 501})[0] is above


def test_equality_tolerates_float_rounding_and_double_equals_is_accepted():
    assert compare(0.1 + 0.2, "=", 0.3)
    assert Condition(operator="==", threshold=1, metric="num_of_samples").operator == "="


def t(hh: int, mm: int) -> dt.datetime:
    return dt.datetime(2026, 11, 22, hh, mm)


def test_timer_window_plain():
    timer = Timer(start="02:00", end="04:00")
    assert in_window(timer, t(2, 0)) and in_window(timer, t(3, 59))
    assert not in_window(timer, t(4, 0)) and not in_window(timer, t(1, 59)) and not in_window(timer, t(14, 0))


def test_timer_window_wraps_past_midnight():
    timer = Timer(start="22:30", end="01:15")
    assert in_window(timer, t(22, 30)) and in_window(timer, t(23, 59)) and in_window(timer, t(0, 0))
    assert in_window(timer, t(1, 14))
    assert not in_window(timer, t(1, 15)) and not in_window(timer, t(12, 0)) and not in_window(timer, t(22, 29))


def test_no_timer_or_equal_bounds_is_all_day():
    assert in_window(None, t(13, 7))
    assert in_window(Timer(start="05:00", end="05:00"), t(4, 59))


def test_train_trigger_is_window_and_condition():
    trig = TrainTrigger(checkPeriodSeconds=60, timer=Timer(start="02:00", end="04:00"),
                        condition=Condition(operator=">", threshold=500, metric="num_of_samples"))
    assert should_train(trig, {"num_of_samples": 501}, t(3, 0))[0]
    fire, why = should_train(trig, {"num_of_samples": 501}, t(5, 0))
    assert not fire and "outside the timer window" in why
    fire, why = should_train(trig, {"num_of_samples": 500}, t(3, 0))
    assert not fire and "does not hold" in why and "500" in why


DELTAS = {"precision_delta": [0.3, -0.1, None, 0.1], "map_delta": [0.02, 0.04, 0.06, 0.08]}


def test_list_metric_reduces_by_mean_of_defined_entries():
    # Sedna compares the list itself with the threshold and never fires; here the mean of 0.3, -0.1, 0.1
    holds, value = evaluate_condition(Condition(operator=">", threshold=0.09, metric="precision_delta"), DELTAS)
    assert holds and value == pytest.approx(0.1)
    assert not evaluate_condition(Condition(operator=">", threshold=0.11, metric="precision_delta"), DELTAS)[0]
    assert evaluate_condition(Condition(operator="=", threshold=0.05, metric="map_delta"), DELTAS) == (True,
                                                                                                      pytest.approx(0.05))


def test_indexed_list_metric_by_id_and_by_class_name():
    assert evaluate_condition(Condition(operator=">", threshold=0.2, metric="precision_delta[0]"), DELTAS)[0]
    assert not evaluate_condition(Condition(operator=">", threshold=0.0, metric="precision_delta[1]"), DELTAS)[0]
    holds, value = evaluate_condition(Condition(operator=">=", threshold=0.08, metric="map_delta[helmet-off]"),
                                      DELTAS, CLASSES)
    assert holds and value == pytest.approx(0.08)


@pytest.mark.parametrize(("metric", "message"), [
    ("precision_delta[2]", "undefined"),
    ("precision_delta[7]", "out of range"),
    ("precision_delta[hat]", "not a class"),
    ("recall_delta", "not available"),
])
def test_bad_metric_lookups_are_clear_errors(metric, message):
    with pytest.raises(MlkitError, match=message):
        evaluate_condition(Condition(operator=">", threshold=0, metric=metric), DELTAS, CLASSES)


def test_scalar_cannot_be_indexed():
    with pytest.raises(MlkitError, match="cannot be indexed"):
        evaluate_condition(Condition(operator=">", threshold=0, metric="num_of_samples[0]"), {"num_of_samples": 3})


def test_deploy_metrics_are_new_minus_deployed_per_class():
    new = {"precision_per_class": {"a": 0.8, "b": None}, "recall_per_class": {"a": 0.5, "b": 0.5},
           "ap50_per_class": {"a": 0.7, "b": 0.2}}
    old = {"precision_per_class": {"a": 0.6, "b": 0.4}, "recall_per_class": {"a": 0.5, "b": 0.25},
           "ap50_per_class": {"a": 0.5, "b": 0.3}}
    d = deploy_metrics(new, old, ("a", "b"))
    assert d["precision_delta"] == [pytest.approx(0.2), None]
    assert d["recall_delta"] == [0.0, 0.25]
    assert d["map_delta"] == [pytest.approx(0.2), pytest.approx(-0.1)]


def test_train_trigger_on_agreement_reduces_per_class_and_waits_when_unmeasured():
    trig = TrainTrigger(condition=Condition(operator="<", threshold=0.45, metric="agreement"))
    names = ("person", "helmet", "helmet-on", "helmet-off")
    per_class = [0.9, 0.1, 0.2, None]  # overall = mean of the classes the cloud saw = 0.4
    fire, why = should_train(trig, {"num_of_samples": 0, "agreement": per_class}, t(3, 0), names)
    assert fire and why == "agreement < 0.45 holds (agreement = 0.400)"
    fire, why = should_train(trig, {"num_of_samples": 9}, t(3, 0), names)
    assert not fire and "agreement is not measured yet" in why
    one = TrainTrigger(condition=Condition(operator="<", threshold=0.45, metric="agreement[person]"))
    assert not should_train(one, {"agreement": per_class}, t(3, 0), names)[0]
    hard = TrainTrigger(condition=Condition(operator="<", threshold=0.3, metric="agreement_hard"))
    assert should_train(hard, {"agreement_hard": [0.2, 0.1, None, None]}, t(3, 0), names)[0]
