"""The filter interface: a scalar score per frame, and a threshold rule that turns it into a decision.

Splitting ``score`` from ``decide`` is what makes threshold sweeps cheap: score every frame once, then
call ``decide(score, value)`` for each value of the filter's ``sweep_param``, without re-running the
model or the filter.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mlkit.errors import MlkitError

HardIf = Literal[">=", "<"]


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One frame's verdict: ``is_hard`` (True = send to the cloud / keep for relabelling) and the score
    it was decided on, in the filter's own units (see the filter's ``hard_if`` and ``cut``)."""

    is_hard: bool
    score: float


class FilterParams(BaseModel):
    """Base of every filter's parameters: unknown names, wrong types (a string or a bool for a number)
    and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class HardExampleFilter(abc.ABC):
    """Judge whether a frame is hard: ``judge(result) -> Judgement``; calling the filter is the same.

    Class attributes a filter sets:

    * ``Params``: its ``FilterParams`` model (Sedna's parameter names and defaults);
    * ``sweep_param``: the one parameter a threshold sweep varies (None: nothing to sweep, and
      ``fixed_cut`` is the cut);
    * ``hard_if``: ``">="`` means ``is_hard = score >= cut``, ``"<"`` means ``is_hard = score < cut``,
      where ``cut`` is the sweep parameter's value mapped by ``cut_from`` (the identity but for IBT);
    * ``tolerance``: comparisons treat a score within this of the cut as equal to it, so that float32
      box scores and ``1 - 0.7`` behave as on paper (a tie is hard for ``>=``, not hard for ``<``).
    """

    Params: ClassVar[type[FilterParams]]
    sweep_param: ClassVar[str | None]
    hard_if: ClassVar[HardIf]
    tolerance: ClassVar[float] = 1e-6
    fixed_cut: ClassVar[float | None] = None  # the cut of a filter without a sweep_param
    method: ClassVar[str] = ""  # the registered name, set by ``register``

    def __init__(self, **param: Any) -> None:
        self.params = self._validate(param)

    @abc.abstractmethod
    def score(self, result: object = None) -> float:
        """The frame's score from one inference result; raises ``MlkitError`` on malformed input."""

    def cut_from(self, value: float) -> float:
        """The cut on the score for a value of ``sweep_param``."""
        return float(value)

    def cut(self, value: float | None = None) -> float:
        """The cut for ``value`` of ``sweep_param`` (checked like the parameter), or for the current value."""
        if self.sweep_param is None:
            if value is not None or self.fixed_cut is None:
                raise MlkitError(f"{self.name} has no threshold to sweep")
            return self.fixed_cut
        params = self.params if value is None else self._validate({**self.params.model_dump(), self.sweep_param: value})
        return self.cut_from(getattr(params, self.sweep_param))

    def decide(self, score: float | np.ndarray, value: float | None = None) -> bool | np.ndarray:
        """``is_hard`` for a score (or an array of scores) at ``value`` of ``sweep_param`` (default: current)."""
        cut = self.cut(value)
        s = np.asarray(score, dtype=np.float64)
        hard = s >= cut - self.tolerance if self.hard_if == ">=" else s < cut - self.tolerance
        return bool(hard) if hard.ndim == 0 else hard

    def judge(self, result: object = None) -> Judgement:
        s = self.score(result)
        return Judgement(bool(self.decide(s)), float(s))

    def __call__(self, result: object = None) -> Judgement:
        return self.judge(result)

    def with_param(self, **changes: Any) -> HardExampleFilter:
        """A new filter of this kind with some parameters changed (checked as usual)."""
        return type(self)(**{**self.params.model_dump(), **changes})

    @property
    def name(self) -> str:
        return self.method or type(self).__name__

    @property
    def spec(self) -> dict[str, Any]:
        """The ``{"method": ..., "param": {...}}`` that rebuilds this filter."""
        return {"method": self.name, "param": self.params.model_dump()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{self.name}({args})"

    @classmethod
    def _validate(cls, param: dict[str, Any]) -> FilterParams:
        try:
            return cls.Params.model_validate(param)
        except ValidationError as exc:
            raise MlkitError(_describe(cls.method or cls.__name__, cls.Params, exc)) from None


def _describe(method: str, params: type[FilterParams], exc: ValidationError) -> str:
    """One line per bad parameter, naming it and listing the known ones with their defaults."""
    known = ", ".join(f"{k} (default {f.default!r})" for k, f in params.model_fields.items()) or "none"
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "param"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown parameter {name!r}")
        else:
            lines.append(f"parameter {name!r}: {err['msg'].lower()} (got {err['input']!r})")
    return f"hard-example filter {method}: {'; '.join(lines)}. Known parameters: {known}"
