"""Named sizes for the whole object-detection job: test (CI seconds), demo (minutes), full (quality).

A profile fixes the synthetic dataset, both detectors and their training budgets. The
full profile is sized from measured training speed on 2 cores (little about 20-30 img/s,
big about 5 img/s) to fit in two hours. ``demo`` fine-tunes the committed models on a site
they never saw (C); ``demo-scratch`` trains from scratch in the same time. The committed
models themselves also learnt real frames (``models/real-recipe.sh``).
"""

from __future__ import annotations

import dataclasses

from mlkit.data.synthetic.generate import SyntheticSpec
from mlkit.errors import MlkitError
from mlkit.models.config import BIG, LITTLE, DetectorConfig
from mlkit.models.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    data: SyntheticSpec
    little: DetectorConfig
    big: DetectorConfig
    little_train: TrainConfig
    big_train: TrainConfig
    calibration_images: int = 200  # representative dataset for full-int8
    map_gate: float = 0.5  # the pipeline's dsl.If threshold on the big model's mAP@0.5


PROFILES: dict[str, Profile] = {
    "test": Profile(
        "test",
        SyntheticSpec(train=24, val=8, test=8, seed=11),
        dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1),
        dataclasses.replace(BIG, input_width=160, input_height=128, alpha=0.35, neck_channels=24, head_convs=1),
        TrainConfig(epochs=1, batch_size=8, seed=11),
        TrainConfig(epochs=1, batch_size=8, seed=11),
        calibration_images=8,
        map_gate=0.0,
    ),
    # `make demo`: the committed models (init_from="bundled") fine-tuned on a new site, C, within the demo's
    # ten minutes on 2 cores, setup included.
    "demo": Profile(
        "demo",
        SyntheticSpec(train=250, val=50, test=150, seed=7, sites=("C",)),
        LITTLE,
        BIG,
        TrainConfig(epochs=3, batch_size=8, seed=7),
        TrainConfig(epochs=2, batch_size=8, seed=7),
        calibration_images=100,
        map_gate=0.5,
    ),
    # `mlkit demo --from-scratch`: both detectors from random weights in the same few minutes. They learn enough
    # to pass a low gate and be served, far from what the full profile reaches.
    "demo-scratch": Profile(
        "demo-scratch",
        SyntheticSpec(train=500, val=50, test=120, seed=7),
        LITTLE,
        BIG,
        TrainConfig(epochs=5, batch_size=16, seed=7),
        TrainConfig(epochs=4, batch_size=16, seed=7),
        calibration_images=100,
        map_gate=0.02,
    ),
    "full": Profile(
        "full",
        SyntheticSpec(train=5000, val=300, test=600, seed=2026),
        LITTLE,
        BIG,
        TrainConfig(epochs=9, batch_size=16, seed=2026, patience=3),
        TrainConfig(epochs=6, batch_size=16, seed=2026, patience=3),
        calibration_images=300,
        map_gate=0.5,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise MlkitError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
