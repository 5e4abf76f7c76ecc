"""perf_analyzer-style benchmark of the mlkit KServe server against the bare TFLite interpreter.

For each model, on the same cores and interpreter threads:
  * bare interpreter: invoke-only and full predict (letterbox + invoke + decode/NMS) per image, batch 1 and 8;
  * served: batching off / on x JSON base64 JPEG (v1) / v2 binary JPEG BYTES / v2 binary UINT8 pixels at the
    model's input size, at concurrency 1, 4, 16, 32:
    throughput, p50, p95, p99, plus the server's queue and compute time from its Prometheus metrics;
  * a soak: 2000 requests at concurrency 32, errors counted and the server's RSS before and after;
  * the target ratios, paired: served/bare at concurrency 16, batched/unbatched at concurrency 16, and the
    server's overhead per request at concurrency 1 (p50 of back-to-back requests minus the bare invoke time,
    from the stdlib's http.client, the leanest client, and from httpx),
    each measured over several short rounds that interleave its terms (this host's speed drifts by 10-50 %
    over minutes, so a ratio of two figures measured minutes apart is mostly drift). Median and range.

The load generator runs on the same cores as the server; by default it uses aiohttp, which costs those cores
about 0.4 ms per request against about 2 ms for httpx (``--load-client httpx``); the paired rounds measure the
big ratio with both.

    python benchmarks/serving.py --models little --threads 2                  # serves models/<name>/tflite/int8
    python benchmarks/serving.py --models big --threads 1 --instances 2       # two single-thread interpreters

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


class BareProbe:
    """The bare interpreter's invoke rate at batch 1 and 8, on the same cores and threads as the server.

    With ``instances`` > 1 the server runs that many interpreters of ``threads`` threads each, so the physical
    limit is the better of two bare layouts, both measured: one interpreter with all ``threads * instances``
    threads, and ``instances`` interpreters invoked in parallel from as many Python threads (the interpreter
    releases the GIL while it runs). ``rates()`` returns the better one per batch size; ``layouts`` keeps both.

    ``rates()`` is called at the start of a model's run and again around each paired round: this host's speed
    drifts by 10-50 % over minutes, so a ratio against a figure measured once says more about the drift than
    about the server.
    """

    def __init__(self, model_path: Path, images: list[np.ndarray], threads: int, instances: int = 1) -> None:
        from mlkit.models.predict import TFLiteDetector

        self.det = TFLiteDetector(model_path, num_threads=threads * instances)
        self.parallel = [TFLiteDetector(model_path, num_threads=threads) for _ in range(instances)] \
            if instances > 1 else []
        self.name = f"1 x {threads * instances} threads"
        self.parallel_name = f"{instances} x {threads} threads"
        self.batches = {b: [self.det.prepare(images[i:i + b])[0] for i in range(0, len(images) - b + 1, b)]
                        for b in (1, 8)}
        self.layouts: dict[str, dict[int, float]] = {}
        self.latency_ms = float("nan")  # one batch-1 invoke on the interpreter that serves a lone request

    @staticmethod
    def _loop(det, prepared: list[np.ndarray], t_end: float) -> int:
        n = 0
        while time.perf_counter() < t_end:
            det.raw(prepared[n % len(prepared)])
            n += 1
        return n

    def rates(self, seconds: float = 1.5) -> dict[int, float]:
        from concurrent.futures import ThreadPoolExecutor

        single, parallel = {}, {}
        for b, prepared in self.batches.items():
            for det in [self.det, *self.parallel]:
                det.raw(prepared[0])  # resize and warm up
            t0 = time.perf_counter()
            n = self._loop(self.det, prepared, t0 + seconds)
            single[b] = n * b / (time.perf_counter() - t0)
            if self.parallel:
                with ThreadPoolExecutor(len(self.parallel)) as pool:
                    t0 = time.perf_counter()
                    t_end = t0 + seconds
                    futures = [pool.submit(self._loop, d, prepared, t_end) for d in self.parallel]
                    counts = [f.result() for f in futures]
                    parallel[b] = sum(counts) * b / (time.perf_counter() - t0)
        self.layouts = {self.name: single, **({self.parallel_name: parallel} if parallel else {})}
        if self.parallel:  # a lone request runs on one instance of `threads` threads
            prepared = self.batches[1]
            t0 = time.perf_counter()
            n = self._loop(self.parallel[0], prepared, t0 + seconds / 2)
            self.latency_ms = 1000 * (time.perf_counter() - t0) / n
        else:
            self.latency_ms = 1000 / single[1]
        return {b: max(layout[b] for layout in self.layouts.values()) for b in single}


def bare(probe: BareProbe, images: list[np.ndarray], seconds: float = 5.0) -> dict:
    """Invoke rates at batch 1 and 8 (best layout, and each layout), and the full predict per image (1 interpreter)."""
    rates = probe.rates(seconds)
    out = {"invoke_b1_img_s": rates[1], "invoke_b8_img_s": rates[8], "layouts": probe.layouts}
    times = []
    t_end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        probe.det.predict([images[i % len(images)]])
        times.append(time.perf_counter() - t)
        i += 1
    out["predict_ms"] = 1000 * statistics.median(times)
    out["predict_img_s"] = 1.0 / statistics.median(times)
    return out


async def load(url: str, bodies: list[tuple[dict, dict, bytes]], path: str, concurrency: int, requests: int,
               client: str = "httpx") -> dict:
    """``requests`` requests from ``concurrency`` workers on one asyncio loop; throughput and latency percentiles.

    ``client="aiohttp"`` sends them with aiohttp (C-accelerated HTTP parsing; KServe already depends on it),
    which costs the shared cores about a quarter of what httpx does per request: the closest Python gets to
    perf_analyzer, whose C++ client costs next to nothing. The load generator runs on the server's cores.
    """
    import json

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    # JSON bodies are serialized once, up front: the generator should spend its CPU on sending, not encoding
    prepared = [(json.dumps(body).encode(), {"content-type": "application/json"}) if body else (raw, headers)
                for body, headers, raw in bodies]

    async def drive(post) -> float:
        nonlocal errors

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                content, headers = prepared[i % len(prepared)]
                t = time.perf_counter()
                try:
                    if await post(content, headers) != 200:
                        errors += 1
                except Exception:  # noqa: BLE001 - any failed request is counted, whatever the client raised
                    errors += 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0

    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:
            async def post(content: bytes, headers: dict) -> int:
                async with s.post(path, data=content, headers=headers) as r:
                    await r.read()
                    return r.status

            wall = await drive(post)
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as hx:
            async def post(content: bytes, headers: dict) -> int:
                return (await hx.post(path, content=content, headers=headers)).status_code

            wall = await drive(post)
    ms = [1000 * x for x in latencies]
    return {"throughput": requests / wall, "p50": percentile(ms, 50), "p95": percentile(ms, 95),
            "p99": percentile(ms, 99), "errors": errors}


def other_client(name: str) -> str:
    """The load generator the paired rounds compare with: aiohttp for httpx, httpx for aiohttp."""
    return "aiohttp" if name == "httpx" else "httpx"


def sequential(url: str, bodies: list[tuple[dict, dict, bytes]], path: str, requests: int,
               client: str = "httpx") -> float:
    """p50 ms of back-to-back requests from a synchronous client, as perf_analyzer measures concurrency 1.

    ``client="stdlib"`` sends them with ``http.client`` on one kept-alive connection: the leanest HTTP/1.1
    client Python has, so the figure is closest to the server's own time (httpx adds about 0.5 ms here).
    The asyncio load generator of the table adds more still (its event loop), which is client cost too.
    """
    import http.client
    import json
    from urllib.parse import urlsplit

    import httpx

    times = []
    if client == "stdlib":
        parts = urlsplit(url)
        lean = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

        def post(body, headers, raw):
            content = json.dumps(body).encode() if body else raw
            lean.request("POST", path, body=content,
                         headers=headers if not body else {"content-type": "application/json"})
            resp = lean.getresponse()
            return resp.status, resp.read()

        close = lean.close
    else:
        hx = httpx.Client(base_url=url, timeout=60.0)

        def post(body, headers, raw):
            r = hx.post(path, json=body) if body else hx.post(path, content=raw, headers=headers)
            return r.status_code, r.content

        close = hx.close
    try:
        for i in range(requests):
            t = time.perf_counter()
            status, text = post(*bodies[i % len(bodies)])
            times.append(time.perf_counter() - t)
            if status != 200:
                raise SystemExit(f"sequential probe: {status} {text[:200]!r}")
    finally:
        close()
    return 1000 * statistics.median(times[requests // 10:])


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
                max_latency_ms: float, rounds: int = 8, instances: int = 1, load_client: str = "aiohttp") -> dict:
    from mlkit.client.http import ServingClient
    from mlkit.serving.server import start_background_server

    versions = sorted((p for p in (repo / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    model_path = versions[-1] / "model.tflite"
    probe = BareProbe(model_path, images, threads, instances)
    result = {"bare": bare(probe, images), "served": {}}
    for batching in ("off", "on"):
        mb = 1 if batching == "off" else max_batch
        with start_background_server(repo, max_batch_size=mb, max_latency_ms=max_latency_ms,
                                     num_threads=threads, instances=instances) as srv:
            for proto in PAYLOADS:
                client = ServingClient(srv.url, name, protocol="v1" if proto.startswith("v1") else "v2",
                                       encoding="raw" if proto == "v2-raw" else "jpeg")
                # raw: the pixels already letterboxed to the model's input, so the server decodes nothing
                bodies = [client.build([im]) for im in (model_sized(images, model_path) if proto == "v2-raw"
                                                        else images)]
                client.predict([images[0]])  # warm up
                for c in CONCURRENCY:
                    before = scrape(srv.url)
                    row = asyncio.run(load(srv.url, bodies, client.infer_path, c, max(requests, 4 * c), load_client))
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
                soak = asyncio.run(load(srv.url, bodies, client.infer_path, 32, 2000, load_client))
                after = rss_mb(srv.proc.pid)
                result["soak"] = {**soak, "rss_before_mb": before, "rss_after_mb": after}
                client.close()
    result["load_client"] = load_client
    result["paired"] = paired(repo, name, model_path, images, probe, threads, max_batch, max_latency_ms, rounds,
                              instances, load_client)
    return result


def paired(repo: Path, name: str, model_path: Path, images: list[np.ndarray], probe: BareProbe, threads: int,
           max_batch: int, max_latency_ms: float, rounds: int, instances: int = 1, load_client: str = "aiohttp"
           ) -> list[dict]:
    """The three target ratios, each measured in ``rounds`` short rounds that interleave their terms.

    One round: the bare interpreter, then c=16 against the unbatched and the batched server (v2 binary JPEG,
    alternating which goes first), c=16 of model-sized pixels against the batched server, sequential c=1
    requests of model-sized pixels, then the bare interpreter again. Each ratio uses the terms of its own round,
    so the host's drift over minutes cancels out.
    """
    from mlkit.client.http import ServingClient
    from mlkit.serving.server import start_background_server

    out = []
    with start_background_server(repo, max_batch_size=1, num_threads=threads, instances=instances) as off, \
            start_background_server(repo, max_batch_size=max_batch, max_latency_ms=max_latency_ms,
                                    num_threads=threads, instances=instances) as on:
        jpeg = ServingClient(off.url, name, protocol="v2")
        raw = ServingClient(off.url, name, protocol="v2", encoding="raw")
        jpeg_bodies = [jpeg.build([im]) for im in images]
        raw_bodies = [raw.build([im]) for im in model_sized(images, model_path)]
        for srv in (off, on):
            asyncio.run(load(srv.url, jpeg_bodies, jpeg.infer_path, 4, 32, load_client))  # warm up
        for i in range(rounds):
            before = probe.rates(1.0)
            n = max(64, int(max(before.values()) * 1.5))  # about 1.5 s of work at the bare rate
            c16 = {}
            for srv in ((off, on) if i % 2 == 0 else (on, off)):
                c16[srv is on] = asyncio.run(load(srv.url, jpeg_bodies, jpeg.infer_path, 16, n, load_client)
                                             )["throughput"]
            # the same batched server fed model-sized pixels: what the ratio is without JPEG decoding
            raw16 = asyncio.run(load(on.url, raw_bodies, raw.infer_path, 16, n, load_client))["throughput"]
            # the same with the other load generator: what its own CPU costs the shared cores
            on16_other = asyncio.run(load(on.url, jpeg_bodies, jpeg.infer_path, 16, n, other_client(load_client))
                                     )["throughput"]
            seq_p50 = sequential(off.url, raw_bodies, raw.infer_path, 200)
            lean_p50 = sequential(off.url, raw_bodies, raw.infer_path, 200, client="stdlib")
            after = probe.rates(1.0)
            bare_rates = {b: (before[b] + after[b]) / 2 for b in before}
            layouts = {k: max(v.values()) for k, v in probe.layouts.items()}  # of the round's second probe
            invoke_ms = (1000 / before[1] + 1000 / after[1]) / 2 if instances == 1 else probe.latency_ms
            out.append({"bare": bare_rates, "layouts": layouts, "on16": c16[True], "off16": c16[False],
                        "c1_p50": seq_p50, "c1_p50_stdlib": lean_p50,
                        "served_over_bare": c16[True] / max(bare_rates.values()),
                        "other_client_over_bare": on16_other / max(bare_rates.values()), "invoke_ms": invoke_ms,
                        "raw_over_bare": raw16 / max(bare_rates.values()),
                        "batched_over_unbatched": c16[True] / c16[False],
                        "overhead_ms": seq_p50 - invoke_ms,
                        "overhead_stdlib_ms": lean_p50 - invoke_ms})
            r = out[-1]
            shown = ", ".join(f"{k} {v:.0f}" for k, v in layouts.items()) if len(layouts) > 1 else ""
            print(f"  {name} round {i + 1}/{rounds}: bare {bare_rates[1]:.0f}/{bare_rates[8]:.0f} img/s (b1/b8) "
                  f"{shown}, "
                  f"c=16 on {r['on16']:.1f} off {r['off16']:.1f} req/s, c=1 p50 {seq_p50:.2f} ms (httpx) "
                  f"{lean_p50:.2f} ms (http.client)", flush=True)
        jpeg.close()
        raw.close()
    return out


def report(name: str, r: dict) -> None:
    b = r["bare"]
    print(f"\n== {name}: bare interpreter ==")
    print(f"invoke batch 1: {b['invoke_b1_img_s']:.1f} img/s   invoke batch 8: {b['invoke_b8_img_s']:.1f} img/s   "
          f"full predict (letterbox+invoke+NMS): {b['predict_ms']:.2f} ms = {b['predict_img_s']:.1f} img/s")
    if len(b["layouts"]) > 1:
        print("  bare layouts (invoke img/s, batch 1 / 8): " + ";  ".join(
            f"{k}: {v[1]:.1f} / {v[8]:.1f}" for k, v in b["layouts"].items()) + "   (the better one is the limit)")
    print(f"\n{'batching':<9} {'payload':<12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'queue ms':>9} {'compute ms':>10} {'batch':>6} {'err':>4}")
    for (batching, proto, c), row in r["served"].items():
        print(f"{batching:<9} {proto:<12} {c:>4} {row['throughput']:8.1f} {row['p50']:8.2f} {row['p95']:8.2f} "
              f"{row['p99']:8.2f} {1000 * row['mlkit_batch_queue_seconds']:9.2f} "
              f"{1000 * row['mlkit_batch_compute_seconds']:10.2f} {row['mlkit_batch_size']:6.2f} {row['errors']:>4}")
    s = r["served"]
    on16, off16 = s[("on", "v2-binary", 16)]["throughput"], s[("off", "v2-binary", 16)]["throughput"]
    v1_on, v1_off = s[("on", "v1-json-b64", 16)]["throughput"], s[("off", "v1-json-b64", 16)]["throughput"]
    print(f"\nratios from the table (one run each, minutes apart): served/bare-invoke at c=16 "
          f"{on16 / max(b['invoke_b1_img_s'], b['invoke_b8_img_s']):.2f}, batched/unbatched at c=16 v2 binary "
          f"{on16 / off16:.2f}, v1 JSON {v1_on / v1_off:.2f}")
    rounds = r["paired"]
    print(f"\ntarget ratios, paired: median [min - max] over {len(rounds)} rounds that interleave their terms")

    def spread(key: str, fmt: str = ".2f") -> str:
        vals = [x[key] for x in rounds]
        return f"{statistics.median(vals):{fmt}} [{min(vals):{fmt}} - {max(vals):{fmt}}]"

    client, other = r["load_client"], other_client(r["load_client"])
    print(f"  served (batching on, v2 binary, c=16) / bare invoke (best of b1, b8): {spread('served_over_bare')}"
          f"   (target >= 0.85 for big; {client} load generator)")
    print(f"  the same with an {other} load generator (its own CPU taken from the same cores): "
          f"{spread('other_client_over_bare')}")
    print(f"  the same fed v2 raw pixels at the model's input (no JPEG to decode): {spread('raw_over_bare')}")
    print(f"  batched / unbatched at c=16 (v2 binary):                             {spread('batched_over_unbatched')}"
          "   (target >= 0.95)")
    print(f"  server overhead at c=1 (v2 raw p50 minus bare invoke), http.client:  {spread('overhead_stdlib_ms')} ms"
          "   (target <= 1.5 ms for little)")
    print(f"  the same with a synchronous httpx client:                            {spread('overhead_ms')} ms")
    print(f"    c=1 p50 {spread('c1_p50_stdlib')} ms (http.client), {spread('c1_p50')} ms (httpx); bare invoke "
          f"{statistics.median(x['invoke_ms'] for x in rounds):.2f} ms (batch 1, on the interpreter a lone request "
          "runs on)")
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
    ap.add_argument("--threads", type=int, default=2, help="interpreter threads per instance (bare and served alike)")
    ap.add_argument("--instances", type=int, default=1,
                    help="interpreters per served model; the bare limit is then the better of 1 x threads*instances "
                         "and instances x threads")
    ap.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-latency-ms", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=8, help="paired rounds for the target ratios")
    ap.add_argument("--load-client", choices=("aiohttp", "httpx"), default="aiohttp",
                    help="HTTP client of the load generator (aiohttp costs the shared cores about a quarter of httpx)")
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
                                    args.max_latency_ms, args.rounds, args.instances, args.load_client)
    for name, r in results.items():
        report(name, r)


if __name__ == "__main__":
    main()
