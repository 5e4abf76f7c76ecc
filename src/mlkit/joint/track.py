"""Tracked reuse: a cloud answer's boxes follow their objects, frame by frame, until the next upload.

``reuse: interpolate`` moves boxes between the uploads on either side, so a frame waits for the next upload's answer.
``reuse: track`` is causal: a frame's result uses only that frame and earlier ones.

- Each answered upload replaces the tracked set with the cloud's boxes. A box that matches one of the previous set
  (class and centre distance, ``mlkit.joint.matching.match``, once both are at the same frame) gets the velocity between
  the two answers; a new one starts still.
- On every later frame each box moves by the optical flow inside it (OpenCV's pyramidal Lucas-Kanade at a grid of
  points, the median taken), from the previous frame to this one. Where the flow finds too few points, or no image
  is given, the box moves by its velocity.
- A box older than ``reach`` frames is dropped, and scores fade with age: a guess made long ago ranks below a fresh
  answer. The frame's result is the tracked boxes merged with its own edge boxes (``reuse.merge``): the edge adds
  objects that came in after the upload.

The edge's own boxes do not steer the tracked ones: from frame to frame they jitter more than the cloud's boxes
move, so following them made results worse than a constant velocity.

``CloudTracks.step`` is called once per frame in frame order, by the worker on release and by
``reuse.final_sequence`` in the offline evaluation, so ``mlkit joint evaluate --video --reuse track`` measures the
worker's own rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlkit.detections import Detections
from mlkit.joint.matching import match


@dataclasses.dataclass(frozen=True)
class TrackSettings:
    score_fade: float = 0.99  # score factor per frame since the cloud answer
    answer_match: float = 1.5  # centre distance, in mean box sizes, at which two answers' boxes are one object
    merge_iou: float = 0.5  # an edge box this close to a tracked box of its class is that object (reuse.merge)
    flow_grid: int = 3  # flow points per box: grid x grid
    flow_min_score: float = 0.2  # boxes scoring less move by their velocity only (they matter little, flow costs)


class CloudTracks:
    """The cloud's last answer, tracked through the frames after it; one per stream."""

    def __init__(self, reach: int, settings: TrackSettings | None = None) -> None:
        self.reach = reach
        self.settings = settings or TrackSettings()
        self._index: int | None = None  # the last frame stepped
        self._gray: np.ndarray | None = None  # its image, for the flow
        self._answer: Detections | None = None  # the last cloud answer as it came
        self._answer_index = -1
        self._boxes = np.zeros((0, 4), np.float32)  # the answer's boxes, moved to frame _index
        self._velocity = np.zeros((0, 2), np.float32)  # centre pixels per frame

    def step(self, index: int, cloud: Detections | None = None, image: np.ndarray | None = None
             ) -> Detections | None:
        """The tracked answer's boxes at frame ``index`` (scores faded with age), given its image (RGB or gray;
        without it boxes move by their velocity) and, for an upload the cloud answered, that answer.

        Frames come in order, each once. Returns None when the frame has its own answer or no answer is within
        ``reach`` frames. ``reuse.reused_tracked`` makes the frame's result from them.
        """
        if self._index is not None and index <= self._index:
            raise ValueError(f"frames must come in order, each once: frame {index} after frame {self._index}")
        dt = 0 if self._index is None else index - self._index
        gray = None if image is None else _gray(image)
        if self._answer is not None and index - self._answer_index > self.reach:
            self._answer, self._boxes, self._velocity = None, self._boxes[:0], self._velocity[:0]
        if len(self._boxes):
            self._advance(dt, gray)
        self._index, self._gray = index, gray
        if cloud is not None:
            self._take(index, cloud)
            return None
        if self._answer is None:
            return None
        age = index - self._answer_index
        return Detections(self._boxes.copy(), self._answer.scores * self.settings.score_fade ** age,
                          self._answer.labels)

    @property
    def answer_index(self) -> int | None:
        """The frame of the answer being tracked (None: none within reach)."""
        return None if self._answer is None else self._answer_index

    def _advance(self, dt: int, gray: np.ndarray | None) -> None:
        move = self._velocity * dt
        if gray is not None and self._gray is not None and gray.shape == self._gray.shape:
            which = np.flatnonzero(self._answer.scores >= self.settings.flow_min_score)
            if len(which):
                flow, ok = box_flow(self._gray, gray, self._boxes[which], self.settings.flow_grid)
                move[which[ok]] = flow[ok]
        self._boxes = self._boxes + np.tile(move, 2)

    def _take(self, index: int, cloud: Detections) -> None:
        velocity = np.zeros((len(cloud), 2), np.float32)
        if self._answer is not None and len(self._boxes):
            gap = index - self._answer_index
            old, new = _centres(self._answer.boxes), _centres(cloud.boxes)
            moved = Detections(self._boxes, self._answer.scores, self._answer.labels)
            for i, j in match(moved, cloud, self.settings.answer_match):
                velocity[j] = (new[j] - old[i]) / gap
        self._answer, self._answer_index = cloud, index
        self._boxes, self._velocity = cloud.boxes.astype(np.float32), velocity


def track_back(answer: Detections, images: Sequence[np.ndarray | None],
               settings: TrackSettings | None = None) -> list[Detections]:
    """An answer's boxes carried back in time by the flow: ``images[0]`` is the answered frame's image and
    ``images[k]`` the image ``k`` frames earlier; returns the boxes at ``images[1:]``, scores faded with the distance
    as in ``CloudTracks.step``. A box whose flow fails (or a missing image) stays where it was."""
    settings = settings or TrackSettings()
    boxes = answer.boxes.astype(np.float32)
    which = np.flatnonzero(answer.scores >= settings.flow_min_score)
    out = []
    grays = [None if im is None else _gray(im) for im in images]
    for k in range(1, len(grays)):
        later, earlier = grays[k - 1], grays[k]
        if len(which) and later is not None and earlier is not None:
            flow, ok = box_flow(later, earlier, boxes[which], settings.flow_grid)
            boxes = boxes.copy()
            boxes[which[ok]] += np.tile(flow[ok], 2)
        out.append(Detections(boxes, answer.scores * settings.score_fade ** k, answer.labels))
    return out


def box_flow(prev: np.ndarray, gray: np.ndarray, boxes: np.ndarray, grid: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Each box's displacement from gray image ``prev`` to ``gray``: the median Lucas-Kanade flow at ``grid x grid``
    points spread over it. Returns (displacements [N, 2], ok [N]): ok where at least half the points were tracked."""
    import cv2

    n = len(boxes)
    f = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    fx, fy = (a.reshape(-1) for a in np.meshgrid(f, f))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    pts = np.stack([boxes[:, None, 0] + w[:, None] * fx, boxes[:, None, 1] + h[:, None] * fy], -1)
    pts = np.ascontiguousarray(pts.reshape(-1, 1, 2), np.float32)
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(
        prev, gray, pts, None, winSize=(15, 15), maxLevel=2,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
    good = status.reshape(n, grid * grid) == 1
    d = np.where(good[..., None], (nxt - pts).reshape(n, grid * grid, 2), np.nan)
    ok = good.sum(1) * 2 >= grid * grid
    with np.errstate(all="ignore"):
        flow = np.nanmedian(np.where(ok[:, None, None], d, 0.0), axis=1)
    return np.nan_to_num(flow).astype(np.float32), ok


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2
