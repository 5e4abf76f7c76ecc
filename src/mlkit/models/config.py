"""Typed detector configuration and the two presets (little = edge, big = cloud)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mlkit.data.dataset import HELMET_CLASSES
from mlkit.errors import MlkitError

_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """An anchor-free single-level detector: MobileNetV2 backbone, FPN-lite neck, stride-8 head."""

    name: str
    input_width: int
    input_height: int
    alpha: float  # MobileNetV2 width multiplier
    neck_channels: int
    head_convs: int = 2
    class_names: tuple[str, ...] = HELMET_CLASSES
    stride: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.input_width % 32 or self.input_height % 32:
            raise MlkitError(
                f"input size {self.input_width}x{self.input_height} must be a multiple of 32 "
                "(the backbone downsamples 32x)"
            )
        if self.alpha not in _ALPHAS:
            raise MlkitError(f"alpha {self.alpha} is not a MobileNetV2 width; choose one of {_ALPHAS}")
        if not self.class_names:
            raise MlkitError("class_names is empty")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grid(self) -> tuple[int, int]:
        return self.input_height // self.stride, self.input_width // self.stride

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MlkitError(f"unknown detector config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def save(self, path: Path) -> None:
        from mlkit.data.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> DetectorConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# The edge model sees the 512x384 scene at 256x192 (a 12 px head becomes 6 px, under one stride-8
# cell); the cloud model sees it at 448x352 (10.5 px) with a 3x wider backbone. Width 1.0 is the width of the
# pretrained MobileNetV2s that packages ship (SSDLite's, ImageNet's), so the big model can start from real features.
LITTLE = DetectorConfig("little", 256, 192, alpha=0.35, neck_channels=48)
BIG = DetectorConfig("big", 448, 352, alpha=1.0, neck_channels=64)
PRESETS = {"little": LITTLE, "big": BIG}


def preset(name: str) -> DetectorConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise MlkitError(f"unknown detector {name!r}; choose one of {sorted(PRESETS)}") from None
