"""Joint inference scored on a real, unlabelled video: the cloud model's own answers are the labels.

A real camera's footage has no ground truth. Taking the cloud's boxes that score at least ``min_score`` as the
labels of each frame, cloud only scores 1.0 by definition, and edge only and every filter's joint answer score their
agreement with the cloud (mAP@0.5, as ``mlkit.joint.agreement`` scores the worker's audits). Only the classes both
models predict are scored, matched by name: an imported detector that knows only "person" is compared with the
helmet model's "person" boxes, and the edge's helmet boxes are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.detections import Detections
from mlkit.errors import MlkitError

REFERENCES = ("auto", "labels", "cloud")  # auto: the labels next to each video when there are, else the cloud
DEFAULT_REFERENCE_SCORE = 0.5  # cloud boxes scoring at least this are a frame's labels


def shared_classes(edge_names: Sequence[str], cloud_names: Sequence[str]) -> tuple[str, ...]:
    """The class names both models predict, in the cloud's order; ``MlkitError`` when there is none."""
    edge = set(edge_names)
    shared = tuple(n for n in dict.fromkeys(cloud_names) if n in edge)
    if not shared:
        raise MlkitError(f"the edge model's classes {list(edge_names)} and the cloud model's {list(cloud_names)} "
                         "share no name: agreement is scored on the classes both predict")
    return shared


def restrict(detections: Detections, names: Sequence[str], shared: Sequence[str]) -> Detections:
    """The boxes of ``shared`` classes only, their labels renumbered as indices of ``shared``."""
    index = {n: i for i, n in enumerate(shared)}
    to = np.array([index.get(n, -1) for n in names], np.int64)
    labels = detections.labels
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise MlkitError(f"a class id {int(labels.max())} is outside the model's classes {list(names)}")
    new = to[labels] if len(labels) else labels
    keep = new >= 0
    return Detections(detections.boxes[keep], detections.scores[keep], new[keep])


@dataclasses.dataclass(frozen=True)
class CloudReference:
    """The cloud's boxes scoring at least ``min_score`` as the labels, on the classes both models name alike."""

    edge_names: tuple[str, ...]
    cloud_names: tuple[str, ...]
    min_score: float = DEFAULT_REFERENCE_SCORE

    def __post_init__(self) -> None:
        if not 0 < self.min_score <= 1:
            raise MlkitError(f"the reference score must be in (0, 1], got {self.min_score}")
        object.__setattr__(self, "edge_names", tuple(self.edge_names))
        object.__setattr__(self, "cloud_names", tuple(self.cloud_names))
        shared_classes(self.edge_names, self.cloud_names)  # refuses models with nothing in common

    @property
    def classes(self) -> tuple[str, ...]:
        return shared_classes(self.edge_names, self.cloud_names)

    def apply(self, frames: Dataset, edge: Sequence[Detections], cloud: Sequence[Detections]
              ) -> tuple[Dataset, list[Detections], list[Detections]]:
        """(the frames labelled with the cloud's confident boxes, edge and cloud answers on the shared classes)."""
        if not len(frames) == len(edge) == len(cloud):
            raise MlkitError(f"{len(frames)} frames but {len(edge)} edge and {len(cloud)} cloud answers")
        shared = self.classes
        edge_r = [restrict(d, self.edge_names, shared) for d in edge]
        cloud_r = [restrict(d, self.cloud_names, shared) for d in cloud]
        records = []
        for rec, d in zip(frames.images, cloud_r, strict=True):
            sure = d.filter(self.min_score)
            records.append(dataclasses.replace(rec, boxes=sure.boxes, labels=sure.labels))
        if not any(len(r.labels) for r in records):
            raise MlkitError(f"the cloud found no {' or '.join(shared)} box scoring >= {self.min_score:g} in any of "
                             f"the {len(records)} frames: there is nothing to agree on (lower the reference score, or "
                             "give a video with such objects)")
        return Dataset(records, shared, frames.name), edge_r, cloud_r

    def describe(self) -> str:
        return f"the cloud's boxes scoring >= {self.min_score:g} ({', '.join(self.classes)})"


def read_frames(video: str | Path, out_dir: str | Path, every: int = 1, max_frames: int | None = None,
                show_progress: bool = True, quality: int = 92) -> Dataset:
    """Every ``every``-th frame of an unlabelled video (at most ``max_frames``), decoded with OpenCV and kept as
    JPEGs under ``out_dir``, in order: a ``Dataset`` without boxes, ``meta={"frame": i}``."""
    import contextlib

    import cv2
    from tqdm.auto import tqdm

    from mlkit.data.frames import FrameSelection, video_frames

    video = Path(video)
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise MlkitError(f"every must be an integer >= 1, got {every!r}")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
        raise MlkitError(f"max_frames must be None or an integer >= 1, got {max_frames!r}")
    if not video.is_file():
        raise MlkitError(f"video not found: {video}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) // every or None
    cap.release()
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    records: list[ImageRecord] = []
    frames = contextlib.closing(video_frames(video, FrameSelection(every=int(every)), rgb=False))
    with frames as frames, tqdm(total=total, desc=f"frames of {video.name}", unit="frame",
                                disable=not show_progress) as bar:
        for index, bgr in frames:
            path = out_dir / f"{video.stem}_{index:06d}.jpg"
            if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise MlkitError(f"could not write frame {index} of {video} to {path}")
            records.append(ImageRecord(path, bgr.shape[1], bgr.shape[0], meta={"frame": index}))
            bar.update()
            if max_frames is not None and len(records) >= max_frames:
                break
    if not records:
        raise MlkitError(f"{video}: OpenCV decoded no frame from it")
    return Dataset(records, (), video.stem)
