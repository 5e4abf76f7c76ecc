"""Reusing cloud answers on the video frames around an uploaded one.

A frame that was not uploaded normally keeps the edge's boxes. On video, the cloud's answer for a frame a few
frames away is usually better than the edge's own, because the edge misses small objects in every frame while
things move little between frames. Two rules, both merged with the frame's own edge boxes (``merge``):

- **hold**: the answer of the last uploaded frame, if it is at most ``reach`` frames earlier;
- **interpolate**: the answers of the uploaded frames on either side, boxes matched by class and centre
  distance and moved linearly in time (``interpolate``). The frame waits for the later answer.
- **track**: the last answer, its boxes carried frame by frame by the optical flow (``mlkit.joint.track``). Causal:
  no frame waits for a later upload.
- **track-interpolate**: both answers carried to the frame by the flow (the later one backwards), then blended as
  ``interpolate`` does. The frame waits for the later answer, as with interpolate.

``final_sequence`` applies the same rule offline: ``mlkit joint evaluate --video ... --reuse interpolate`` measures
it on held-out labelled clips.
"""

from __future__ import annotations

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.matching import match

REUSE_RULES = ("none", "hold", "interpolate", "track", "track-interpolate")
TRACKING_RULES = ("track", "track-interpolate")  # need the frames' images (without them boxes move by velocity)
WAITING_RULES = ("interpolate", "track-interpolate")  # a frame waits for the next upload's answer
UNMATCHED_WEIGHT = 0.8  # score factor of a box seen in one answer only: less sure that it is still there
MERGE_IOU = 0.3  # an edge box this close to a cloud box of its class is the same object


def check_reuse(rule: str, reach: int) -> None:
    """Refuse an unknown rule or a reach that is not an integer >= 1 (the worker's and the evaluation's check)."""
    if rule not in REUSE_RULES:
        raise MlkitError(f"reuse must be one of {', '.join(REUSE_RULES)}; got {rule!r}")
    if isinstance(reach, bool) or not isinstance(reach, int) or reach < 1:
        raise MlkitError(f"reuse_frames must be an integer >= 1, got {reach!r}")


def interpolate(before: Detections, after: Detections, w: float,
                pairs: list[tuple[int, int]] | None = None) -> Detections:
    """The answers ``before`` and ``after`` at fraction ``w`` (0..1) of the time between them.

    Matched boxes move linearly and their scores blend; a box found in one answer only is taken from the
    nearer answer (``w < 0.5``: ``before``) with its score times ``UNMATCHED_WEIGHT``. ``pairs`` is
    ``match(before, after)`` when the caller has it already (the frames between two uploads share it).
    """
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {w}")
    if pairs is None:
        pairs = match(before, after)
    i, j = np.array(pairs, np.intp).reshape(-1, 2).T
    near, taken = (before, i) if w < 0.5 else (after, j)
    rest = np.ones(len(near), bool)
    rest[taken] = False
    return Detections(np.concatenate([(1 - w) * before.boxes[i] + w * after.boxes[j], near.boxes[rest]]),
                      np.concatenate([(1 - w) * before.scores[i] + w * after.scores[j],
                                      near.scores[rest] * UNMATCHED_WEIGHT]),
                      np.concatenate([before.labels[i], near.labels[rest]]))


def merge(edge: Detections, cloud: Detections | None, iou: float = MERGE_IOU) -> Detections:
    """The cloud's boxes, plus the edge's boxes that no cloud box of the same class overlaps by ``iou``.

    The cloud's box wins where both saw an object; the edge adds what the reused answer cannot know about,
    such as a worker who entered after it.
    """
    from mlkit.evaluation.matching import box_iou

    if cloud is None or len(cloud) == 0 or len(edge) == 0:
        return edge if cloud is None or len(cloud) == 0 else cloud
    covered = ((box_iou(cloud.boxes, edge.boxes) >= iou) & (cloud.labels[:, None] == edge.labels[None])).any(0)
    keep = ~covered
    return Detections(np.concatenate([cloud.boxes, edge.boxes[keep]]),
                      np.concatenate([cloud.scores, edge.scores[keep]]),
                      np.concatenate([cloud.labels, edge.labels[keep]]))


def reused(edge: Detections, before: tuple[int, Detections] | None, after: tuple[int, Detections] | None,
           index: int, pairs: list[tuple[int, int]] | None = None) -> Detections:
    """Frame ``index``'s result from the answers of uploaded frames ``before`` and/or ``after`` it, as
    ``(frame index, detections)``; the edge's boxes alone when there is neither. ``pairs``: the answers'
    ``match``, when the caller keeps it for the frames between the same two uploads (``PairCache``)."""
    if before is not None and after is not None:
        (u, a), (v, b) = before, after
        if not u < index < v:
            raise ValueError(f"frame {index} is not between uploaded frames {u} and {v}")
        return merge(edge, interpolate(a, b, (index - u) / (v - u), pairs))
    if before is not None or after is not None:
        return merge(edge, (before or after)[1])
    return edge


def reused_tracked(edge: Detections, before: tuple[int, Detections] | None, after: tuple[int, Detections] | None,
                   index: int, merge_iou: float) -> Detections:
    """Frame ``index``'s result from answers already carried to it by the flow (``mlkit.joint.track``): ``before``
    from the last upload, ``after`` back from the next one, each ``(upload's frame index, boxes at this frame)``.
    With both they are blended by time as ``interpolate`` does (the boxes are matched where they now are)."""
    if before is not None and after is not None:
        (u, a), (v, b) = before, after
        if not u < index < v:
            raise ValueError(f"frame {index} is not between uploaded frames {u} and {v}")
        return merge(edge, interpolate(a, b, (index - u) / (v - u)), merge_iou)
    return merge(edge, (before or after or (None, None))[1], merge_iou)


class PairCache:
    """``match`` of the last two uploads' answers: every frame between them interpolates the same pairs."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._pairs: list[tuple[int, int]] = []

    def __call__(self, before: tuple[int, Detections] | None,
                 after: tuple[int, Detections] | None) -> list[tuple[int, int]] | None:
        if before is None or after is None:
            return None
        key = (before[0], after[0])
        if key != self._key:
            self._key, self._pairs = key, match(before[1], after[1])
        return self._pairs


def final_sequence(edge, cloud, hard, rule: str = "none", reach: int = 8, clips=None,
                   images=None) -> list[Detections]:
    """Each frame's final result, as the worker gives it with ``reuse=rule`` when every upload is answered.

    ``edge`` and ``cloud`` hold both models' answers for every frame in order, ``hard`` says which frames were
    uploaded, ``clips`` (optional) a clip id per frame: an answer never serves a frame of another clip. An
    uploaded frame gets the cloud's answer; any other frame ``reused(...)`` with the nearest upload before it
    and (for "interpolate") after it, each at most ``reach`` frames away. The tracking rules carry the answers with
    the optical flow of ``images`` (a sequence, or a function of the frame index, giving each frame's RGB or gray
    image); without images their boxes move at the speed measured between answers.
    """
    check_reuse(rule, reach)
    n = len(edge)
    hard = np.asarray(hard, bool).reshape(-1)
    clips = np.zeros(n, np.int64) if clips is None else np.asarray(clips).reshape(-1)
    if not (len(cloud) == len(hard) == len(clips) == n):
        raise ValueError(f"edge, cloud, hard and clips must have one entry per frame; got {len(edge)}, "
                         f"{len(cloud)}, {len(hard)}, {len(clips)}")
    if rule in TRACKING_RULES:
        image = images if images is None or callable(images) else images.__getitem__
        return _tracked_sequence(edge, cloud, hard, rule, reach, clips, image)

    def nearest(t: int, step: int) -> tuple[int, Detections] | None:
        for u in range(t + step, t + step * (reach + 1), step):
            if not 0 <= u < n or clips[u] != clips[t]:
                return None
            if hard[u]:
                return u, cloud[u]
        return None

    out = []
    pairs = PairCache()
    for t in range(n):
        if hard[t]:
            out.append(cloud[t])
        elif rule == "none":
            out.append(edge[t])
        else:
            before, after = nearest(t, -1), nearest(t, 1) if rule == "interpolate" else None
            out.append(reused(edge[t], before, after, t, pairs(before, after)))
    return out


def _tracked_sequence(edge, cloud, hard, rule, reach, clips, image) -> list[Detections]:
    """``final_sequence`` for the tracking rules: one ``CloudTracks`` per clip, stepped through every frame."""
    from mlkit.joint.track import CloudTracks, track_back

    n = len(edge)
    frame = (lambda t: None) if image is None else image
    forward: list[tuple[int, Detections] | None] = [None] * n
    backward: list[tuple[int, Detections] | None] = [None] * n
    tracks = None
    for t in range(n):
        if t == 0 or clips[t] != clips[t - 1]:
            tracks = CloudTracks(reach)
        boxes = tracks.step(t, cloud[t] if hard[t] else None, frame(t))
        if boxes is not None:
            forward[t] = tracks.answer_index, boxes
    if rule == "track-interpolate":
        for v in np.flatnonzero(hard).tolist():
            span = []  # the frames before v that it serves: not uploaded, same clip, within reach
            for t in range(v - 1, max(v - reach, 0) - 1, -1):
                if clips[t] != clips[v] or hard[t]:
                    break
                span.append(t)
            if span:
                back = track_back(cloud[v], [frame(t) for t in [v, *span]], tracks.settings)
                for t, boxes in zip(span, back, strict=True):
                    backward[t] = v, boxes
    merge_iou = tracks.settings.merge_iou if tracks is not None else MERGE_IOU
    return [cloud[t] if hard[t] else reused_tracked(edge[t], forward[t], backward[t], t, merge_iou) for t in range(n)]
