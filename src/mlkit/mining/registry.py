"""Filters registered by name and built from Sedna's spec ``{"method": "IBT", "param": {...}}``.

Unlike Sedna's ClassFactory, a name can be registered once only (case-insensitively), and an unknown
method names the known ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlkit.errors import MlkitError
from mlkit.mining.base import HardExampleFilter

F = TypeVar("F", bound=type[HardExampleFilter])


class FilterSpec(BaseModel):
    """Which filter to build and with which parameters (Sedna's shape)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: str = Field(min_length=1)
    param: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_sedna(cls, hard_example_mining: Mapping[str, Any]) -> FilterSpec:
        """Read a JointInferenceService ``hardExampleMining`` block:
        ``{"name": "IBT", "parameters": [{"key": "threshold_img", "value": "0.9"}, ...]}``.

        Values are strings in that CRD, so a value that reads as an int or a float becomes one; anything
        else stays a string and the filter refuses it by name.
        """
        if not isinstance(hard_example_mining, Mapping) or "name" not in hard_example_mining:
            raise MlkitError(f"hardExampleMining needs a 'name' and optional 'parameters' list of key/value "
                             f"pairs; got {hard_example_mining!r}")
        extra = set(hard_example_mining) - {"name", "parameters"}
        if extra:
            raise MlkitError(f"hardExampleMining: unknown fields {sorted(extra)}; expected 'name' and 'parameters'")
        param: dict[str, Any] = {}
        for i, item in enumerate(hard_example_mining.get("parameters") or []):
            if not isinstance(item, Mapping) or set(item) != {"key", "value"}:
                raise MlkitError(f"hardExampleMining.parameters[{i}] must be {{key: ..., value: ...}}, got {item!r}")
            if item["key"] in param:
                raise MlkitError(f"hardExampleMining.parameters: {item['key']!r} is given twice")
            param[str(item["key"])] = _number(item["value"])
        return cls._parse({"method": hard_example_mining["name"], "param": param})

    @classmethod
    def _parse(cls, spec: object) -> FilterSpec:
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            spec = {"method": spec}
        if not isinstance(spec, Mapping):
            raise MlkitError(f'a hard-example mining spec is {{"method": ..., "param": {{...}}}} or a method '
                             f"name; got {type(spec).__name__}")
        try:
            return cls.model_validate(dict(spec))
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            hint = " (Sedna's key is 'param', singular)" if "params" in spec else ""
            raise MlkitError(f'hard-example mining spec {dict(spec)!r}: {problems}{hint}; expected '
                             f'{{"method": "IBT", "param": {{"threshold_img": 0.9}}}}') from None


class Registry:
    """Filter classes by method name; ``register`` refuses a name twice."""

    def __init__(self) -> None:
        self._classes: dict[str, type[HardExampleFilter]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Class decorator: ``@register("IBT") class IBTFilter(HardExampleFilter): ...``."""
        if not isinstance(name, str) or not name.strip():
            raise MlkitError(f"a hard-example filter needs a non-empty name, got {name!r}")

        def decorate(cls: F) -> F:
            if not (isinstance(cls, type) and issubclass(cls, HardExampleFilter)):
                raise MlkitError(f"cannot register {cls!r} as {name!r}: it is not a HardExampleFilter subclass")
            taken = self._classes.get(name.lower())
            if taken is not None:
                raise MlkitError(f"hard-example filter {name!r} is already registered "
                                 f"(by {taken.__module__}.{taken.__qualname__} as {taken.method!r}); pick another name")
            cls.method = name
            self._classes[name.lower()] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """The registered method names, sorted."""
        return sorted(cls.method for cls in self._classes.values())

    def get(self, method: str) -> type[HardExampleFilter]:
        """The filter class for ``method`` (case-insensitive); ``MlkitError`` lists the known methods."""
        cls = self._classes.get(method.lower()) if isinstance(method, str) else None
        if cls is None:
            close = difflib.get_close_matches(str(method), self.names(), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MlkitError(f"unknown hard-example mining method {method!r}{hint}; known methods: "
                             f"{', '.join(self.names()) or 'none'}")
        return cls

    def build(self, spec: FilterSpec | Mapping[str, Any] | str) -> HardExampleFilter:
        """A filter from ``{"method": "IBT", "param": {"threshold_img": 0.9}}``, a ``FilterSpec`` or a bare
        method name (default parameters). Raises ``MlkitError`` naming an unknown method or a bad parameter."""
        parsed = FilterSpec._parse(spec)
        return self.get(parsed.method)(**parsed.param)


def _problem(err: Mapping[str, Any]) -> str:
    where = ".".join(map(str, err["loc"])) or "spec"
    return f"unknown key {where!r}" if err["type"] == "extra_forbidden" else f"{where}: {err['msg'].lower()}"


def _number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


REGISTRY = Registry()
register = REGISTRY.register
build_filter = REGISTRY.build
get_filter_class = REGISTRY.get
known_methods = REGISTRY.names
