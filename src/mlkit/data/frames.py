"""Turn real footage (videos, photos) into a frame store that ``mlkit label auto`` can pseudo-label.

The store has the layout the edge worker writes for hard examples (``mlkit.incremental.store``): a clean
``<name>.jpg`` per frame and, written after it, a sidecar ``<name>.json`` with ``image``, ``width``,
``height`` and where the frame came from. So a camera's footage takes the same road to training as
hard examples do: ``mlkit data frames`` -> ``mlkit label auto`` (a real detector as the labeller) ->
``mlkit data merge`` with a labelled dataset -> ``mlkit train --init-from``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass(frozen=True)
class FrameSelection:
    """Which frames of a video to keep: every ``every``-th frame in ``[start, stop)`` (stop None = to the end)."""

    every: int = 1
    start: int = 0
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise MlkitError(f"every must be >= 1, got {self.every}")
        if self.start < 0:
            raise MlkitError(f"start must be >= 0, got {self.start}")
        if self.stop is not None and self.stop <= self.start:
            raise MlkitError(f"stop ({self.stop}) must be after start ({self.start})")

    def keeps(self, index: int) -> bool:
        in_range = index >= self.start and (self.stop is None or index < self.stop)
        return in_range and (index - self.start) % self.every == 0


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "source"


def video_frames(path: str | Path, selection: FrameSelection = FrameSelection(), rgb: bool = True
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` for the selected frames of a video, decoded by OpenCV; RGB, or BGR with ``rgb=False``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MlkitError(f"cannot open video {path}: not a video OpenCV can decode (try .avi or .mp4)")
    try:
        index = 0
        while selection.stop is None or index < selection.stop:
            ok = cap.grab()
            if not ok:
                break
            if selection.keeps(index):
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if rgb else bgr
            index += 1
    finally:
        cap.release()


def _sources(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not found:
                raise MlkitError(f"{p} holds no images or videos ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
            out.extend(found)
        elif not p.is_file():
            raise MlkitError(f"{p} does not exist (give videos, images or folders of them)")
        elif p.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            raise MlkitError(f"{p}: unknown file type {p.suffix!r}; give a video ({', '.join(VIDEO_SUFFIXES)}) or "
                             f"an image ({', '.join(IMAGE_SUFFIXES)})")
        else:
            out.append(p)
    return out


def extract_frames(sources: Sequence[str | Path], store: str | Path, selection: FrameSelection = FrameSelection(),
                   quality: int = 92, show_progress: bool = True) -> int:
    """Write the selected frames of every video (and every image as it is) into ``store``; returns the count.

    Frame names carry their source and index (``vtest_000120``), so stores of several sources can share a
    folder and re-running with the same sources rewrites the same files.
    """
    from tqdm.auto import tqdm

    from mlkit.data.atomic import atomic_path, atomic_write_text
    from mlkit.data.dataset import read_rgb
    from mlkit.imaging import encode_jpeg

    files = _sources(sources)
    if not files:
        raise MlkitError("give at least one video or image")
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    written = 0
    with tqdm(desc="frames", unit="frame", disable=not show_progress) as bar:
        for src in files:
            video = src.suffix.lower() in VIDEO_SUFFIXES
            frames = video_frames(src, selection) if video else iter([(0, read_rgb(src))])
            for index, rgb in frames:
                name = f"{_slug(src)}_{index:06d}" if video else _slug(src)
                jpg = encode_jpeg(rgb, quality)
                with atomic_path(store / f"{name}.jpg") as tmp:
                    tmp.write_bytes(jpg)
                h, w = rgb.shape[:2]
                side = {"image": f"{name}.jpg", "width": int(w), "height": int(h), "source": str(src),
                        "frame": int(index)}
                atomic_write_text(store / f"{name}.json", json.dumps(side, indent=1))  # after its image
                written += 1
                bar.update()
    if written == 0:
        raise MlkitError(f"no frame selected from {len(files)} sources (check --start/--stop/--every)")
    return written
