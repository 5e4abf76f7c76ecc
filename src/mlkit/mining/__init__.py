"""Hard-example mining: decide per frame whether the edge result is good enough or the frame is hard.

Filters are built from Sedna's spec::

    from mlkit.mining import build_filter
    f = build_filter({"method": "IBT", "param": {"threshold_img": 0.9, "threshold_box": 0.9}})
    f(detections)            # Judgement(is_hard=True, score=0.25)

Every filter gives a ``Judgement(is_hard, score)``. To sweep a filter's threshold without re-running
anything, score each frame once and decide at each value of its ``sweep_param``::

    scores = [f.score(d) for d in edge_results]
    ratio = {v: f.decide(np.array(scores), v).mean() for v in values}

Built in: Sedna's IBT, CrossEntropy, Threshold, Random, EdgeOnly, CloudOnly (``mlkit.mining.filters``,
with their formulas and the edge cases Sedna leaves undefined) and mlkit's Uncertainty and ScoreMargin
(``mlkit.mining.uncertainty``, with why they should beat IBT on detection), and Keyframe, content-blind but
spread evenly in time, for video with reused cloud answers (``mlkit.mining.keyframes``). Add one with
``@register("Name")`` on a ``HardExampleFilter`` subclass.
"""

from mlkit.mining.base import FilterParams, HardExampleFilter, Judgement
from mlkit.mining.filters import (
    CloudOnlyFilter,
    CrossEntropyFilter,
    EdgeOnlyFilter,
    IBTFilter,
    RandomFilter,
    ThresholdFilter,
)
from mlkit.mining.inputs import box_scores, class_probabilities
from mlkit.mining.keyframes import KeyframeFilter
from mlkit.mining.registry import (
    REGISTRY,
    FilterSpec,
    Registry,
    build_filter,
    get_filter_class,
    known_methods,
    register,
)
from mlkit.mining.uncertainty import ScoreMarginFilter, UncertaintyFilter

__all__ = [
    "REGISTRY",
    "CloudOnlyFilter",
    "CrossEntropyFilter",
    "EdgeOnlyFilter",
    "FilterParams",
    "FilterSpec",
    "HardExampleFilter",
    "IBTFilter",
    "KeyframeFilter",
    "Judgement",
    "RandomFilter",
    "Registry",
    "ScoreMarginFilter",
    "ThresholdFilter",
    "UncertaintyFilter",
    "box_scores",
    "build_filter",
    "class_probabilities",
    "get_filter_class",
    "known_methods",
    "register",
]
