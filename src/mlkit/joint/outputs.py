"""What a joint-inference run leaves on disk, with the seed's folder names.

- ``all_examples_inference_output/``: every frame with its final result drawn;
- ``hard_example_edge_inference_output/`` and ``hard_example_cloud_inference_output/``: hard frames with
  the edge's and the cloud's boxes drawn;
- a hard-example store: hard frames as clean JPEGs (no boxes, so they can be relabelled) plus a sidecar
  ``.json`` with both models' predictions;
- ``results.jsonl``: one record per frame, appended and flushed line by line, so a run that stops
  halfway leaves valid JSON lines; with the offline queue (``mlkit.joint.spool``), also a correction record
  (``"source": "cloud-late"``) for each queued frame the cloud answered later (``write_late``).

Images are written through a temp file and a rename, so a reader never sees half a frame; in the store
the sidecar is written after its image, so a sidecar always has its image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_path
from mlkit.detections import Detections

ALL = "all_examples_inference_output"
HARD_EDGE = "hard_example_edge_inference_output"
HARD_CLOUD = "hard_example_cloud_inference_output"


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    results_jsonl: Path | None = None
    all_examples: Path | None = None
    hard_edge: Path | None = None
    hard_cloud: Path | None = None
    hard_example_store: Path | None = None
    display_threshold: float = 0.3  # boxes drawn on images; the JSON lines keep every box
    jpeg_quality: int = 90

    @classmethod
    def under(cls, root: str | Path, *, images: bool = True, store: bool = True, **kw) -> OutputConfig:
        """All outputs in one folder, with the seed's names."""
        root = Path(root)
        return cls(results_jsonl=root / "results.jsonl",
                   all_examples=root / ALL if images else None,
                   hard_edge=root / HARD_EDGE if images else None,
                   hard_cloud=root / HARD_CLOUD if images else None,
                   hard_example_store=root / "hard_examples" if store else None, **kw)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path.name} as JPEG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


class OutputWriter:
    """Writes one frame's outputs at a time; use as a context manager (closes the JSON-lines file)."""

    def __init__(self, config: OutputConfig, class_names: Sequence[str]) -> None:
        self.config = config
        self.class_names = list(class_names)
        for d in (config.all_examples, config.hard_edge, config.hard_cloud, config.hard_example_store):
            if d is not None:
                Path(d).mkdir(parents=True, exist_ok=True)
        self._jsonl = None
        self._lock = threading.Lock()  # records come from the edge loop and from the offline queue's replay thread
        self._offset = 0  # bytes written to the results file
        self._closed = False
        if config.results_jsonl is not None:
            Path(config.results_jsonl).parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(config.results_jsonl, "wb")  # noqa: SIM115 - closed in close()

    def _append(self, record: dict) -> None:
        """One write per record: a stopped run leaves whole lines only (at most the last one is lost)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        self._jsonl.write(line)
        self._jsonl.flush()
        self._offset += len(line)

    def _draw(self, image: np.ndarray, det: Detections) -> np.ndarray:
        from mlkit.imaging import draw_detections

        return draw_detections(image, det.filter(self.config.display_threshold), self.class_names)

    def write(self, result, image: np.ndarray) -> None:
        """``result`` is a ``mlkit.joint.worker.FrameResult``; ``image`` its RGB frame."""
        c, name = self.config, f"frame_{result.index:06d}.jpg"
        if c.all_examples is not None:
            write_jpeg(Path(c.all_examples) / name, self._draw(image, result.final), c.jpeg_quality)
        if result.is_hard:
            if c.hard_edge is not None:
                write_jpeg(Path(c.hard_edge) / name, self._draw(image, result.edge), c.jpeg_quality)
            if c.hard_cloud is not None and result.cloud is not None:
                write_jpeg(Path(c.hard_cloud) / name, self._draw(image, result.cloud), c.jpeg_quality)
            if c.hard_example_store is not None:
                self._store(result, image, name)
        if self._jsonl is not None:
            with self._lock:
                self._append(result.record(self.class_names))

    def write_late(self, late, mark: Callable[[str | None, int | None], None] | None, record: bool = True) -> None:
        """A queued frame's late cloud answer (``mlkit.joint.spool.LateAnswer``): its correction record, then the
        hard-example store with the cloud's labels.

        ``mark(results_path, offset)`` is called under the lock just before the record is appended, with the byte
        offset it will start at (None, None without a results file): the queue writes its answered marker there,
        so that after a crash it can tell whether the record made it. ``record=False``: the store only.
        """
        if record:
            with self._lock:
                if self._closed:  # the queue entry must stay queued: its record has nowhere to go
                    raise OSError("the output writer is closed")
                if self._jsonl is None:
                    mark(None, None)
                else:
                    mark(str(Path(self.config.results_jsonl).resolve()), self._offset)
                    self._append(late.record(self.class_names))
                    os.fsync(self._jsonl.fileno())  # before the queue entry is removed
        if self.config.hard_example_store is not None:
            self._store_late(late)

    def _store(self, result, image: np.ndarray, name: str) -> None:
        store = Path(self.config.hard_example_store)
        write_jpeg(store / name, image, 95)
        h, w = image.shape[:2]
        sidecar = {"image": name, "frame": result.index, "timestamp": result.timestamp, "width": w, "height": h,
                   "class_names": self.class_names, "hem_score": result.hem_score,
                   "edge": result.edge.to_list(self.class_names),
                   "cloud": None if result.cloud is None else result.cloud.to_list(self.class_names)}
        with atomic_path(store / (name[:-4] + ".json")) as tmp:
            tmp.write_text(json.dumps(sidecar, indent=1))

    def _store_late(self, late) -> None:
        """The frame's clean copy, stored when it was released, gets the cloud's labels; a frame of an earlier run
        (or one whose copy is gone) is stored from the uploaded JPEG under its own name, boxes in its pixels."""
        e, store = late.entry, Path(self.config.hard_example_store)
        name = f"frame_{e.frame:06d}.jpg"
        sidecar_path = store / (name[:-4] + ".json")
        if late.same_run and (store / name).is_file() and sidecar_path.is_file():
            sidecar = json.loads(sidecar_path.read_text())
            sidecar["cloud"] = late.cloud.to_list(self.class_names)
        else:
            name = f"late_{e.key}.jpg"
            with atomic_path(store / name) as tmp:
                tmp.write_bytes(late.jpeg)
            width, height = e.sent
            sidecar = {"image": name, "frame": e.frame, "timestamp": e.timestamp, "width": width, "height": height,
                       "class_names": self.class_names, "hem_score": e.hem_score,
                       "edge": late.in_sent_pixels(e.edge).to_list(self.class_names),
                       "cloud": late.in_sent_pixels(late.cloud).to_list(self.class_names), "run": e.run}
        sidecar["cloud_late"] = True
        with atomic_path(store / (name[:-4] + ".json")) as tmp:
            tmp.write_text(json.dumps(sidecar, indent=1))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._jsonl is not None:
                self._jsonl.flush()
                os.fsync(self._jsonl.fileno())
                self._jsonl.close()
                self._jsonl = None

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
