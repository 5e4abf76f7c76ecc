"""Read what a filter judges, box scores or class probabilities, and reject malformed input.

Sedna returns "not hard" for malformed input, so a broken edge model silently uploads nothing. Here
every malformed result raises ``MlkitError`` saying which box or entry is wrong.
"""

from __future__ import annotations

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError

BOX_ROW = "[xmin, ymin, xmax, ymax, score, label]"
# Softmax outputs in float32 sum to 1 only up to rounding.
SUM_TOLERANCE = 1e-3


def box_scores(result: object) -> np.ndarray:
    """The box scores (float64 ``[N]``) of one frame's detections, after checking the whole result.

    ``result`` is a ``Detections`` or Sedna's list form ``[[xmin, ymin, xmax, ymax, score, label], ...]``
    (a nested list or an ``[N, 6]`` array). ``[]`` is a frame without boxes. Raises ``MlkitError`` on a
    wrong shape, a non-numeric or non-finite value, or a score outside [0, 1].
    """
    if isinstance(result, Detections):
        boxes, scores, labels = (np.asarray(a) for a in (result.boxes, result.scores, result.labels))
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise MlkitError(f"detection boxes must have shape [N, 4], got {list(boxes.shape)}")
        if scores.ndim != 1 or labels.ndim != 1 or not len(boxes) == len(scores) == len(labels):
            raise MlkitError(f"detections need one score and one label per box; got boxes {list(boxes.shape)}, "
                             f"scores {list(scores.shape)}, labels {list(labels.shape)}")
        rows = np.concatenate([boxes, scores[:, None], labels[:, None]], axis=1).astype(np.float64)
    else:
        rows = _numeric(result, f"detections must be a Detections or a list of boxes {BOX_ROW}")
        if rows.ndim == 1 and rows.size == 0:
            return np.zeros(0)
        if rows.ndim != 2 or rows.shape[1] != 6:
            hint = "; wrap a single box in a list" if rows.shape == (6,) else ""
            raise MlkitError(f"each box must be {BOX_ROW} (6 numbers); got an array of shape "
                             f"{list(rows.shape)}{hint}")
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise MlkitError(f"box {i} has a non-finite value: {rows[i].tolist()}")
    scores = rows[:, 4]
    out = (scores < 0) | (scores > 1)
    if out.any():
        i = int(np.argmax(out))
        raise MlkitError(f"box {i} has score {scores[i]:g} outside [0, 1]")
    return scores


def class_probabilities(result: object) -> np.ndarray:
    """Class probabilities as a float64 ``[N, K]`` array, one row per box, after checking them.

    ``result`` is one probability vector ``[p_1, ..., p_K]`` (N = 1), a per-box ``[N, K]`` array or
    nested list, or a ``Detections``, whose box score ``s`` is read as the two-class distribution
    ``[s, 1 - s]`` (object vs not). A nested list is always read as probabilities, never as Sedna's box
    list, whose rows look the same. An ``[0, K]`` array is a frame without boxes; an empty vector
    raises. Each row must lie in [0, 1] and sum to 1 (within 1e-3).
    """
    if isinstance(result, Detections):
        s = box_scores(result)
        return np.stack([s, 1.0 - s], axis=1)
    p = _numeric(result, "class probabilities must be a vector [p_1, ..., p_K], an [N, K] array or a Detections")
    if p.ndim == 1:
        if p.size == 0:
            raise MlkitError("empty probability vector: CrossEntropy needs one probability per class (K >= 1)")
        p = p[None, :]
    if p.ndim != 2:
        raise MlkitError(f"class probabilities must be a vector or an [N, K] array, got shape {list(p.shape)}")
    if len(p) and p.shape[1] == 0:
        raise MlkitError("empty probability vector for box 0: CrossEntropy needs one probability per class")
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p > 1).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise MlkitError(f"probabilities of box {i} must be finite and in [0, 1], got {p[i].tolist()}")
    off = np.abs(p.sum(axis=1) - 1.0) > SUM_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        raise MlkitError(f"probabilities of box {i} sum to {p[i].sum():g}, not 1; pass a distribution "
                         "(normalise with p / p.sum())")
    return p


def _numeric(value: object, what: str) -> np.ndarray:
    """``value`` as a float64 array; strings, booleans, None and ragged lists are rejected."""
    if value is None or isinstance(value, str | bytes | dict):
        raise MlkitError(f"{what}; got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # numpy refuses ragged nested lists
        raise MlkitError(f"{what}; got rows of different lengths ({exc})") from exc
    # np.asarray(..., float) would quietly turn "0.5" into 0.5; a string here is a bug upstream.
    if arr.size and arr.dtype.kind not in "iuf":
        raise MlkitError(f"{what}; got values of type {arr.dtype} (numbers only)")
    return arr.astype(np.float64)
