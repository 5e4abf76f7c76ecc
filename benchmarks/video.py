"""Near-real-time video benchmark: end-to-end FPS and p95 latency against the server's own capacity.

One run, one model, one machine:
  * server capacity: the serving benchmark's load generator (``benchmarks/serving.py``: pre-encoded one-image
    v2 requests at several concurrencies) against the same servers the streams use, on frames of the same
    video; capacity = the best throughput seen;
  * streams: the video read as fast as it decodes, for each batch size in both modes (server batching: one
    frame per request, the server batches up to N; client batching: N frames per request, server batching
    off), each with JPEG encoding, HTTP and result parsing on the client - end-to-end FPS, p95 latency
    (capture to result) and FPS / capacity;
  * the TorchServe example's client: every frame sent the moment it is read, nothing bounded - its send rate
    (what that example prints as "FPS") against the rate at which results actually come back.

    python benchmarks/video.py                      # data/vtest.avi (make video-asset), little int8
    python benchmarks/video.py --quick              # a smoke run: 48 frames, batch sizes 1 and 4

The client and the server share the machine's cores. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import load  # noqa: E402 - the serving benchmark's perf_analyzer-style load generator

ROOT = Path(__file__).resolve().parents[1]


def prepare_video(video: Path | None, frames: int | None, tmp: Path) -> Path:
    """The video to stream: ``video`` (its first ``frames`` frames), else vtest.avi, else a synthetic clip."""
    from mlkit.client.video import head_clip

    video = video or ROOT / "data" / "vtest.avi"
    if not video.is_file():
        from mlkit.data.synthetic.video import VideoSpec, render_video

        print(f"{video} not found (make video-asset); rendering a synthetic clip instead", flush=True)
        video = tmp / "synthetic.avi"
        render_video(video, VideoSpec(frames=frames or 300, fps=15.0, width=768, height=576, seed=7))
        return video
    return head_clip(video, tmp / "clip.avi", frames) if frames else video


def frames_of(video: Path, count: int) -> list:
    from mlkit.client.video import open_source

    with open_source(video) as src:
        return [f.image for _, f in zip(range(count), src, strict=False)]


class Capacity:
    """Best one-image throughput of each server the sweep starts (the hook ``sweep(on_server=...)`` calls)."""

    def __init__(self, model: str, images: list, protocol: str, encoding: str, concurrency: tuple[int, ...],
                 requests: int) -> None:
        self.model, self.images, self.protocol, self.encoding = model, images, protocol, encoding
        self.concurrency, self.requests = concurrency, requests
        self.rows: list[tuple[int, int, dict]] = []  # (server max batch, concurrency, load row)

    def __call__(self, srv, max_batch: int) -> None:
        from mlkit.client.http import ServingClient

        with ServingClient(srv.url, self.model, protocol=self.protocol, encoding=self.encoding) as client:
            bodies = [client.build([im]) for im in self.images]
            path = client.infer_path
        for c in self.concurrency:
            row = asyncio.run(load(srv.url, bodies, path, c, max(self.requests, 4 * c)))
            self.rows.append((max_batch, c, row))
            print(f"  capacity: server max batch {max_batch}, concurrency {c:>2}: {row['throughput']:6.1f} img/s "
                  f"p95 {row['p95']:6.1f} ms errors {row['errors']}", flush=True)

    @property
    def best(self) -> tuple[float, int, int]:
        """(img/s, server max batch, concurrency) of the best error-free row."""
        ok = [(r["throughput"], mb, c) for mb, c, r in self.rows if not r["errors"]]
        if not ok:
            raise SystemExit("every capacity request failed: see the server log")
        return max(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None, help="video file [data/vtest.avi, else synthetic]")
    ap.add_argument("--frames", type=int, default=None, help="stream only the first N frames")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "little" / "tflite" / "int8",
                    help="folder with model.tflite + metadata.json")
    ap.add_argument("--batch-sizes", default=None, help="comma list [1,2,4,8; --quick: 1,4]")
    ap.add_argument("--protocol", choices=["v1", "v2"], default="v2")
    ap.add_argument("--encoding", choices=["jpeg", "raw"], default="jpeg",
                    help="how frames travel, for the capacity requests and the streams alike (raw: v2 only)")
    ap.add_argument("--threads", type=int, default=1, help="interpreter threads in the server")
    ap.add_argument("--max-latency-ms", type=float, default=5.0, help="server batching: longest wait to fill")
    ap.add_argument("--requests", type=int, default=None, help="requests per capacity concurrency level [200]")
    ap.add_argument("--quick", action="store_true", help="smoke run: 48 frames, batch sizes 1 and 4, fewer requests")
    args = ap.parse_args()
    if args.quick:
        args.frames = args.frames or 48
    args.batch_sizes = args.batch_sizes or ("1,4" if args.quick else "1,2,4,8")
    args.requests = args.requests or (48 if args.quick else 200)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    concurrency = (4, 16) if args.quick else (1, 4, 16, 32)
    if not (args.model_dir / "model.tflite").is_file():
        raise SystemExit(f"{args.model_dir}/model.tflite not found: pass --model-dir")

    from mlkit.client.sweep import format_rows, sweep

    with tempfile.TemporaryDirectory(prefix="mlkit-video-bench-") as tmp_name:
        tmp = Path(tmp_name)
        name = "little"
        shutil.copytree(args.model_dir, tmp / "repo" / name / "1")
        video = prepare_video(args.video, args.frames, tmp)
        capacity = Capacity(name, frames_of(video, 16), args.protocol, args.encoding, concurrency, args.requests)
        print(f"streaming {video.name} with {name} ({args.model_dir}), protocol {args.protocol} ({args.encoding}), "
              f"server threads {args.threads}", flush=True)
        common = dict(protocol=args.protocol, encoding=args.encoding, max_latency_ms=args.max_latency_ms,
                      threads=args.threads)
        rows = sweep(video, tmp / "repo", name, batch_sizes=batch_sizes, modes=("server", "client"),
                     on_server=capacity, **common)
        ts = sweep(video, tmp / "repo", name, batch_sizes=(4,), modes=("unbounded",), timeout=300.0, **common)[0]

    cap, cap_batch, cap_c = capacity.best
    print(f"\nserver capacity (best of the serving benchmark's load, same run): {cap:.1f} img/s "
          f"(server max batch {cap_batch}, concurrency {cap_c})\n")
    print(format_rows(rows, cap))
    best = max(rows, key=lambda r: r.fps)
    print(f"\nbest end-to-end: {best.fps:.1f} FPS ({best.mode} batching, batch {best.batch_size}) = "
          f"{best.fps / cap:.2f} x capacity (target >= 0.85)")
    print("\nTorchServe-style client (every frame sent as soon as read, nothing bounded; server max batch 4):")
    print(f"  send rate {ts.send_rate:.1f} frames/s (what that example prints as FPS) vs completed {ts.fps:.1f} "
          f"frames/s ({ts.send_rate / ts.fps:.1f} x); latency p50 {ts.p50_ms:.0f} p95 {ts.p95_ms:.0f} ms")
    bounded = next((r for r in rows if r.mode == "server" and r.batch_size == 4), None)
    if bounded is not None:
        print(f"  bounded server batching, batch 4: {bounded.fps:.1f} FPS, p95 {bounded.p95_ms:.0f} ms")


if __name__ == "__main__":
    main()
