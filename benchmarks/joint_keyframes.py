"""On a labelled video, what if a cloud answer also served the frames around it? An offline analysis.

mlkit's joint worker gives each frame the cloud's answer only if that frame was uploaded; every other frame
keeps the edge's answer. Video frames are close in time, so this script asks what two other rules would give,
on held-out clips of the synthetic video (labelled, rendered here; the models never saw them):

- **hold**: a frame that was not uploaded takes the last cloud answer of the ``--hold`` frames before it, merged
  with its own edge boxes (cloud boxes first; edge boxes that no cloud box of the same class covers are added).
  The worker releases frames in order, so that answer is always known when the frame is released.
- **interpolate**: a frame between two uploaded frames takes the cloud boxes of both, matched by class and
  centre distance and interpolated by time, merged with its edge boxes the same way. A frame then also waits
  for the next uploaded frame's answer: more latency, up to the gap between uploads plus a round trip.

Upload schedules: one frame in k; each filter at the threshold ``mlkit joint evaluate`` tuned on still images
(``--tuned``); and each content filter at the threshold that uploads ``--budget`` of these clips (set on the
clips themselves, so an upper bound for that filter). Printed: mAP@0.5 of each rule as a share of cloud-only
mAP on the same frames. Figures are printed, never asserted. Neither rule is in the worker: this measures
whether one is worth building.

    python benchmarks/joint_keyframes.py                  # 4 clips x 300 frames, sites A and B
    python benchmarks/joint_keyframes.py --clips 2 --frames 150
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INTERVALS = (3, 4, 5)


def render_clips(out: Path, clips: int, frames: int, seed: int):
    """``clips`` labelled clips (sites alternate A, B) as one Dataset per clip."""
    from mlkit.data.synthetic.video import VideoSpec, extract_frames, render_video

    out_sets = []
    for i in range(clips):
        site = "AB"[i % 2]
        path = out / f"clip{i}_{site}.avi"
        labels = render_video(path, VideoSpec(frames=frames, seed=seed + i, site=site), show_progress=False)
        out_sets.append(extract_frames(path, labels, out / path.stem, show_progress=False))
    return out_sets


def match(a, b, max_distance: float = 1.0) -> list[tuple[int, int]]:
    """Greedy pairs of boxes of one class whose centres are closer than ``max_distance`` times their mean size."""
    if len(a) == 0 or len(b) == 0:
        return []
    ca, cb = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2, (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
    sa = np.sqrt(np.prod(a.boxes[:, 2:] - a.boxes[:, :2], axis=1))
    sb = np.sqrt(np.prod(b.boxes[:, 2:] - b.boxes[:, :2], axis=1))
    d = np.linalg.norm(ca[:, None] - cb[None], axis=2) / np.maximum((sa[:, None] + sb[None]) / 2, 1e-6)
    d[a.labels[:, None] != b.labels[None]] = np.inf
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(d, axis=None):
        i, j = divmod(int(flat), d.shape[1])
        if d[i, j] > max_distance:
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


def interpolate(a, b, w: float, unmatched_weight: float = 0.8):
    """Cloud answers ``a`` (before) and ``b`` (after) at fraction ``w`` of the way; unmatched boxes from the nearer."""
    from mlkit.detections import Detections

    pairs = match(a, b)
    boxes = [(1 - w) * a.boxes[i] + w * b.boxes[j] for i, j in pairs]
    scores = [(1 - w) * a.scores[i] + w * b.scores[j] for i, j in pairs]
    labels = [a.labels[i] for i, _ in pairs]
    near, taken = (a, {i for i, _ in pairs}) if w < 0.5 else (b, {j for _, j in pairs})
    for k in range(len(near)):
        if k not in taken:
            boxes.append(near.boxes[k])
            scores.append(near.scores[k] * unmatched_weight)
            labels.append(near.labels[k])
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores), np.array(labels))


def merge(edge, cloud, iou: float = 0.3):
    """Cloud boxes, plus the edge boxes that no cloud box of the same class overlaps by ``iou``."""
    from mlkit.detections import Detections
    from mlkit.evaluation.matching import box_iou

    if len(cloud) == 0 or len(edge) == 0:
        return edge if len(cloud) == 0 else cloud
    covered = ((box_iou(cloud.boxes, edge.boxes) >= iou) & (cloud.labels[:, None] == edge.labels[None])).any(0)
    keep = ~covered
    return Detections(np.concatenate([cloud.boxes, edge.boxes[keep]]),
                      np.concatenate([cloud.scores, edge.scores[keep]]),
                      np.concatenate([cloud.labels, edge.labels[keep]]))


def final_results(edge, cloud, uploaded: np.ndarray, rule: str, hold: int) -> list:
    keys = np.flatnonzero(uploaded)
    out = []
    for t in range(len(edge)):
        if uploaded[t]:
            out.append(cloud[t])
            continue
        before, after = keys[keys < t], keys[keys > t]
        if rule == "hold" and len(before) and t - before[-1] <= hold:
            out.append(merge(edge[t], cloud[before[-1]]))
        elif rule == "interpolate" and len(before) and len(after):
            u, v = before[-1], after[0]
            out.append(merge(edge[t], interpolate(cloud[u], cloud[v], (t - u) / (v - u))))
        elif rule == "interpolate" and (len(before) or len(after)):
            out.append(merge(edge[t], cloud[before[-1]] if len(before) else cloud[after[0]]))
        else:
            out.append(edge[t])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edge-model", default=str(ROOT / "models/little/tflite/int8"))
    ap.add_argument("--cloud-model", default=str(ROOT / "models/big/tflite/int8"))
    ap.add_argument("--clips", type=int, default=4, help="held-out clips, sites A and B alternating")
    ap.add_argument("--frames", type=int, default=300, help="frames per clip (15 fps)")
    ap.add_argument("--seed", type=int, default=9000, help="first clip's seed (clips use seed, seed+1, ...)")
    ap.add_argument("--hold", type=int, default=2, help="frames after an upload that the hold rule serves")
    ap.add_argument("--budget", type=float, default=0.3,
                    help="upload ratio at which the content filters are also run (threshold set on these clips)")
    ap.add_argument("--tuned", type=Path, default=ROOT / "runs/joint-eval/joint_evaluation.json",
                    help="report of `mlkit joint evaluate`: filters run at the thresholds it chose")
    args = ap.parse_args()
    if args.clips < 1 or args.frames < 2:
        ap.error("--clips must be >= 1 and --frames >= 2")
    if not 0 < args.budget < 1:
        ap.error(f"--budget must be between 0 and 1, got {args.budget}")

    from joint import tuned_spec

    from mlkit.data.dataset import Dataset
    from mlkit.evaluation.coco_map import coco_map
    from mlkit.joint.evaluate import MAP_SCORE_THRESHOLD, predict_dataset, sweep_values
    from mlkit.mining import build_filter
    from mlkit.models.predict import open_detector

    edge_model, cloud_model = open_detector(args.edge_model, 2), open_detector(args.cloud_model, 2)
    with tempfile.TemporaryDirectory(prefix="mlkit-keyframes-") as tmp:
        clips = render_clips(Path(tmp), args.clips, args.frames, args.seed)
        edge, cloud = [], []
        for i, ds in enumerate(clips):
            edge.append(predict_dataset(ds, lambda im: edge_model.predict(im, score_threshold=MAP_SCORE_THRESHOLD),
                                        f"edge clip {i}"))
            cloud.append(predict_dataset(ds, lambda im: cloud_model.predict(im, score_threshold=MAP_SCORE_THRESHOLD),
                                         f"cloud clip {i}"))
        pooled = Dataset([rec for ds in clips for rec in ds.images], clips[0].class_names, "clips")

        def score(per_clip: list[list]) -> float:
            return coco_map(pooled, [d for clip in per_clip for d in clip])["map50"]

        cloud_map, edge_map = score(cloud), score(edge)
        seeds = f"{args.seed}..{args.seed + len(clips) - 1}"
        print(f"\n{len(pooled)} frames in {len(clips)} held-out clips (seeds {seeds}): "
              f"edge-only mAP@0.5 {edge_map:.3f} ({edge_map / cloud_map:.1%} of cloud), cloud-only {cloud_map:.3f}")
        schedules: list[tuple[str, list[np.ndarray]]] = [
            (f"1 frame in {k}", [np.arange(len(e)) % k == 0 for e in edge]) for k in INTERVALS]
        for method in ("Random", "Uncertainty", "IBT", "Threshold", "CrossEntropy"):
            spec, how = tuned_spec(method, args.tuned)
            flt = build_filter(spec)
            schedules.append((f"{method}, {how}", [np.array([flt(d).is_hard for d in e]) for e in edge]))
            if method != "Random":  # thresholds tuned on stills upload less here: also at the budget, set here
                scores = np.array([flt.score(d) for e in edge for d in e])
                (value,) = sweep_values(flt, scores, (args.budget,))
                hard = np.asarray(flt.decide(scores, value), bool).reshape(-1)
                splits = np.cumsum([len(e) for e in edge])[:-1]
                schedules.append((f"{method}, {flt.sweep_param}={value:g} (set here)", np.split(hard, splits)))
        print(f"{'uploads chosen by':<56} {'upload':>7}  {'per frame':>9}  {'hold ' + str(args.hold):>9}  "
              f"{'interpolate':>11}   (share of cloud-only mAP@0.5)")
        for name, uploaded in schedules:
            ratio = float(np.mean(np.concatenate(uploaded)))
            shares = [score([final_results(e, c, u, rule, args.hold) for e, c, u in zip(edge, cloud, uploaded,
                                                                                    strict=True)]) / cloud_map
                      for rule in ("per frame", "hold", "interpolate")]
            print(f"{name:<56} {ratio:7.1%}  {shares[0]:9.1%}  {shares[1]:9.1%}  {shares[2]:11.1%}", flush=True)


if __name__ == "__main__":
    main()
