"""What the viewers read: prediction JSON lines (streaming and joint inference) and the frames they belong to.

- ``results.jsonl`` of ``mlkit stream``: ``{"frame", "timestamp", "latency_ms", "detections": [...]}``;
- ``results.jsonl`` of joint inference: ``{"frame", "is_hard", "hem_score", "edge", "cloud", "final", ...}``;
- frames: a video file, a ``Dataset``, a folder of images, or a list of RGB arrays, indexed by frame number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.jsonl import read_jsonl

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _frame_index(rec: dict, path: Path, n: int) -> int:
    for key in ("frame", "index"):
        if isinstance(rec.get(key), int):
            return rec[key]
    raise MlkitError(f"{path}: record {n} has no integer 'frame': {str(rec)[:120]}")


def load_predictions(path: str | Path, key: str | None = None) -> dict[int, Detections]:
    """``{frame: Detections}`` from a results file; ``key`` is the detections field (default: ``detections``
    for a stream's results, ``final`` for joint inference's)."""
    path = Path(path)
    out = {}
    for n, rec in enumerate(read_jsonl(path)):
        field = key or ("detections" if "detections" in rec else "final")
        if field not in rec:
            raise MlkitError(f"{path}: record {n} has no {field!r} field (fields: {sorted(rec)})")
        out[_frame_index(rec, path, n)] = Detections.from_list(rec[field] or [])
    return out


def class_names_in(records: Sequence[dict], fields: Sequence[str] = ("detections", "final", "edge", "cloud")
                   ) -> tuple[str, ...]:
    """Class names by id, as the records' detections name them (ids never seen get their number)."""
    names: dict[int, str] = {}
    for rec in records:
        for field in fields:
            for det in rec.get(field) or ():
                names.setdefault(int(det["class_id"]), str(det["label"]))
    return tuple(names.get(i, str(i)) for i in range(max(names) + 1)) if names else ()


@dataclasses.dataclass(frozen=True)
class JointRecord:
    """One frame of a joint-inference run (``mlkit.joint.worker.FrameResult.record``)."""

    frame: int
    timestamp: float
    is_hard: bool
    hem_score: float
    edge: Detections
    cloud: Detections | None
    fallback: str | None
    edge_ms: float | None
    cloud_ms: float | None
    late: bool = False  # the cloud answered after the frame's result, from the offline queue (mlkit.joint.spool)

    @property
    def final(self) -> Detections:
        return self.cloud if self.cloud is not None else self.edge


def load_joint_records(path: str | Path) -> list[JointRecord]:
    """One record per frame. A late answer (``"source": "cloud-late"``, from the offline queue) completes its frame's
    record; one from an earlier run (``"earlier_run": true``) names a frame of another file and is left out."""
    path = Path(path)
    out: list[JointRecord] = []
    late: dict[int, dict] = {}
    for n, rec in enumerate(read_jsonl(path)):
        missing = {"is_hard", "hem_score", "edge"} - set(rec)
        if missing:
            raise MlkitError(f"{path}: record {n} lacks {sorted(missing)}: is this a joint-inference results.jsonl?")
        if rec.get("source") == "cloud-late":
            if not rec.get("earlier_run"):
                late[_frame_index(rec, path, n)] = rec
            continue
        cloud = rec.get("cloud")
        out.append(JointRecord(_frame_index(rec, path, n), float(rec.get("timestamp") or 0.0), bool(rec["is_hard"]),
                               float(rec["hem_score"]), Detections.from_list(rec["edge"]),
                               None if cloud is None else Detections.from_list(cloud), rec.get("fallback"),
                               rec.get("edge_ms"), rec.get("cloud_ms")))
    if late:
        out = [dataclasses.replace(r, cloud=Detections.from_list(late[r.frame]["cloud"]),
                                   cloud_ms=late[r.frame].get("cloud_ms"), late=True) if r.frame in late else r
               for r in out]
    return out


class FrameImages:
    """Frames by index from a video file, a ``Dataset``, a folder of images or a list of RGB arrays."""

    def __init__(self, source: str | Path | Dataset | Sequence[np.ndarray]) -> None:
        self._cap = None
        self._video: Path | None = None
        self._paths: list[Path] | None = None
        self._arrays: Sequence[np.ndarray] | None = None
        self._dataset: Dataset | None = None
        if isinstance(source, Dataset):
            self._dataset = source
        elif isinstance(source, (str, Path)):
            p = Path(source)
            if p.is_dir():
                self._paths = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            elif p.is_file():
                self._video = p
            else:
                raise MlkitError(f"frames not found: {p} (give a video file, a folder of images, a Dataset "
                                 "or a list of images)")
        else:
            self._arrays = list(source)

    def __len__(self) -> int:
        if self._dataset is not None:
            return len(self._dataset)
        if self._paths is not None:
            return len(self._paths)
        if self._arrays is not None:
            return len(self._arrays)
        import cv2

        return int(self._capture().get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def _capture(self):
        import cv2

        if self._cap is None:
            self._cap = cv2.VideoCapture(str(self._video))
            if not self._cap.isOpened():
                self._cap = None
                raise MlkitError(f"cannot open video {self._video}: not a video OpenCV can decode")
        return self._cap

    def get(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8; ``MlkitError`` when there is no such frame."""
        if self._dataset is not None:
            return self._dataset.load_image(index)
        if self._paths is not None:
            from mlkit.data.dataset import read_rgb

            if not 0 <= index < len(self._paths):
                raise MlkitError(f"no image {index}: the folder has {len(self._paths)}")
            return read_rgb(self._paths[index])
        if self._arrays is not None:
            if not 0 <= index < len(self._arrays):
                raise MlkitError(f"no image {index}: {len(self._arrays)} were given")
            return np.asarray(self._arrays[index], np.uint8)
        import cv2

        cap = self._capture()
        # MJPG and most short clips seek exactly; the position is set each time so order does not matter.
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        if not ok:
            raise MlkitError(f"{self._video} has no frame {index}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
