"""Pairing the boxes of two answers for one set of objects: the shared step of reusing and tracking cloud answers."""

from __future__ import annotations

import numpy as np

from mlkit.detections import Detections


def match(a: Detections, b: Detections, max_distance: float = 1.0) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of one class whose centres are closer than ``max_distance`` times their mean size.

    Greedy, nearest first; each box is used once. Centre distance rather than IoU: a small head that moved
    half its width between two uploads has little overlap left but is still the nearest box of its class.
    """
    if len(a) == 0 or len(b) == 0:
        return []
    # This runs on the edge's core for most frames of a video, on arrays of a few dozen boxes, where each numpy
    # call's overhead outweighs its work: hence two-element products spelled out rather than prod or norm.
    ca, cb = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2, (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
    wa, wb = np.maximum(a.boxes[:, 2:] - a.boxes[:, :2], 0), np.maximum(b.boxes[:, 2:] - b.boxes[:, :2], 0)
    sa, sb = np.sqrt(wa[:, 0] * wa[:, 1]), np.sqrt(wb[:, 0] * wb[:, 1])
    dx, dy = ca[:, None, 0] - cb[None, :, 0], ca[:, None, 1] - cb[None, :, 1]
    d = np.sqrt(dx * dx + dy * dy) / np.maximum((sa[:, None] + sb[None]) / 2, 1e-6)
    d[a.labels[:, None] != b.labels[None]] = np.inf
    # Only the candidate pairs within reach are sorted and walked.
    ii, jj = np.nonzero(d <= max_distance)
    order = np.argsort(d[ii, jj], kind="stable")  # ties keep row-major order
    pairs: list[tuple[int, int]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for i, j in zip(ii[order].tolist(), jj[order].tolist(), strict=True):
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs
