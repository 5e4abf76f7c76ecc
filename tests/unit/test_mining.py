"""Tests for mlkit.mining: every filter against its formula with hand-computed numbers, the edge cases
Sedna leaves undefined, malformed input, threshold sweeps and the registry."""

from __future__ import annotations

import math
from re import escape as re_escape

import numpy as np
import pytest

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.mining import (
    REGISTRY,
    FilterParams,
    FilterSpec,
    HardExampleFilter,
    IBTFilter,
    Judgement,
    Registry,
    build_filter,
    get_filter_class,
    known_methods,
    register,
)

BUILTIN = ["CloudOnly", "CrossEntropy", "EdgeOnly", "IBT", "Keyframe", "Random", "ScoreMargin", "Threshold",
           "Uncertainty"]
LIST_FILTERS = ["IBT", "Threshold", "Uncertainty", "ScoreMargin"]  # also read Sedna's box lists
BOX_FILTERS = [*LIST_FILTERS, "CrossEntropy"]  # read Detections (CrossEntropy reads lists as probabilities)


def rows(*scores: float) -> list[list[float]]:
    """Sedna's list form, one box per score."""
    return [[10.0 * i, 5.0, 10.0 * i + 8, 20.0, s, i % 2] for i, s in enumerate(scores)]


def dets(*scores: float) -> Detections:
    n = len(scores)
    return Detections(np.tile([1.0, 2.0, 30.0, 40.0], (n, 1)), np.array(scores), np.arange(n) % 2)


def ibt(threshold_img: float, threshold_box: float) -> HardExampleFilter:
    return build_filter({"method": "IBT", "param": {"threshold_img": threshold_img, "threshold_box": threshold_box}})


# --- IBT: r = #(score <= threshold_box) / #boxes, hard if r >= 1 - threshold_img -------------------------------


def test_ibt_fraction_of_low_boxes_against_one_minus_threshold_img():
    frame = rows(0.95, 0.8, 0.3, 0.92)  # 0.8 and 0.3 are <= 0.9: r = 2/4
    assert ibt(0.9, 0.9)(frame) == Judgement(True, 0.5)  # 0.5 >= 0.1
    assert ibt(0.4, 0.9)(frame) == Judgement(False, 0.5)  # 0.5 < 0.6
    assert ibt(0.5, 0.9)(frame).is_hard  # tie 0.5 >= 0.5 is hard
    assert ibt(0.9, 0.25)(frame) == Judgement(False, 0.0)  # no box <= 0.25


def test_ibt_same_answer_for_detections_and_sedna_list():
    f = ibt(0.9, 0.9)
    for scores, r in [((0.95, 0.99, 0.97, 0.5), 0.25), ((0.95, 0.99), 0.0)]:
        assert f(rows(*scores)).score == pytest.approx(r)
        assert f(dets(*scores)).score == pytest.approx(r)
        assert f(rows(*scores)).is_hard == f(dets(*scores)).is_hard == (r >= 0.1)


def test_ibt_ties_hold_as_on_paper_despite_float_rounding():
    # Sedna compares 3/10 >= 1 - 0.7 in floats, which is False; on paper it is a tie, hence hard.
    assert not 3 / 10 >= 1 - 0.7
    assert ibt(0.7, 0.5)(rows(*[0.2] * 3, *[0.95] * 7)) == Judgement(True, 0.3)
    # A float32 box score of 0.3 is 0.30000001: still "<= threshold_box = 0.3".
    assert ibt(0.5, 0.3)(dets(0.3)).score == 1.0


def test_ibt_empty_frame_is_not_hard_except_at_threshold_img_one():
    for empty in ([], Detections(), np.zeros((0, 6))):
        assert ibt(0.9, 0.9)(empty) == Judgement(False, 0.0)
    assert not ibt(0.99, 0.5)([]).is_hard
    assert ibt(1.0, 0.5)([]).is_hard  # cut 0: every frame is hard, the sweep's CloudOnly end


# --- CrossEntropy: c = 1 + sum p_i ln p_i / ln K, hard if c < threshold_cross_entropy ------------------------


def ce(threshold: float = 0.5) -> HardExampleFilter:
    return build_filter({"method": "CrossEntropy", "param": {"threshold_cross_entropy": threshold}})


def test_cross_entropy_formula():
    # 0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1 = -0.249672 - 0.321888 - 0.230259 = -0.801819; / ln 3 = -0.729847
    assert ce().score([0.7, 0.2, 0.1]) == pytest.approx(0.270153, abs=1e-6)
    assert ce(0.5)([0.7, 0.2, 0.1]).is_hard
    assert not ce(0.25)([0.7, 0.2, 0.1]).is_hard
    assert ce().score([0.5, 0.5]) == pytest.approx(0.0)  # uniform: no confidence
    assert ce().score([0.25] * 4) == pytest.approx(0.0, abs=1e-12)
    assert ce(0.0)([0.5, 0.5]) == Judgement(False, 0.0)  # threshold 0: never hard


def test_cross_entropy_zero_probability_counts_zero():
    # Sedna: math.log(0) raises. 0 ln 0 = 0, so a one-hot vector is fully confident.
    assert ce().score([1.0, 0.0]) == 1.0
    assert ce().score(np.array([0.0, 0.0, 1.0])) == 1.0
    assert ce(1.0)([1.0, 0.0]) == Judgement(False, 1.0)  # c = 1 is never < any threshold
    # 0.9 ln 0.9 + 0.1 ln 0.1 + 0 = -0.325083; / ln 3 = -0.295904
    assert ce().score([0.9, 0.1, 0.0]) == pytest.approx(0.704096, abs=1e-6)


def test_cross_entropy_single_class_is_never_hard():
    # Sedna divides by ln 1 = 0.
    assert ce(1.0)([1.0]) == Judgement(False, 1.0)
    assert ce(1.0)([[1.0], [1.0]]) == Judgement(False, 1.0)


def test_cross_entropy_per_box_takes_the_least_confident_box():
    assert ce().score([[1.0, 0.0], [0.5, 0.5]]) == pytest.approx(0.0)
    assert ce().score([[1.0, 0.0], [0.0, 1.0]]) == 1.0
    assert ce().score([[1.0, 0.0, 0.0], [0.7, 0.2, 0.1]]) == pytest.approx(0.270153, abs=1e-6)
    assert ce().score(np.zeros((0, 3))) == 1.0  # no boxes: nothing to doubt
    assert not ce(1.0)(np.zeros((0, 3))).is_hard


def test_cross_entropy_reads_detections_as_object_vs_not():
    # s = 0.9 -> [0.9, 0.1]: H = 0.094825 + 0.230259 = 0.325083; / ln 2 = 0.468996; c = 0.531004
    assert ce().score(dets(0.9)) == pytest.approx(0.531004, abs=1e-6)
    assert ce().score(dets(0.9, 0.5)) == pytest.approx(0.0, abs=1e-6)
    assert ce(0.5)(Detections()) == Judgement(False, 1.0)


@pytest.mark.parametrize("probs, message", [
    ([], "empty probability vector"),
    ([[]], "empty probability vector"),
    ([0.5, 0.2], "sum to 0.7"),
    ([[1.0, 0.0], [0.6, 0.6]], "box 1 sum to 1.2"),
    ([1.2, -0.2], "in [0, 1]"),
    ([float("nan"), 1.0], "finite"),
    (["0.5", "0.5"], "numbers only"),
    (np.ones((1, 1, 1)), "shape [1, 1, 1]"),
    (None, "NoneType"),
])
def test_cross_entropy_rejects_malformed_probabilities(probs, message):
    with pytest.raises(MlkitError, match=re_escape(message)):
        ce().score(probs)


# --- Threshold: hard if mean box score < threshold ------------------------------------------------------------


def test_threshold_mean_score():
    frame = rows(0.9, 0.4, 0.5)  # mean 0.6
    f = build_filter({"method": "Threshold", "param": {"threshold": 0.5}})
    assert f(frame) == Judgement(False, pytest.approx(0.6))
    assert f.with_param(threshold=0.7)(frame).is_hard
    assert not f.with_param(threshold=0.6)(dets(0.9, 0.4, 0.5)).is_hard  # tie: not below
    assert f.with_param(threshold=1.0)([]) == Judgement(False, 1.0)  # no boxes: nothing doubtful


# --- Random ---------------------------------------------------------------------------------------------------


def test_random_ratio_over_many_frames():
    f = build_filter({"method": "Random", "param": {"random_ratio": 0.3, "seed": 7}})
    hard = [f(None).is_hard for _ in range(20000)]
    assert np.mean(hard) == pytest.approx(0.3, abs=0.015)  # std 0.0032


def test_random_is_reproducible_with_a_seed_and_ignores_input():
    a, b, c = (build_filter({"method": "Random", "param": {"random_ratio": 0.5, "seed": s}}) for s in (1, 1, 2))
    ja, jb, jc = ([f(x) for x in ([], rows(0.9), None, "anything")] for f in (a, b, c))
    assert ja == jb
    assert [j.score for j in ja] != [j.score for j in jc]
    assert all(j.is_hard == (j.score < 0.5) for j in ja)


def test_random_extreme_ratios():
    assert not any(build_filter({"method": "Random", "param": {"random_ratio": 0.0, "seed": 3}})().is_hard
                   for _ in range(200))
    f = build_filter({"method": "Random", "param": {"random_ratio": 1.0, "seed": 3}})
    assert all(f().is_hard for _ in range(200))


# --- Keyframe -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.25, 0.3, 0.5])
def test_keyframe_uploads_its_ratio_spread_evenly(ratio):
    f = build_filter({"method": "Keyframe", "param": {"keyframe_ratio": ratio}})
    hard = np.array([f(None).is_hard for _ in range(3000)])
    assert hard[0] and hard.mean() == pytest.approx(ratio, abs=0.002)
    gaps = np.diff(np.flatnonzero(hard))
    # three gap lengths at most (three-gap theorem), none longer than twice the mean: no clumps, no long holes
    assert len(set(gaps.tolist())) <= 3 and gaps.max() <= 2 / ratio


def test_keyframe_spreads_where_random_clumps():
    key = build_filter({"method": "Keyframe", "param": {"keyframe_ratio": 0.25}})
    rnd = build_filter({"method": "Random", "param": {"random_ratio": 0.25, "seed": 0}})
    longest = {name: np.diff(np.flatnonzero([f(None).is_hard for _ in range(1200)])).max()
               for name, f in (("key", key), ("random", rnd))}
    assert longest["key"] <= 5 < longest["random"]


def test_keyframe_ignores_input_and_counts_frames():
    a, b = (build_filter("Keyframe") for _ in range(2))
    assert [a(x) for x in ([], rows(0.9), None, dets(0.1))] == [b(None) for _ in range(4)]
    assert not any(build_filter({"method": "Keyframe", "param": {"keyframe_ratio": 0.0}})().is_hard for _ in range(50))
    assert all(build_filter({"method": "Keyframe", "param": {"keyframe_ratio": 1.0}})().is_hard for _ in range(50))


def test_keyframe_sweep_over_stored_scores_matches_rebuilt_filters():
    f = build_filter("Keyframe")
    scores = np.array([f.score() for _ in range(60)])
    for v in (0.1, 0.3, 0.8):
        rebuilt = f.with_param(keyframe_ratio=v)
        assert f.decide(scores, v).tolist() == [rebuilt().is_hard for _ in range(60)]


def test_keyframe_ratio_is_checked():
    with pytest.raises(MlkitError, match="keyframe_ratio"):
        build_filter({"method": "Keyframe", "param": {"keyframe_ratio": 1.5}})


# --- EdgeOnly / CloudOnly -------------------------------------------------------------------------------------


def test_edge_only_and_cloud_only():
    edge, cloud = build_filter("EdgeOnly"), build_filter({"method": "CloudOnly", "param": {}})
    for frame in ([], rows(0.1), None):
        assert edge(frame) == Judgement(False, 0.0)
        assert cloud(frame) == Judgement(True, 1.0)
    assert edge.sweep_param is None and cloud.sweep_param is None
    with pytest.raises(MlkitError, match="CloudOnly has no threshold to sweep"):
        cloud.decide(1.0, 0.5)
    with pytest.raises(MlkitError, match="unknown parameter 'ratio'"):
        build_filter({"method": "EdgeOnly", "param": {"ratio": 0.1}})


# --- mlkit's filters: Uncertainty and ScoreMargin -------------------------------------------------------------


def uncertainty(threshold: float = 1.0) -> HardExampleFilter:
    return build_filter({"method": "Uncertainty", "param": {"decision_threshold": 0.3, "band": 0.2,
                                                            "threshold_uncertainty": threshold}})


def test_uncertainty_soft_count_near_the_decision_threshold():
    # weights max(0, 1 - |s - 0.3| / 0.2): 0.3 -> 1, 0.4 -> 0.5, 0.15 -> 0.25, 0.9 -> 0, 0.05 -> 0
    frame = rows(0.3, 0.4, 0.15, 0.9, 0.05)
    assert uncertainty().score(frame) == pytest.approx(1.75)
    assert uncertainty(1.0)(frame).is_hard
    assert not uncertainty(2.0)(frame).is_hard
    assert uncertainty(1.75)(dets(0.3, 0.4, 0.15, 0.9, 0.05)).is_hard  # tie within float32 rounding: hard


def test_uncertainty_ignores_faint_background_that_makes_ibt_flag_the_frame():
    # Three sure workers plus five faint boxes just above a 0.1 edge threshold.
    frame = dets(0.95, 0.97, 0.92, *[0.1] * 5)
    assert ibt(0.9, 0.9)(frame) == Judgement(True, 0.625)
    j = uncertainty()(frame)
    assert not j.is_hard and j.score == pytest.approx(0.0, abs=1e-5)


def test_uncertainty_empty_frame():
    assert uncertainty()([]) == Judgement(False, 0.0)
    assert uncertainty(0.0)([]).is_hard  # threshold 0: every frame is hard


def margin(m: float = 0.1) -> HardExampleFilter:
    return build_filter({"method": "ScoreMargin", "param": {"decision_threshold": 0.3, "margin": m}})


def test_score_margin_is_the_closest_box_distance():
    frame = dets(0.9, 0.35, 0.1)  # |0.35 - 0.3| = 0.05 is the smallest
    assert margin().score(frame) == pytest.approx(0.05, abs=1e-6)
    assert margin(0.1)(frame).is_hard
    assert not margin(0.05)(frame).is_hard  # tie: not below
    assert not margin(0.04)(frame).is_hard
    assert margin(1.0)([]) == Judgement(False, 1.0)


def test_score_margin_finds_one_doubtful_box_that_ibt_dilutes():
    frame = rows(*[0.95] * 5, 0.32)  # r = 1/6 < 0.5 for IBT
    assert not ibt(0.5, 0.5)(frame).is_hard
    assert margin(0.1)(frame) == Judgement(True, pytest.approx(0.02))


@pytest.mark.parametrize("param, name", [
    ({"band": 0.0}, "band"),
    ({"threshold_uncertainty": -1.0}, "threshold_uncertainty"),
    ({"threshold_uncertainty": math.inf}, "threshold_uncertainty"),
    ({"decision_threshold": 1.5}, "decision_threshold"),
])
def test_uncertainty_params_checked(param, name):
    with pytest.raises(MlkitError, match=f"hard-example filter Uncertainty: parameter '{name}'"):
        build_filter({"method": "Uncertainty", "param": param})


# --- every filter: Judgement, malformed detections, sweeps ----------------------------------------------------


def test_every_builtin_is_registered_and_returns_a_judgement():
    assert set(BUILTIN) <= set(known_methods())
    for method in BUILTIN:
        f = build_filter(method)
        j = f(dets(0.2, 0.8))
        assert type(j.is_hard) is bool and type(j.score) is float
        assert j.is_hard == f.decide(j.score)
        assert build_filter(f.spec).spec == f.spec


@pytest.mark.parametrize("method", LIST_FILTERS)
@pytest.mark.parametrize("result, message", [
    (rows(0.5, 1.2), "box 1 has score 1.2 outside [0, 1]"),
    (rows(-0.1), "box 0 has score -0.1 outside [0, 1]"),
    (rows(0.5, float("nan")), "box 1 has a non-finite value"),
    ([[0, 0, 1, 1, 0.5]], "6 numbers"),
    ([0, 0, 1, 1, 0.5, 0], "wrap a single box in a list"),
    ([[0, 0, 1, 1, 0.5, 0], [0, 0, 1, 1]], "rows of different lengths"),
    ([[0, 0, 1, 1, "0.5", 0]], "numbers only"),
    ({"boxes": []}, "got dict"),
    (None, "got NoneType"),
])
def test_box_filters_reject_malformed_detections(method, result, message):
    with pytest.raises(MlkitError, match=re_escape(message)):
        build_filter(method)(result)


@pytest.mark.parametrize("method", BOX_FILTERS)
def test_box_filters_reject_malformed_detections_objects(method):
    d = dets(0.5, 0.6)
    d.boxes = np.zeros((2, 3), np.float32)
    with pytest.raises(MlkitError, match=re_escape("boxes must have shape [N, 4], got [2, 3]")):
        build_filter(method)(d)
    d = dets(0.5, 0.6)
    d.scores = np.array([0.5], np.float32)
    with pytest.raises(MlkitError, match="one score and one label per box"):
        build_filter(method)(d)
    d = dets(0.5, 0.6)
    d.boxes[1, 2] = np.nan
    with pytest.raises(MlkitError, match="box 1 has a non-finite value"):
        build_filter(method)(d)
    d = dets(0.5, 0.6)
    d.scores[0] = 1.5
    with pytest.raises(MlkitError, match="outside"):
        build_filter(method)(d)


FRAMES = [dets(), dets(0.95, 0.12), dets(0.31, 0.5, 0.9), dets(0.2, 0.25), dets(0.99), dets(0.45, 0.6, 0.7, 0.15)]
SWEEPS = {
    "IBT": [0.0, 0.3, 0.5, 0.7, 0.9, 1.0],
    "CrossEntropy": [0.0, 0.2, 0.5, 0.8, 1.0],
    "Threshold": [0.0, 0.3, 0.5, 0.7, 1.0],
    "Uncertainty": [0.0, 0.25, 0.5, 1.0, 2.0],
    "ScoreMargin": [0.0, 0.02, 0.1, 0.3, 1.0],
}


@pytest.mark.parametrize("method", sorted(SWEEPS))
def test_sweep_over_stored_scores_matches_rebuilt_filters(method):
    f = build_filter(method)
    scores = np.array([f.score(d) for d in FRAMES])
    ratios = []
    for v in SWEEPS[method]:
        rebuilt = f.with_param(**{f.sweep_param: v})
        expected = [rebuilt(d).is_hard for d in FRAMES]
        assert f.decide(scores, v).tolist() == expected
        assert [f.decide(s, v) for s in scores] == expected
        ratios.append(np.mean(expected))
    # Upload ratio moves one way as the threshold grows: down for Uncertainty's ">=", up for the others.
    steps = np.diff(ratios)
    assert (steps <= 0).all() if method == "Uncertainty" else (steps >= 0).all()
    assert ratios[0] != ratios[-1]


def test_random_sweep_over_stored_scores_matches_rebuilt_filters():
    f = build_filter({"method": "Random", "param": {"seed": 5}})
    scores = np.array([f.score() for _ in range(50)])
    for v in (0.1, 0.3, 0.8):
        rebuilt = f.with_param(random_ratio=v)  # same seed: same draws
        assert f.decide(scores, v).tolist() == [rebuilt().is_hard for _ in range(50)]


def test_sweep_value_is_checked_like_the_parameter():
    with pytest.raises(MlkitError, match="parameter 'threshold_img'"):
        ibt(0.9, 0.9).decide(0.5, 1.5)
    assert ibt(0.9, 0.9).cut() == pytest.approx(0.1)
    assert ibt(0.9, 0.9).cut(0.25) == pytest.approx(0.75)


# --- registry -------------------------------------------------------------------------------------------------


class _Params(FilterParams):
    level: float = 0.5


class _Constant(HardExampleFilter):
    Params = _Params
    sweep_param = "level"
    hard_if = ">="

    def score(self, result: object = None) -> float:
        return 0.6


def test_duplicate_registration_is_refused():
    with pytest.raises(MlkitError, match="'IBT' is already registered .*IBTFilter"):
        register("IBT")(_Constant)
    with pytest.raises(MlkitError, match="already registered"):
        register("ibt")(_Constant)  # names are case-insensitive
    assert get_filter_class("IBT") is IBTFilter
    reg = Registry()
    reg.register("Constant")(_Constant)
    with pytest.raises(MlkitError, match="'Constant' is already registered"):
        reg.register("Constant")(_Constant)


def test_a_new_filter_registers_and_builds():
    reg = Registry()
    reg.register("Constant")(_Constant)
    assert reg.names() == ["Constant"]
    f = reg.build({"method": "constant", "param": {"level": 0.7}})
    assert f(None) == Judgement(False, 0.6)
    assert f.spec == {"method": "Constant", "param": {"level": 0.7}}
    assert "Constant" not in REGISTRY.names()


def test_register_refuses_what_is_not_a_filter():
    with pytest.raises(MlkitError, match="not a HardExampleFilter subclass"):
        Registry().register("Thing")(dict)
    with pytest.raises(MlkitError, match="non-empty name"):
        Registry().register("  ")


def test_unknown_method_names_the_known_ones():
    with pytest.raises(MlkitError) as exc:
        build_filter({"method": "IBTT", "param": {}})
    msg = str(exc.value)
    assert "unknown hard-example mining method 'IBTT' (did you mean 'IBT'?)" in msg
    assert "known methods: " + ", ".join(sorted(known_methods())) in msg
    with pytest.raises(MlkitError, match="known methods: none"):
        Registry().get("IBT")
    assert get_filter_class("crossentropy").method == "CrossEntropy"


@pytest.mark.parametrize("param, message", [
    ({"threshold": 0.5}, "unknown parameter 'threshold'. Known parameters: threshold_img (default 0.5), "
                         "threshold_box (default 0.5)"),
    ({"threshold_img": 1.5}, "parameter 'threshold_img': input should be less than or equal to 1 (got 1.5)"),
    ({"threshold_box": -0.1}, "parameter 'threshold_box': input should be greater than or equal to 0"),
    ({"threshold_box": "0.9"}, "parameter 'threshold_box': input should be a valid number (got '0.9')"),
    ({"threshold_img": True}, "parameter 'threshold_img': input should be a valid number (got True)"),
    ({"threshold_img": float("nan")}, "parameter 'threshold_img': input should be a finite number"),
])
def test_bad_parameters_name_the_parameter(param, message):
    with pytest.raises(MlkitError, match=re_escape("hard-example filter IBT: " + message)):
        build_filter({"method": "IBT", "param": param})


def test_errors_are_value_errors_for_callers_that_catch_those():
    with pytest.raises(ValueError):
        build_filter({"method": "Random", "param": {"random_ratio": 2}})


@pytest.mark.parametrize("spec, message", [
    ({"method": "IBT", "params": {}}, "unknown key 'params' (Sedna's key is 'param', singular)"),
    ({"param": {}}, "method: field required"),
    ({"method": ""}, "method: string should have at least 1 character"),
    ({"method": "IBT", "param": [0.9]}, "param: input should be a valid dictionary"),
    (["IBT"], "got list"),
])
def test_malformed_spec(spec, message):
    with pytest.raises(MlkitError, match=re_escape(message)):
        build_filter(spec)


def test_spec_forms_agree():
    a = build_filter({"method": "IBT", "param": {"threshold_img": 0.9, "threshold_box": 0.9}})
    b = build_filter(FilterSpec(method="IBT", param={"threshold_img": 0.9, "threshold_box": 0.9}))
    c = IBTFilter(threshold_img=0.9, threshold_box=0.9)
    assert a.spec == b.spec == c.spec
    assert repr(a) == "IBT(threshold_img=0.9, threshold_box=0.9)"
    assert build_filter("IBT").spec["param"] == {"threshold_img": 0.5, "threshold_box": 0.5}  # Sedna's defaults


def test_spec_from_sedna_crd_block():
    block = {"name": "IBT", "parameters": [{"key": "threshold_img", "value": "0.9"},
                                           {"key": "threshold_box", "value": "0.9"}]}
    assert build_filter(FilterSpec.from_sedna(block)).spec == ibt(0.9, 0.9).spec
    seeded = FilterSpec.from_sedna({"name": "Random", "parameters": [{"key": "seed", "value": "42"}]})
    assert seeded.param == {"seed": 42}
    assert FilterSpec.from_sedna({"name": "CloudOnly"}).param == {}
    with pytest.raises(MlkitError, match=re_escape("parameter 'threshold_img': input should be a valid number "
                                                   "(got 'high')")):
        build_filter(FilterSpec.from_sedna({"name": "IBT", "parameters": [{"key": "threshold_img",
                                                                           "value": "high"}]}))


@pytest.mark.parametrize("block, message", [
    ({"parameters": []}, "needs a 'name'"),
    ({"name": "IBT", "params": []}, "unknown fields ['params']"),
    ({"name": "IBT", "parameters": [{"key": "threshold_img"}]}, "parameters[0] must be {key: ..., value: ...}"),
    ({"name": "IBT", "parameters": [{"key": "threshold_img", "value": "0.1"},
                                    {"key": "threshold_img", "value": "0.2"}]}, "'threshold_img' is given twice"),
])
def test_malformed_sedna_block(block, message):
    with pytest.raises(MlkitError, match=re_escape(message)):
        FilterSpec.from_sedna(block)
