"""Keyframe: upload a share of frames spread evenly in time, whatever the edge saw.

Content-blind like Random, but where Random's uploads come in clumps and gaps, Keyframe's are spread out: frame
``n`` (counting from 0) gets the score ``frac(n * 0.618...)`` (the golden ratio's low-discrepancy sequence) and is
hard when that is below ``keyframe_ratio``. At any ratio the gaps between uploads take at most three lengths
close to ``1 / keyframe_ratio`` (the three-gap theorem), frame 0 is always uploaded, and sweeping the ratio over
stored scores gives nested sets, as for Random.

It is meant for video with the worker's ``reuse: interpolate``, where every frame then lies between two cloud
answers a few frames apart (``mlkit.joint.reuse``). On still images it is Random without the clumps.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mlkit.mining.base import FilterParams, HardExampleFilter
from mlkit.mining.registry import register

GOLDEN = 0.6180339887498949  # (sqrt(5) - 1) / 2


class KeyframeParams(FilterParams):
    keyframe_ratio: float = Field(0.25, ge=0.0, le=1.0)


@register("Keyframe")
class KeyframeFilter(HardExampleFilter):
    """Hard for an evenly spread ``keyframe_ratio`` of frames; the score is the frame's place in the sequence."""

    Params = KeyframeParams
    sweep_param: ClassVar[str] = "keyframe_ratio"
    hard_if = "<"
    tolerance = 0.0  # exact: keyframe_ratio = 1 uploads every frame, 0 none

    def __init__(self, **param: object) -> None:
        super().__init__(**param)
        self._frame = 0

    def score(self, result: object = None) -> float:
        """The next frame's score (each call counts one frame)."""
        n, self._frame = self._frame, self._frame + 1
        return (n * GOLDEN) % 1.0
