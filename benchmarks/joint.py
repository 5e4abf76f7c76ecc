"""Does the edge wait for the cloud? Edge frame rate with a slow cloud against edge-only, in one run.

The cloud's answers are held by real added latency (the server's --response-delay-ms) so that a round trip
is about 10x the edge's per-frame time. The edge worker runs the little TFLite model in process on
pre-decoded frames of the synthetic video; the cloud runs the big model in a served process.

Edge and cloud are separate machines in a deployment. Here they share 2 cores, so by default the edge (this
process) is pinned to CPU 0 and the cloud server to CPU 1 (``--no-pin`` to share): otherwise the cloud's
compute would be stolen from the edge and the figure would measure CPU sharing, not waiting. Edge-only is
measured pinned the same way. The edge's own upload work (JPEG encoding, HTTP) stays on the edge's core.

    python benchmarks/joint.py                       # CloudOnly (every frame) and the tuned Uncertainty filter
    python benchmarks/joint.py --filters IBT,Uncertainty --frames 600

Each filter runs three times: uploading frames as captured; shrunk to the cloud model's input size
(``upload_max_shape``), which the cloud resizes to anyway; and shrunk and merged, up to ``--upload-batch`` frames
per request within ``--upload-wait-ms`` (``upload_batch``; ``--upload-batch 1`` skips that row). A control row
sends the first filter's model-sized uploads to a second cloud without the added delay: if the edge never waits for
the cloud, its frame rate does not depend on the cloud's latency, and what it loses is the upload work itself.
A last row takes the network out (``--no-offline`` skips it): the first filter's hard frames are shrunk and
encoded exactly as the real client does, and answered at once with the cloud model's answer for that frame,
computed in process before the runs. It is the frame rate that the upload's own pixel work leaves, in this run.

``--waiting`` measures only whether the edge waits: pairs of runs with the same uploads (use a content-blind filter,
``--filters Keyframe --keyframe-ratio 0.15``) against the delayed cloud and the undelayed one, in alternating order,
and prints the median ratio of their edge frame rates with its range, beside the edge CPU per upload of each (joint
run minus an edge-only run of the same frames in the same round):

    python benchmarks/joint.py --waiting --filters Keyframe --keyframe-ratio 0.15 --reuse track --rounds 21

A filter runs at the threshold the joint evaluation tuned (``--tuned``, the report of ``mlkit joint evaluate``)
when that report has it, else at its defaults. Printed: edge-only frames/s, joint frames/s of the edge loop and
including the final drain, their ratio (target >= 0.90), the upload ratio, fallbacks by reason, cloud latency.
Each ratio is the median over ``--rounds`` pairs of an edge-only run and a joint run of the same frames, one
right after the other: this host's speed drifts over minutes. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def run(edge, hem, cloud, frames_, reuse: str = "none") -> tuple[float, float, dict]:
    """(edge-loop seconds, total seconds, stats): fresh capture times so latency is per run.

    ``stats["cpu_ms"]`` is the CPU this process used meanwhile, every thread counted (the edge loop, and the
    upload client's encoding and HTTP wherever they ran).
    """
    import dataclasses

    from mlkit.joint.worker import JointWorker, WorkerConfig

    fs = [dataclasses.replace(f, captured=time.perf_counter()) for f in frames_]
    pulled = []

    def stream():
        for f in fs:
            yield f
            pulled.append(time.perf_counter())

    worker = JointWorker(edge, hem, cloud, WorkerConfig(report_every_s=0, reuse=reuse))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    n = sum(1 for _ in worker.run(stream()))
    total = time.perf_counter() - t0
    assert n == len(fs)
    return pulled[-1] - t0, total, {**worker.stats.snapshot(), "cpu_ms": (time.process_time() - cpu0) * 1000}


class OfflineCloud:
    """A cloud without the network: ``submit`` shrinks and encodes like ``CloudClient`` and answers at once with the
    cloud model's precomputed answer for that frame (keyed by the frame's pixel array)."""

    def __init__(self, config, answers: dict) -> None:
        self.config, self._answers = config, answers

    def submit(self, frame, jpeg_quality: int = 85):
        import concurrent.futures

        from mlkit.joint.cloud import CloudOutcome, encode_upload

        jpeg, _ = encode_upload(frame, jpeg_quality, self.config.upload_max_hw)
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(CloudOutcome(self._answers[id(frame)], None, 0.0, "", len(jpeg)))
        return done

    def __enter__(self) -> OfflineCloud:
        return self

    def __exit__(self, *exc) -> None:
        pass


def upload_work_ms(frames_, shape) -> tuple[float, float]:
    """(shrink, JPEG encode) ms per frame, measured alone on this thread: the least an upload costs the edge."""
    from mlkit.imaging import encode_jpeg
    from mlkit.joint.cloud import shrink_to_fit

    images = [f.image for f in frames_[:30]]
    best = [float("inf"), float("inf")]
    for _ in range(3):
        t0 = time.perf_counter()
        small = [shrink_to_fit(im, *shape) for im in images]
        t1 = time.perf_counter()
        for im in small:
            encode_jpeg(im, 85)
        t2 = time.perf_counter()
        best = [min(best[0], (t1 - t0) / len(images)), min(best[1], (t2 - t1) / len(images))]
    return best[0] * 1000, best[1] * 1000


def waiting(args, edge, fs, servers, model_hw, timeout_s: float, delay_ms: float) -> None:
    """Pairs of joint runs with the same uploads, against the delayed and the undelayed cloud, in alternating order."""
    from mlkit.joint.cloud import CloudClient, CloudConfig
    from mlkit.mining import build_filter

    def config(url: str) -> CloudConfig:
        return CloudConfig(url, "big", timeout_s=timeout_s, max_in_flight=args.max_in_flight, score_threshold=0.05,
                           upload_max_hw=model_hw)

    med = statistics.median
    edge_only = build_filter({"method": "EdgeOnly"})
    print(f"\n{'filter':<34}{'slow / fast cloud, edge frame rate':>36}{'CPU per upload, slow / fast':>30}"
          f"{'per frame':>11}{'uploads':>9}{'round trip p50 slow / fast':>30}")
    for method in (m.strip() for m in args.filters.split(",") if m.strip()):
        spec, how = tuned_spec(method, args.tuned)
        if method == "Keyframe" and args.keyframe_ratio is not None:
            spec, how = {"method": method, "param": {"keyframe_ratio": args.keyframe_ratio}}, \
                f"keyframe_ratio={args.keyframe_ratio:g}"
        ratios, cpu, per_frame = [], {"slow": [], "fast": []}, []
        last = {}
        with CloudClient(config(servers[0].url)) as slow, CloudClient(config(servers[1].url)) as fast:
            clouds = {"slow": slow, "fast": fast}
            for name in clouds:  # warm the connections and the servers
                run(edge, build_filter(spec), clouds[name], fs[:20], args.reuse)
            for r in range(args.rounds):
                alone, _, alone_stats = run(edge, edge_only, None, fs)
                loops = {}
                for name in (("slow", "fast") if r % 2 else ("fast", "slow")):
                    loop, _, stats = run(edge, build_filter(spec), clouds[name], fs, args.reuse)
                    loops[name], last[name] = loop, stats
                    sent = stats["hard_frames"] - stats["fallback_reasons"].get("busy", 0)
                    if sent:
                        cpu[name].append((stats["cpu_ms"] - alone_stats["cpu_ms"]) / sent)
                    per_frame.append((stats["cpu_ms"] - alone_stats["cpu_ms"]) / len(fs))
                ratios.append(loops["fast"] / loops["slow"])  # frame rate slow / fast
        if last["slow"]["hard_frames"] != last["fast"]["hard_frames"]:
            print(f"  (the two runs uploaded {last['slow']['hard_frames']} and {last['fast']['hard_frames']} frames: "
                  f"not the same uploads)")
        span = f"{med(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
        cpus = f"{med(cpu['slow']):.2f} / {med(cpu['fast']):.2f} ms" if cpu["slow"] and cpu["fast"] else "-"
        trips = f"{last['slow']['cloud_ms']['p50']} / {last['fast']['cloud_ms']['p50']} ms"
        frame_cpu = f"{med(per_frame):.2f} ms"
        print(f"{method + ' [' + how + ']':<34}{span:>36}{cpus:>30}{frame_cpu:>11}{last['slow']['upload_ratio']:>9.2f}"
              f"{trips:>30}")
    print("(CPU: the joint run's, every thread, minus an edge-only run's of the same frames; per upload and per frame)")
    print(f"({args.rounds} pairs, order alternating; cloud delay {delay_ms:.0f} ms = {args.slowdown:g}x the edge's "
          f"frame; reuse: {args.reuse}; target: median >= 0.97)")


def tuned_spec(method: str, report: Path) -> tuple[dict, str]:
    """The filter spec at the threshold ``mlkit joint evaluate`` chose, else the method's defaults."""
    import json

    if report.is_file():
        for f in json.loads(report.read_text())["filters"]:
            if f["spec"]["method"] == method and f.get("chosen_value") is not None:
                spec = {"method": method, "param": {**f["spec"]["param"], f["sweep_param"]: f["chosen_value"]}}
                return spec, f"{f['sweep_param']}={f['chosen_value']:g} (tuned)"
    return {"method": method}, "defaults"


def main() -> None:
    import os

    from mlkit.joint.reuse import REUSE_RULES  # numpy only: no interpreter threads before the pinning below

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edge-model", default=str(ROOT / "models/little/tflite/int8"))
    p.add_argument("--cloud-model", default=None,
                   help="TFLite folder served as the cloud (default: models/big/tflite/int8, else little fp32).")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--filters", default="CloudOnly,Uncertainty", help="Hard-example filter methods, comma list.")
    p.add_argument("--tuned", type=Path, default=ROOT / "runs/joint-eval/joint_evaluation.json",
                   help="mlkit joint evaluate's report: filters run at its chosen thresholds.")
    p.add_argument("--slowdown", type=float, default=10.0, help="Cloud round trip / edge per-frame time.")
    p.add_argument("--max-in-flight", type=int, default=16)
    p.add_argument("--rounds", type=int, default=9,
                   help="edge-only / joint pairs per filter and upload mode (one pair varies by +-20%% on this host)")
    p.add_argument("--upload-batch", type=int, default=8,
                   help="Frames per request in the batched-upload rows (1: no such rows).")
    p.add_argument("--upload-wait-ms", type=float, default=80.0,
                   help="How long the batched-upload rows let the first hard frame wait for others.")
    p.add_argument("--threads", type=int, default=1, help="Edge interpreter threads.")
    p.add_argument("--reuse", choices=REUSE_RULES, default="none",
                   help="The worker's reuse rule: with interpolate, results wait for the next upload's answer "
                        "(the edge loop does not).")
    p.add_argument("--waiting", action="store_true",
                   help="Only compare the delayed cloud with the undelayed one, pair by pair, with the same uploads.")
    p.add_argument("--keyframe-ratio", type=float, default=None, help="The Keyframe filter's upload ratio.")
    p.add_argument("--no-pin", action="store_true", help="Do not pin the edge to CPU 0 and the cloud to CPU 1.")
    p.add_argument("--no-offline", dest="offline", action="store_false",
                   help="Skip the row without the network: the first filter's model-sized uploads encoded as the "
                        "client does and answered at once from the cloud model run in process beforehand.")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="Skip the control row: the first filter's model-sized uploads to a second cloud without the "
                        "added delay (if the edge never waits, its frame rate does not depend on the delay).")
    args = p.parse_args()

    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if pin:
        edge_cpu, cloud_cpu = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, {edge_cpu})  # before any interpreter starts its threads

    from mlkit.joint.cloud import CloudClient, CloudConfig
    from mlkit.mining import build_filter
    from mlkit.models.predict import DetectorMeta, open_detector
    from mlkit.serving.server import start_background_server

    cloud_src = Path(args.cloud_model) if args.cloud_model else ROOT / "models/big/tflite/int8"
    if not (cloud_src / "model.tflite").is_file():
        cloud_src = ROOT / "models/little/tflite/fp32"
    edge = open_detector(args.edge_model, num_threads=args.threads)
    print(f"rendering {args.frames} frames (640x480) ...", flush=True)
    fs = frames(args.frames)
    edge.predict([fs[0].image])  # warm up
    edge_only = build_filter({"method": "EdgeOnly"})
    edge_loop, _, edge_stats = run(edge, edge_only, None, fs)
    edge_fps = len(fs) / edge_loop
    per_frame_ms = 1000 / edge_fps
    delay_ms = args.slowdown * per_frame_ms
    where = f"edge on CPU {edge_cpu}, cloud on CPU {cloud_cpu}" if pin else "edge and cloud share every CPU"
    print(f"edge only: {edge_fps:.1f} frames/s ({per_frame_ms:.1f} ms per frame, inference p50 "
          f"{edge_stats['edge_ms']['p50']} ms); cloud delay set to {delay_ms:.0f} ms ({args.slowdown:g}x); {where}")

    def pairs(hem, url: str, shape, timeout_s: float, batch: int = 1,
              answers: dict | None = None) -> tuple[list, list, list, dict]:
        """``args.rounds`` edge-only / joint pairs against the server at ``url`` (``answers``: offline, no server)."""
        config = CloudConfig(url, "big", timeout_s=timeout_s, max_in_flight=args.max_in_flight, score_threshold=0.05,
                             upload_max_hw=shape, upload_batch=batch, upload_wait_ms=args.upload_wait_ms)
        loop_ratios, total_ratios, fps, per_upload = [], [], [], []
        with CloudClient(config) if answers is None else OfflineCloud(config, answers) as cloud:
            run(edge, hem, cloud, fs[:20], args.reuse)  # warm the connections and the server
            for _ in range(args.rounds):  # edge-only next to each joint run: the host drifts
                alone, _, alone_stats = run(edge, edge_only, None, fs)
                loop, total, stats = run(edge, hem, cloud, fs, args.reuse)
                loop_ratios.append(alone / loop)
                total_ratios.append(alone / total)
                fps.append(len(fs) / loop)
                sent = stats["hard_frames"] - stats["fallback_reasons"].get("busy", 0)
                if sent:
                    per_upload.append((stats["cpu_ms"] - alone_stats["cpu_ms"]) / sent)
        stats["cpu_per_upload_ms"] = statistics.median(per_upload) if per_upload else None
        return fps, loop_ratios, total_ratios, stats

    def cloud_answers() -> dict:
        """The cloud model's answer for every frame, keyed by its pixel array, run in process before timing."""
        if not precomputed:
            cloud_model = open_detector(cloud_src, num_threads=1)
            precomputed.update({id(f.image): cloud_model.predict([f.image], score_threshold=0.05)[0] for f in fs})
        return precomputed

    precomputed: dict = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlkit-bench-joint-") as tmp:
        repo = Path(tmp) / "repo" / "big" / "1"
        repo.mkdir(parents=True)
        for name in ("model.tflite", "metadata.json"):
            shutil.copy2(cloud_src / name, repo / name)
        cpus = {cloud_cpu} if pin else None
        servers = [start_background_server(Path(tmp) / "repo", response_delay_ms=delay_ms, num_threads=1,
                                           log_path=Path(tmp) / "server.log", cpus=cpus)]
        if args.control or args.waiting:
            servers.append(start_background_server(Path(tmp) / "repo", num_threads=1,
                                                   log_path=Path(tmp) / "server-undelayed.log", cpus=cpus))
        try:
            cloud_meta = DetectorMeta.load(cloud_src / "metadata.json")
            model_hw = (cloud_meta.input_height, cloud_meta.input_width)
            uploads = {"captured": (None, 1), "model-sized": (model_hw, 1)}
            if args.upload_batch > 1:
                uploads[f"model-sized, batched ({args.upload_batch} / {args.upload_wait_ms:g} ms)"] = (
                    model_hw, args.upload_batch)
            timeout_s = max(2.0, 20 * delay_ms / 1000)
            if args.waiting:
                waiting(args, edge, fs, servers, model_hw, timeout_s, delay_ms)
                return
            for i, method in enumerate(m.strip() for m in args.filters.split(",") if m.strip()):
                spec, how = tuned_spec(method, args.tuned)
                hem = build_filter(spec)
                for upload, (shape, batch) in uploads.items():
                    rows.append((f"{method}, {upload} upload", how,
                                 *pairs(hem, servers[0].url, shape, timeout_s, batch)))
                if args.control and i == 0:  # the same uploads without the added delay: does latency cost frames?
                    rows.append((f"{method}, model-sized upload, no added delay", how,
                                 *pairs(hem, servers[1].url, model_hw, timeout_s)))
                if args.offline and i == 0:  # the same uploads without any network: what the pixel work leaves
                    rows.append((f"{method}, model-sized upload, no network (encode only)", how,
                                 *pairs(hem, servers[0].url, model_hw, timeout_s, answers=cloud_answers())))
        finally:
            for server in servers:
                server.stop()
    print()
    med = statistics.median
    print(f"{'mode':<74}{'frames/s':>10}{'vs edge-only, median [range]':>32}{'uploads':>9}")
    print(f"{'edge only':<74}{edge_fps:>10.1f}{'1.00':>32}{0.0:>9.2f}")
    for method, _how, fps, loop_r, total_r, stats in rows:
        span = f"{med(loop_r):.2f} [{min(loop_r):.2f}-{max(loop_r):.2f}]"
        print(f"{method + ', edge loop':<74}{med(fps):>10.1f}{span:>32}{stats['upload_ratio']:>9.2f}"
              "   (target >= 0.90)")
        span = f"{med(total_r):.2f} [{min(total_r):.2f}-{max(total_r):.2f}]"
        print(f"{method + ', incl. final cloud drain':<74}{'':>10}{span:>32}")
    print(f"({args.rounds} rounds; each joint run is compared with an edge-only run of the same frames just before it)")
    print()
    shrink_ms, encode_ms = upload_work_ms(fs, model_hw)
    print(f"upload work measured alone (this core, hot caches): shrink {shrink_ms:.2f} ms + JPEG {encode_ms:.2f} ms "
          f"per uploaded frame, against {per_frame_ms:.2f} ms of edge work per frame")
    if rows:
        ratio = rows[0][-1]["upload_ratio"]
        cap = per_frame_ms / (per_frame_ms + ratio * (shrink_ms + encode_ms))
        print(f"at {ratio:.0%} uploads that work alone caps the edge-loop ratio at {cap:.2f}, before any HTTP or "
              f"thread hand-off")
    cloud_name = cloud_src.relative_to(ROOT) if cloud_src.is_relative_to(ROOT) else cloud_src
    print(f"cloud model: {cloud_name}; reuse: {args.reuse}")
    for method, how, _, _, _, stats in rows:
        print(f"{method} [{how}]: cloud answers {stats['cloud_results']}, fallbacks "
              f"{stats['fallback_reasons'] or 'none'}, round trip p50/p95 {stats['cloud_ms']['p50']}/"
              f"{stats['cloud_ms']['p95']} ms, bytes per upload {stats['bytes_per_upload']}, edge CPU per upload "
              f"(joint run minus edge-only run, all threads, median) {stats['cpu_per_upload_ms'] or 0:.2f} ms")


if __name__ == "__main__":
    main()
