"""mlkit's own filters for detection: uncertainty near the decision threshold, where the cloud can help.

Why IBT is a weak signal for this project's detector
-----------------------------------------------------
The edge model is anchor-free; its box score is ``sqrt(sigmoid(class) * sigmoid(iou))``, and it runs
with a low score threshold (about 0.1-0.3) so doubtful boxes reach the filter. IBT scores a frame by
the *fraction* of boxes at or below ``threshold_box``. Two things go wrong:

* A faint background box (0.12: almost surely nothing, dropped at the served threshold) and a real
  doubt (0.35: a worker or not?) count the same. With the low edge threshold nearly every frame has
  a few faint boxes, so IBT at 0.9/0.9 flags nearly every frame.
* Dividing by the number of boxes lets sure boxes dilute doubt: one doubtful worker among five sure
  ones (r = 1/6) ranks below one sure worker next to two faint background boxes (r = 2/3). The
  ranking follows the box count more than the doubt.

What the cloud can fix for mAP are the boxes whose score is close to the decision threshold ``t``: a
real object scored just below it (a miss) or a false one just above (a false alarm, or a box poorly
placed, which lowers the IoU factor of the score). Far-off scores, high or low, are the edge's sure
answers and need no second opinion.

Filters
-------
* ``Uncertainty``: a soft count of doubtful boxes, ``score = sum_i max(0, 1 - |s_i - t| / band)``.
  A box at ``t`` adds 1, the weight falls linearly to 0 at ``t +- band``, so sure boxes and faint
  background add nothing however many there are, and a frame with three doubtful workers is harder
  than a frame with one (each is a likely error the cloud can fix). Hard when
  ``score >= threshold_uncertainty`` (default 1.0: about one box right at ``t``). The score is
  continuous, so a sweep gives a smooth mAP-vs-upload curve.
* ``ScoreMargin``: least-margin sampling from active learning, ``score = min_i |s_i - t|``, the
  distance of the most doubtful box from the threshold; hard when ``score < margin``. One doubtful box
  is enough; the score reads directly ("the closest box is 0.03 from t").

Defaults: ``decision_threshold = 0.3`` is the detector's served score threshold
(``DetectorMeta.score_threshold``), the point where a box flips between reported and dropped;
``band = 0.2`` makes the kernel cover [0.1, 0.5]. Tune both on a validation split; a sweep varies only
``threshold_uncertainty`` or ``margin``.

A frame without boxes scores 0 (Uncertainty) or 1.0 (ScoreMargin, farther than any box can be): not
hard, as for Sedna's filters (see ``mlkit.mining.filters``), except at ``threshold_uncertainty = 0``,
where every frame is hard. Limit shared with every score-based filter: a total miss that leaves not
even a faint box near ``t`` looks easy.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from mlkit.mining.base import FilterParams, HardExampleFilter
from mlkit.mining.inputs import box_scores
from mlkit.mining.registry import register


class UncertaintyParams(FilterParams):
    decision_threshold: float = Field(0.3, ge=0.0, le=1.0)
    band: float = Field(0.2, gt=0.0, le=1.0)
    threshold_uncertainty: float = Field(1.0, ge=0.0)


@register("Uncertainty")
class UncertaintyFilter(HardExampleFilter):
    """Hard when the soft count of boxes near ``decision_threshold`` reaches ``threshold_uncertainty``."""

    Params = UncertaintyParams
    sweep_param: ClassVar[str] = "threshold_uncertainty"
    hard_if = ">="

    def score(self, result: object = None) -> float:
        s = box_scores(result)
        p = self.params
        return float(np.clip(1.0 - np.abs(s - p.decision_threshold) / p.band, 0.0, None).sum())


class ScoreMarginParams(FilterParams):
    decision_threshold: float = Field(0.3, ge=0.0, le=1.0)
    margin: float = Field(0.1, ge=0.0, le=1.0)


@register("ScoreMargin")
class ScoreMarginFilter(HardExampleFilter):
    """Hard when some box scores within ``margin`` of ``decision_threshold``."""

    Params = ScoreMarginParams
    sweep_param: ClassVar[str] = "margin"
    hard_if = "<"

    def score(self, result: object = None) -> float:
        s = box_scores(result)
        return float(np.abs(s - self.params.decision_threshold).min()) if s.size else 1.0
