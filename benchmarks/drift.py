"""Does the agreement alarm catch a site change, and only that? The edge/cloud agreement monitor on real clips.

The committed little model (edge) and big model (cloud) predict every frame of synthetic clips
(``mlkit.joint.drift.clip_detections``). Both were trained on sites A and B; on site C the little model falls far
behind the big one, so a clip that switches from A to C is a stale edge model. ``drift_trace`` replays each clip as
the worker would: hard frames by the filter (``DEFAULT_HEM``) and easy frames audited at ``--share`` (2 %) are the
only frames the monitor sees. Per seed:

* ``A>C``: 600 frames of site A, then 300 of site C (the switch at frame 600): the alarm must fire within
  ``--within`` (150) frames after the switch, and not before it;
* ``A>B``: 600 frames of A, then 300 of B, a site the edge model knows: no alarm;
* ``A``, ``B``: 900 frames of one site: no alarm.

Protocol: the monitor's defaults (``AgreementConfig``) and the filter's threshold were chosen on the tuning seeds
11, 12, 13; the test seeds 21, 22, 23, 24 were fixed before any of their clips was rendered and are reported as
they come out. Clips are 512x384 at 15 fps (``VideoSpec`` defaults).

    python benchmarks/drift.py                          # test seeds
    python benchmarks/drift.py --seeds 11,12,13         # the tuning seeds
    python benchmarks/drift.py --seeds 21 --plot drift.png

Printed: per seed the edge's and the cloud's mAP@0.5 against the true labels on site A and on site C (how much the
edge falls behind) and the hard frames after the switch; per clip the upload ratio, the frames the monitor saw, the
alarm frame, its delay after the switch, false alarms, the final agreement of both streams, and the monitor's time
per frame. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import bisect
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def predict(edge_model, cloud_model, spec):
    """Both models' answers on every frame of a clip, and its true labels."""
    from mlkit.data.synthetic.video import render_frames
    from mlkit.joint.drift import SCORE_THRESHOLD

    edge, cloud, truth = [], [], []
    for image, boxes, labels in render_frames(spec):
        edge += edge_model.predict([image], score_threshold=SCORE_THRESHOLD)
        cloud += cloud_model.predict([image], score_threshold=SCORE_THRESHOLD)
        truth.append((boxes, labels))
    return edge, cloud, truth


def map50(truth, predictions) -> float:
    from mlkit.data.dataset import Dataset, ImageRecord
    from mlkit.evaluation.coco_map import coco_map

    data = Dataset([ImageRecord(f"frame_{i}", 512, 384, boxes, labels) for i, (boxes, labels) in enumerate(truth)])
    return coco_map(data, predictions, iou_thresholds=(0.5,))["map50"]


def main() -> None:
    from mlkit.data.synthetic.clipset import parse_seeds
    from mlkit.data.synthetic.video import VideoSpec
    from mlkit.joint.agreement import AgreementConfig, AuditSampler
    from mlkit.joint.drift import DEFAULT_HEM, drift_trace
    from mlkit.models.predict import TFLiteDetector

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="21,22,23,24", help="comma-separated clip seeds (tuning: 11,12,13)")
    p.add_argument("--share", type=float, default=0.02, help="audit share of easy frames")
    p.add_argument("--within", type=int, default=150, help="frames after the switch the alarm must fire in")
    p.add_argument("--before", type=int, default=600, help="frames before the switch")
    p.add_argument("--after", type=int, default=300, help="frames after the switch")
    p.add_argument("--edge", type=Path, default=ROOT / "models/little/tflite/int8/model.tflite")
    p.add_argument("--cloud", type=Path, default=ROOT / "models/big/tflite/int8/model.tflite")
    p.add_argument("--plot", type=Path, help="save the first seed's A>C trace as a PNG")
    args = p.parse_args()

    edge_model, cloud_model = TFLiteDetector(args.edge), TFLiteDetector(args.cloud)
    names = edge_model.meta.class_names
    config, total = AgreementConfig(), args.before + args.after
    print(f"monitor: {config}\nfilter: {DEFAULT_HEM}, audit share {args.share}")
    header = (f"{'clip':<10} {'upload':>6} {'hard':>5} {'audits':>6} {'alarm':>6} {'delay':>6} {'false':>6} "
              f"{'audit agr':>9} {'hard agr':>8} {'ms/frame':>8}")
    print(header)
    verdicts, first = [], None
    for seed in parse_seeds(args.seeds):
        t0 = time.perf_counter()
        clips = {}
        a_edge, a_cloud, a_truth = predict(edge_model, cloud_model, VideoSpec(frames=total, site="A", seed=seed))
        b_edge, b_cloud, _ = predict(edge_model, cloud_model, VideoSpec(frames=total, site="B", seed=seed))
        c_edge, c_cloud, c_truth = predict(edge_model, cloud_model, VideoSpec(frames=args.after, site="C", seed=seed))
        cut = args.before
        gap = {site: (map50(truth, edge), map50(truth, cloud))
               for site, truth, edge, cloud in (("A", a_truth[:cut], a_edge[:cut], a_cloud[:cut]),
                                                ("C", c_truth, c_edge, c_cloud))}
        clips["A>C"] = (a_edge[:cut] + c_edge, a_cloud[:cut] + c_cloud, cut)
        clips["A>B"] = (a_edge[:cut] + b_edge[:args.after], a_cloud[:cut] + b_cloud[:args.after], None)
        clips["A"] = (a_edge, a_cloud, None)
        clips["B"] = (b_edge, b_cloud, None)
        predict_s = time.perf_counter() - t0
        for name, (edge, cloud, switch) in clips.items():
            t1 = time.perf_counter()
            trace = drift_trace(edge, cloud, names, sampler=AuditSampler(args.share, seed=seed), config=config,
                                switch=switch)
            ms = (time.perf_counter() - t1) * 1000 / max(1, len(trace.frame))
            counts = trace.counts()
            if switch is not None:
                ok = not trace.false_alarms and trace.delay is not None and trace.delay <= args.within
                first, switch_trace = first or trace, trace
            else:
                ok = not trace.alarms
            verdicts.append(ok)
            agr = next((v for v in reversed(trace.agreement) if v is not None), None)
            hard = next((v for v in reversed(trace.agreement_hard) if v is not None), None)
            print(f"{name + ' s' + str(seed):<10} {counts['hard'] / len(edge):>6.3f} {counts['hard']:>5} "
                  f"{counts['audit']:>6} {str(trace.alarm_frame):>6} {str(trace.delay):>6} "
                  f"{len(trace.false_alarms):>6} {str(agr):>9} {str(hard):>8} {ms:>8.1f}  {'ok' if ok else 'MISS'}")
        print(f"  (seed {seed}: mAP@0.5 against the true labels, edge / cloud: site A {gap['A'][0]:.3f} / "
              f"{gap['A'][1]:.3f}, site C {gap['C'][0]:.3f} / {gap['C'][1]:.3f}; hard frames after the switch "
              f"{switch_trace.kind[bisect.bisect_left(switch_trace.frame, cut):].count('hard')}; both "
              f"models on {2 * total + args.after} frames in {predict_s:.0f} s)")
    print(f"{sum(verdicts)}/{len(verdicts)} clips as expected (switch: alarm within {args.within} frames and none "
          f"before; same or known site: no alarm)")
    if args.plot and first is not None:
        from mlkit.viz.plots import plot_drift

        plot_drift(first).figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
