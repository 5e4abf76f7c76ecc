"""Generate a dataset of synthetic helmet scenes, split into train/val/test.

Image ``i`` of a dataset is drawn from ``np.random.default_rng([seed, i])``, so a
seed always gives the same images whatever the split sizes, worker count or order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mlkit.data.dataset import HELMET_CLASSES, Dataset, ImageRecord, write_rgb
from mlkit.data.synthetic.sites import SITES, get_site
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Split sizes are image counts."""

    train: int = 200
    val: int = 50
    test: int = 100
    seed: int = 0
    sites: tuple[str, ...] = ("A", "B")
    width: int = 512
    height: int = 384
    fmt: str = "coco"

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            if getattr(self, name) < 0:
                raise MlkitError(f"{name} split size must be >= 0, got {getattr(self, name)}")
        if self.train + self.val + self.test == 0:
            raise MlkitError("all split sizes are 0: ask for at least one image")
        if not self.sites:
            raise MlkitError(f"sites is empty: give at least one of {', '.join(sorted(SITES))}")
        for s in self.sites:
            get_site(s)
        if not (64 <= self.width <= 4096 and 64 <= self.height <= 4096):
            raise MlkitError(f"image size {self.width}x{self.height} is outside 64..4096")


# Splits draw from disjoint index ranges so test images are never training images.
_SPLIT_OFFSET = {"train": 0, "val": 10_000_000, "test": 20_000_000}


def _render_one(args: tuple[int, int, str, int, int, str]) -> tuple[str, list, list, str]:
    from mlkit.data.synthetic.scene import render_scene

    seed, index, site_name, width, height, path = args
    rng = np.random.default_rng([seed, index])
    img, boxes, labels = render_scene(rng, get_site(site_name), width, height)
    quality = int(rng.integers(75, 96))
    write_rgb(path, img, quality=quality)
    return path, boxes.tolist(), labels.tolist(), site_name


def generate_split(out_dir: Path, split: str, count: int, spec: SyntheticSpec, workers: int = 2,
                   show_progress: bool = True) -> Dataset:
    from tqdm.auto import tqdm

    img_dir = Path(out_dir) / split / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in range(count):
        index = _SPLIT_OFFSET[split] + i
        site = spec.sites[i % len(spec.sites)]
        jobs.append((spec.seed, index, site, spec.width, spec.height, str(img_dir / f"{split}_{i:06d}.jpg")))
    results = []
    bar = tqdm(total=count, desc=f"generate {split}", unit="img", disable=not show_progress)
    if workers > 1 and count > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for r in pool.map(_render_one, jobs, chunksize=16):
                results.append(r)
                bar.update(1)
    else:
        for job in jobs:
            results.append(_render_one(job))
            bar.update(1)
    bar.close()
    records = [
        ImageRecord(Path(p), spec.width, spec.height, np.array(b, np.float32).reshape(-1, 4),
                    np.array(lab, np.int64), {"site": site, "seed": spec.seed})
        for p, b, lab, site in results
    ]
    return Dataset(records, HELMET_CLASSES, name=split)


def generate_dataset(out_dir: str | Path, spec: SyntheticSpec, workers: int = 2,
                     show_progress: bool = True) -> Path:
    """Write a dataset folder (``dataset.json`` + one folder per split) and return its path."""
    from mlkit.data.layout import write_dataset_dir

    out_dir = Path(out_dir)
    splits: dict[str, Dataset] = {}
    for split in ("train", "val", "test"):
        count = getattr(spec, split)
        if count:
            splits[split] = generate_split(out_dir, split, count, spec, workers, show_progress)
    write_dataset_dir(out_dir, splits, fmt=spec.fmt, extra={"generator": dataclasses.asdict(spec)})
    log.info("wrote %s images to %s", sum(len(d) for d in splits.values()), out_dir)
    return out_dir


def sites_of(ds: Dataset) -> Sequence[str]:
    return [r.meta.get("site", "?") for r in ds]
