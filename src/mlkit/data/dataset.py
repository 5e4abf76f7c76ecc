"""In-memory dataset model shared by every format reader and writer.

A ``Dataset`` is one split: a list of images with boxes in absolute pixel
coordinates ``[xmin, ymin, xmax, ymax]`` and integer class ids that index
``class_names``. Image paths are absolute, so a dataset can be converted and
written anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError

HELMET_CLASSES: tuple[str, ...] = ("person", "helmet", "helmet-on", "helmet-off")


@dataclasses.dataclass
class ImageRecord:
    """One image and its ground-truth boxes."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise MlkitError(
                f"{self.path}: {len(self.boxes)} boxes but {len(self.labels)} labels"
            )
        if self.width <= 0 or self.height <= 0:
            raise MlkitError(f"{self.path}: image size must be positive, got {self.width}x{self.height}")


@dataclasses.dataclass
class Dataset:
    """A split of images with boxes; ``class_names[i]`` names class id ``i``."""

    images: list[ImageRecord]
    class_names: tuple[str, ...] = HELMET_CLASSES
    name: str = "dataset"

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        n = len(self.class_names)
        for rec in self.images:
            if len(rec.labels) and (rec.labels.min() < 0 or rec.labels.max() >= n):
                raise MlkitError(
                    f"{rec.path}: class id {int(rec.labels.max())} is outside 0..{n - 1} "
                    f"for classes {list(self.class_names)}"
                )

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.images[index]

    @property
    def num_boxes(self) -> int:
        return int(sum(len(r.labels) for r in self.images))

    def class_counts(self) -> dict[str, int]:
        counts = np.zeros(len(self.class_names), np.int64)
        for rec in self.images:
            counts += np.bincount(rec.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    def subset(self, indices: Sequence[int], name: str | None = None) -> Dataset:
        return Dataset([self.images[i] for i in indices], self.class_names, name or self.name)

    def load_image(self, index: int) -> np.ndarray:
        """Read image ``index`` as an RGB uint8 array."""
        return read_rgb(self.images[index].path)


def read_rgb(path: Path | str) -> np.ndarray:
    """Read an image file as RGB uint8, with a clear error when it is missing or undecodable."""
    import cv2

    path = Path(path)
    if path.is_dir():
        raise MlkitError(f"{path} is a folder, not an image file; give the image files (e.g. {path}/*.jpg)")
    if not path.is_file():
        raise MlkitError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)  # decoded straight to RGB: no cvtColor pass
    if img is None:
        raise MlkitError(f"cannot decode image {path}: not a valid JPEG/PNG/BMP file")
    return img


def write_rgb(path: Path | str, rgb: np.ndarray, quality: int = 92) -> None:
    """Write an RGB uint8 array as JPEG or PNG (by suffix)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix or ".jpg", bgr, params)
    if not ok:
        raise MlkitError(f"cannot encode image for {path}")
    buf.tofile(path)
