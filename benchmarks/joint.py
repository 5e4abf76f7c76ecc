"""Does the edge wait for the cloud? Edge frame rate with a slow cloud against edge-only, in one run.

The cloud's answers are held by real added latency (the server's --response-delay-ms) so that a round trip
is about 10x the edge's per-frame time. The edge worker runs the little TFLite model in process on
pre-decoded frames of the synthetic video; the cloud runs a served model on the same machine (so its
compute shares the CPU with the edge; the delay itself costs no CPU).

    python benchmarks/joint.py                      # CloudOnly: every frame goes to the cloud (worst case)
    python benchmarks/joint.py --filter Uncertainty --frames 600

Printed: edge-only frames/s, joint frames/s of the edge loop and including the final drain, their ratio
(target >= 0.90), the upload ratio, fallbacks by reason, cloud latency. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frames(count: int, seed: int = 3):
    from mlkit.data.synthetic.video import VideoSpec, render_frames
    from mlkit.joint.worker import StillFrame

    out = []
    for i, item in enumerate(render_frames(VideoSpec(frames=count, fps=15.0, width=640, height=480, seed=seed))):
        out.append(StillFrame(i, item[0], timestamp=i / 15.0))
    return out


def run(edge, hem, cloud, frames_) -> tuple[float, float, dict]:
    """(edge-loop seconds, total seconds, stats): fresh capture times so latency is per run."""
    import dataclasses

    from mlkit.joint.worker import JointWorker, WorkerConfig

    fs = [dataclasses.replace(f, captured=time.perf_counter()) for f in frames_]
    pulled = []

    def stream():
        for f in fs:
            yield f
            pulled.append(time.perf_counter())

    worker = JointWorker(edge, hem, cloud, WorkerConfig(report_every_s=0))
    t0 = time.perf_counter()
    n = sum(1 for _ in worker.run(stream()))
    total = time.perf_counter() - t0
    assert n == len(fs)
    return pulled[-1] - t0, total, worker.stats.snapshot()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edge-model", default=str(ROOT / "models/little/tflite/int8"))
    p.add_argument("--cloud-model", default=None,
                   help="TFLite folder served as the cloud (default: models/big/tflite/int8, else little fp32).")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--filter", default="CloudOnly", help="Hard-example filter method (default params).")
    p.add_argument("--slowdown", type=float, default=10.0, help="Cloud round trip / edge per-frame time.")
    p.add_argument("--max-in-flight", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="Edge interpreter threads.")
    args = p.parse_args()

    from mlkit.joint.cloud import CloudClient, CloudConfig
    from mlkit.mining import build_filter
    from mlkit.models.predict import open_detector
    from mlkit.serving.server import start_background_server

    cloud_src = Path(args.cloud_model) if args.cloud_model else ROOT / "models/big/tflite/int8"
    if not (cloud_src / "model.tflite").is_file():
        cloud_src = ROOT / "models/little/tflite/fp32"
    edge = open_detector(args.edge_model, num_threads=args.threads)
    print(f"rendering {args.frames} frames (640x480) ...", flush=True)
    fs = frames(args.frames)
    edge.predict([fs[0].image])  # warm up
    edge_loop, _, edge_stats = run(edge, build_filter({"method": "EdgeOnly"}), None, fs)
    edge_fps = len(fs) / edge_loop
    per_frame_ms = 1000 / edge_fps
    delay_ms = args.slowdown * per_frame_ms
    print(f"edge only: {edge_fps:.1f} frames/s ({per_frame_ms:.1f} ms per frame, inference p50 "
          f"{edge_stats['edge_ms']['p50']} ms); cloud delay set to {delay_ms:.0f} ms ({args.slowdown:g}x)")

    with tempfile.TemporaryDirectory(prefix="mlkit-bench-joint-") as tmp:
        repo = Path(tmp) / "repo" / "big" / "1"
        repo.mkdir(parents=True)
        for name in ("model.tflite", "metadata.json"):
            shutil.copy2(cloud_src / name, repo / name)
        server = start_background_server(Path(tmp) / "repo", response_delay_ms=delay_ms, num_threads=1,
                                         log_path=Path(tmp) / "server.log")
        try:
            hem = build_filter({"method": args.filter})
            config = CloudConfig(server.url, "big", timeout_s=max(2.0, 20 * delay_ms / 1000),
                                 max_in_flight=args.max_in_flight, score_threshold=0.05)
            with CloudClient(config) as cloud:
                run(edge, hem, cloud, fs[:20])  # warm the connections and the server
                loop, total, stats = run(edge, hem, cloud, fs)
        finally:
            server.stop()
    joint_fps, joint_total_fps = len(fs) / loop, len(fs) / total
    print()
    print(f"{'mode':<34}{'frames/s':>10}{'vs edge-only':>14}")
    print(f"{'edge only':<34}{edge_fps:>10.1f}{1.0:>14.2f}")
    print(f"{'joint, edge loop':<34}{joint_fps:>10.1f}{joint_fps / edge_fps:>14.2f}   (target >= 0.90)")
    print(f"{'joint, incl. final cloud drain':<34}{joint_total_fps:>10.1f}{joint_total_fps / edge_fps:>14.2f}")
    print()
    print(f"cloud model: {cloud_src.relative_to(ROOT) if cloud_src.is_relative_to(ROOT) else cloud_src}; filter: "
          f"{args.filter}; upload ratio {stats['upload_ratio']:.2f}; cloud answers {stats['cloud_results']}; "
          f"fallbacks {stats['fallback_reasons'] or 'none'}")
    print(f"cloud round trip p50/p95 {stats['cloud_ms']['p50']}/{stats['cloud_ms']['p95']} ms; "
          f"bytes per upload {stats['bytes_per_upload']}")


if __name__ == "__main__":
    main()
