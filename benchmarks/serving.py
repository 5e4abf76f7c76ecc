"""perf_analyzer-style benchmark of the mlkit KServe server against the bare TFLite interpreter.

For each model, on the same cores and interpreter threads:
  * bare interpreter: invoke-only and full predict (letterbox + invoke + decode/NMS) per image, batch 1 and 8;
  * served: batching off / on x JSON base64 JPEG (v1) / v2 binary JPEG BYTES / v2 binary UINT8 pixels at the
    model's input size, at concurrency 1, 4, 16, 32:
    throughput, p50, p95, p99, plus the server's queue and compute time from its Prometheus metrics;
  * ratios: served/bare at concurrency 16, batched/unbatched at concurrency 16, and the server's overhead per
    request at concurrency 1 (latency minus the bare predict time);
  * a soak: 2000 requests at concurrency 32, errors counted and the server's RSS before and after.

    python benchmarks/serving.py --models little,big --threads 2     # serves models/<name>/tflite/int8

Figures are printed, never asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 4, 16, 32)
# v1 JSON with base64 JPEG; v2 binary BYTES tensor of JPEGs; v2 binary UINT8 tensor at the model's input size
PAYLOADS = ("v1-json-b64", "v2-binary", "v2-raw")


def model_sized(images: list[np.ndarray], model_path: Path) -> list[np.ndarray]:
    """The images letterboxed to the model's input, as a client that prepares its own tensors sends them."""
    from mlkit.models.postprocess import letterbox
    from mlkit.models.predict import DetectorMeta

    meta = DetectorMeta.load(model_path.parent / "metadata.json")
    return [letterbox(im, meta.input_width, meta.input_height)[0] for im in images]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_images(count: int = 16) -> list[np.ndarray]:
    from mlkit.data.synthetic.scene import render_scene
    from mlkit.data.synthetic.sites import SITES

    return [render_scene(np.random.default_rng([99, i]), SITES["AB"[i % 2]])[0] for i in range(count)]


def bare(model_path: Path, images: list[np.ndarray], threads: int, seconds: float = 5.0) -> dict:
    from mlkit.models.predict import TFLiteDetector

    det = TFLiteDetector(model_path, num_threads=threads)
    out = {}
    for batch in (1, 8):
        prepared = [det._prepare(images[i:i + batch])[0] for i in range(0, len(images) - batch + 1, batch)]
        det.raw(prepared[0])  # warm up (and resize)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            det.raw(prepared[n % len(prepared)])
            n += 1
        out[f"invoke_b{batch}_img_s"] = n * batch / (time.perf_counter() - t0)
    times = []
    t_end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        det.predict([images[i % len(images)]])
        times.append(time.perf_counter() - t)
        i += 1
    out["predict_ms"] = 1000 * statistics.median(times)
    out["predict_img_s"] = 1.0 / statistics.median(times)
    return out


async def load(url: str, bodies: list[tuple[dict, dict, bytes]], path: str, concurrency: int, requests: int
               ) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                body, headers, raw = bodies[i % len(bodies)]
                t = time.perf_counter()
                try:
                    r = await (client.post(path, json=body) if body else
                               client.post(path, content=raw, headers=headers))
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = [1000 * x for x in latencies]
    return {"throughput": requests / wall, "p50": percentile(ms, 50), "p95": percentile(ms, 95),
            "p99": percentile(ms, 99), "errors": errors}


HISTOGRAMS = ("mlkit_batch_queue_seconds", "mlkit_batch_compute_seconds", "mlkit_batch_size")


def scrape(url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each batching histogram from the server's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for name in HISTOGRAMS:
        s = sum(float(v) for v in re.findall(rf"^{name}_sum{{[^}}]*}} ([0-9.e+-]+)$", text, re.M))
        c = sum(float(v) for v in re.findall(rf"^{name}_count{{[^}}]*}} ([0-9.e+-]+)$", text, re.M))
        out[name] = (s, c)
    return out


def metric_means(before: dict, after: dict) -> dict:
    """Mean per batch over the requests between two scrapes (the histograms are cumulative)."""
    out = {}
    for name in HISTOGRAMS:
        ds, dc = after[name][0] - before[name][0], after[name][1] - before[name][1]
        out[name] = ds / dc if dc else float("nan")
    return out


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def bench_model(repo: Path, name: str, images: list[np.ndarray], threads: int, requests: int, max_batch: int,
                max_latency_ms: float) -> dict:
    from mlkit.client.http import ServingClient
    from mlkit.serving.server import start_background_server

    versions = sorted((p for p in (repo / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    model_path = versions[-1] / "model.tflite"
    result = {"bare": bare(model_path, images, threads), "served": {}}
    for batching in ("off", "on"):
        mb = 1 if batching == "off" else max_batch
        with start_background_server(repo, max_batch_size=mb, max_latency_ms=max_latency_ms,
                                     num_threads=threads) as srv:
            for proto in PAYLOADS:
                client = ServingClient(srv.url, name, protocol="v1" if proto.startswith("v1") else "v2",
                                       encoding="raw" if proto == "v2-raw" else "jpeg")
                # raw: the pixels already letterboxed to the model's input, so the server decodes nothing
                bodies = [client.build([im]) for im in (model_sized(images, model_path) if proto == "v2-raw"
                                                        else images)]
                client.predict([images[0]])  # warm up
                for c in CONCURRENCY:
                    before = scrape(srv.url)
                    row = asyncio.run(load(srv.url, bodies, client.infer_path, c, max(requests, 4 * c)))
                    row.update(metric_means(before, scrape(srv.url)))
                    result["served"][(batching, proto, c)] = row
                    print(f"  {name} batching={batching:<3} {proto:<12} c={c:<3} {row['throughput']:8.1f} req/s "
                          f"p50 {row['p50']:7.1f} p95 {row['p95']:7.1f} p99 {row['p99']:7.1f} ms "
                          f"errors {row['errors']}", flush=True)
                client.close()
            if batching == "on":
                client = ServingClient(srv.url, name, protocol="v2")
                bodies = [client.build([im]) for im in images]
                before = rss_mb(srv.proc.pid)
                soak = asyncio.run(load(srv.url, bodies, client.infer_path, 32, 2000))
                after = rss_mb(srv.proc.pid)
                result["soak"] = {**soak, "rss_before_mb": before, "rss_after_mb": after}
                client.close()
    return result


def report(name: str, r: dict) -> None:
    b = r["bare"]
    print(f"\n== {name}: bare interpreter ==")
    print(f"invoke batch 1: {b['invoke_b1_img_s']:.1f} img/s   invoke batch 8: {b['invoke_b8_img_s']:.1f} img/s   "
          f"full predict (letterbox+invoke+NMS): {b['predict_ms']:.2f} ms = {b['predict_img_s']:.1f} img/s")
    print(f"\n{'batching':<9} {'payload':<12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'queue ms':>9} {'compute ms':>10} {'batch':>6} {'err':>4}")
    for (batching, proto, c), row in r["served"].items():
        print(f"{batching:<9} {proto:<12} {c:>4} {row['throughput']:8.1f} {row['p50']:8.2f} {row['p95']:8.2f} "
              f"{row['p99']:8.2f} {1000 * row['mlkit_batch_queue_seconds']:9.2f} "
              f"{1000 * row['mlkit_batch_compute_seconds']:10.2f} {row['mlkit_batch_size']:6.2f} {row['errors']:>4}")
    best_bare = max(b["invoke_b1_img_s"], b["invoke_b8_img_s"])
    s = r["served"]
    on16, off16 = s[("on", "v2-binary", 16)]["throughput"], s[("off", "v2-binary", 16)]["throughput"]
    print("\nratios")
    print(f"  served/bare at c=16 (v2 binary, batching on):  {on16 / best_bare:.2f}  ({on16:.1f} / {best_bare:.1f})")
    print(f"  served/bare-predict at c=16:                    {on16 / b['predict_img_s']:.2f}")
    print(f"  batched/unbatched at c=16 (v2 binary):          {on16 / off16:.2f}")
    print(f"  batched/unbatched at c=16 (v1 JSON base64):     "
          f"{s[('on', 'v1-json-b64', 16)]['throughput'] / s[('off', 'v1-json-b64', 16)]['throughput']:.2f}")
    invoke_ms = 1000 / b["invoke_b1_img_s"]
    for proto in ("v2-raw", "v2-binary"):
        p50 = s[("off", proto, 1)]["p50"]
        print(f"  server overhead per request at c=1, {proto:<9} (p50 {p50:.2f} ms minus bare invoke "
              f"{invoke_ms:.2f} ms): {p50 - invoke_ms:.2f} ms   (minus bare predict: {p50 - b['predict_ms']:.2f} ms)")
    soak = r.get("soak")
    if soak:
        print(f"  soak 2000 requests at c=32: {soak['errors']} errors, RSS {soak['rss_before_mb']:.0f} MB -> "
              f"{soak['rss_after_mb']:.0f} MB")


def repo_from_models(names: list[str], variant: str) -> Path:
    """A temporary repository ``<name>/1/`` holding ``models/<name>/tflite/<variant>``."""
    import shutil
    import tempfile

    root = Path(__file__).resolve().parents[1] / "models"
    repo = Path(tempfile.mkdtemp(prefix="mlkit-bench-repo-"))
    for name in names:
        src = root / name / "tflite" / variant
        if not (src / "model.tflite").is_file():
            raise SystemExit(f"{src}/model.tflite not found: train and export the {name} model first")
        shutil.copytree(src, repo / name / "1")
    return repo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=None,
                    help="model repository folder (default: one built from models/<name>/tflite/<variant>)")
    ap.add_argument("--variant", default="int8", help="TFLite variant taken from models/ when --repo is not given")
    ap.add_argument("--models", default="little,big")
    ap.add_argument("--threads", type=int, default=2, help="interpreter threads (bare and served alike)")
    ap.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-latency-ms", type=float, default=2.0)
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.repo is None:
        args.repo = repo_from_models(names, args.variant)
        print(f"serving models/<name>/tflite/{args.variant} from {args.repo}")
    if not args.repo.is_dir():
        raise SystemExit(f"{args.repo} not found: pass --repo <model repository> (<name>/<version>/model.tflite)")
    images = test_images()
    results = {}
    for name in names:
        print(f"benchmarking {name} ...", flush=True)
        results[name] = bench_model(args.repo, name, images, args.threads, args.requests, args.max_batch_size,
                                    args.max_latency_ms)
    for name, r in results.items():
        report(name, r)


if __name__ == "__main__":
    main()
