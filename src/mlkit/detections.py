"""Detection results: the one type every predictor, client and metric speaks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlkit.errors import MlkitError


@dataclasses.dataclass
class Detections:
    """Boxes for one image in original-image pixels ``[xmin, ymin, xmax, ymax]``."""

    boxes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.float32))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise MlkitError(
                f"detections need as many boxes, scores and labels; got "
                f"{len(self.boxes)}, {len(self.scores)}, {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, min_score: float) -> Detections:
        keep = self.scores >= min_score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def to_list(self, class_names: Sequence[str]) -> list[dict]:
        """The JSON form served by mlkit: one dict per box."""
        return [
            {
                "label": class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c)),
                "class_id": int(c),
                "score": round(float(s), 5),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(self.boxes, self.scores, self.labels, strict=True)
        ]

    @classmethod
    def from_list(cls, items: Sequence[dict]) -> Detections:
        """Parse the JSON form; raises ``MlkitError`` naming the bad item."""
        boxes, scores, labels = [], [], []
        for i, item in enumerate(items):
            try:
                box = [float(v) for v in item["box"]]
                if len(box) != 4:
                    raise ValueError("box must have 4 numbers")
                boxes.append(box)
                scores.append(float(item["score"]))
                labels.append(int(item["class_id"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise MlkitError(f"detection {i} is malformed ({exc}): {item!r}") from exc
        return cls(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores), np.array(labels))
