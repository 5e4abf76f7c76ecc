"""Sedna's hard-example filters, with its formulas, parameter names and defaults.

================  =======================  ==============================================  =======  ===========
method            sweep_param (default)    score                                           hard_if  cut
================  =======================  ==============================================  =======  ===========
IBT               threshold_img (0.5)      r = #(box score <= threshold_box) / #boxes      >=       1 - value
CrossEntropy      threshold_cross_entropy  c = 1 + sum p_i ln p_i / ln K = 1 - H(p)/ln K   <        value
                  (0.5)                    (min over boxes when given one row per box)
Threshold         threshold (0.5)          mean box score                                  <        value
Random            random_ratio (0.3)       u ~ U[0, 1), seeded by ``seed``                 <        value
EdgeOnly          none                     0.0 (never hard)                                >=       1.0
CloudOnly         none                     1.0 (always hard)                               >=       1.0
================  =======================  ==============================================  =======  ===========

Defined where Sedna crashes or returns False:

* A frame without boxes gets the easiest score: IBT r = 0, Threshold mean = 1, CrossEntropy c = 1.
  So, as in Sedna, it is not hard, except at IBT's threshold_img = 1, where the cut is 0 and every
  frame is hard (the sweep's end point equals CloudOnly). Why not hard: the edge model runs with a low
  score threshold (0.1-0.3), so a frame where it reports nothing at all is most likely empty, and
  uploading it cannot gain mAP (there is nothing to find); a total miss is the rarer case.
* CrossEntropy: 0 ln 0 = 0 (Sedna's ``math.log(0)`` raises), and K = 1 gives c = 1, never hard
  (Sedna divides by ln 1 = 0).
* Malformed input raises ``MlkitError`` (see ``mlkit.mining.inputs``); Random, EdgeOnly and CloudOnly
  ignore their input, as in Sedna.
* IBT's ``threshold_box`` is not swept (changing it means rescoring), only ``threshold_img``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from mlkit.mining.base import FilterParams, HardExampleFilter
from mlkit.mining.inputs import box_scores, class_probabilities
from mlkit.mining.registry import register


class IBTParams(FilterParams):
    threshold_img: float = Field(0.5, ge=0.0, le=1.0)
    threshold_box: float = Field(0.5, ge=0.0, le=1.0)


@register("IBT")
class IBTFilter(HardExampleFilter):
    """Image-box threshold: hard when at least ``1 - threshold_img`` of the boxes score ``<= threshold_box``.

    Score: the fraction ``r`` of boxes with score ``<= threshold_box`` (0 for no boxes).
    """

    Params = IBTParams
    sweep_param: ClassVar[str] = "threshold_img"
    hard_if = ">="

    def score(self, result: object = None) -> float:
        s = box_scores(result)
        if s.size == 0:
            return 0.0
        return float(np.mean(s <= self.params.threshold_box + self.tolerance))

    def cut_from(self, value: float) -> float:
        return 1.0 - float(value)


class CrossEntropyParams(FilterParams):
    threshold_cross_entropy: float = Field(0.5, ge=0.0, le=1.0)


@register("CrossEntropy")
class CrossEntropyFilter(HardExampleFilter):
    """Hard when the confidence ``c = 1 + sum_i p_i ln p_i / ln K`` is below ``threshold_cross_entropy``.

    Input: one probability vector, one row per box (c is then the least confident box's), or a
    ``Detections`` read as ``[s, 1 - s]`` per box. Score: c in [0, 1], 1 for no boxes and for K = 1.
    """

    Params = CrossEntropyParams
    sweep_param: ClassVar[str] = "threshold_cross_entropy"
    hard_if = "<"

    def score(self, result: object = None) -> float:
        p = class_probabilities(result)
        n, k = p.shape
        if n == 0 or k == 1:  # nothing to judge / a single class is certain
            return 1.0
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # 0 ln 0 = 0
        c = 1.0 + plogp.sum(axis=1) / np.log(k)
        return float(np.clip(c.min(), 0.0, 1.0))  # clip: the 1e-3 sum tolerance can push c a hair outside


class ThresholdParams(FilterParams):
    threshold: float = Field(0.5, ge=0.0, le=1.0)


@register("Threshold")
class ThresholdFilter(HardExampleFilter):
    """Hard when the mean box score is below ``threshold``. Score: the mean box score (1 for no boxes)."""

    Params = ThresholdParams
    sweep_param: ClassVar[str] = "threshold"
    hard_if = "<"

    def score(self, result: object = None) -> float:
        s = box_scores(result)
        return float(s.mean()) if s.size else 1.0


class RandomParams(FilterParams):
    random_ratio: float = Field(0.3, ge=0.0, le=1.0)
    seed: int | None = Field(None, ge=0)


@register("Random")
class RandomFilter(HardExampleFilter):
    """Hard with probability ``random_ratio``, whatever the input (the baseline every filter must beat).

    Score: a draw ``u ~ U[0, 1)`` from a generator seeded with ``seed`` (None: fresh entropy); hard when
    ``u < random_ratio``. Each call to ``score`` or ``judge`` draws once, so a seeded filter gives the same
    sequence, and sweeping ``random_ratio`` over stored scores gives nested hard sets.
    """

    Params = RandomParams
    sweep_param: ClassVar[str] = "random_ratio"
    hard_if = "<"
    tolerance = 0.0  # exact, so random_ratio = 1 is always hard

    def __init__(self, **param: object) -> None:
        super().__init__(**param)
        self._rng = np.random.default_rng(self.params.seed)

    def score(self, result: object = None) -> float:
        return float(self._rng.random())


class NoParams(FilterParams):
    pass


@register("EdgeOnly")
class EdgeOnlyFilter(HardExampleFilter):
    """Never hard: every frame keeps the edge result. Score 0.0, cut 1.0."""

    Params = NoParams
    sweep_param: ClassVar[None] = None
    hard_if = ">="
    fixed_cut = 1.0

    def score(self, result: object = None) -> float:
        return 0.0


@register("CloudOnly")
class CloudOnlyFilter(HardExampleFilter):
    """Always hard: every frame goes to the cloud. Score 1.0, cut 1.0."""

    Params = NoParams
    sweep_param: ClassVar[None] = None
    hard_if = ">="
    fixed_cut = 1.0

    def score(self, result: object = None) -> float:
        return 1.0
