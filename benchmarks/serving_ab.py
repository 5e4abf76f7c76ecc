"""This checkout's model server against another revision's, side by side: c=16 throughput and c=1 latency.

Both servers run at once from the same venv (the base revision from a git worktree, put first on PYTHONPATH),
with the same model, flags and payloads. Each round measures both, in alternating order, for every server
configuration and payload; ratios are per round (this host drifts by tens of percent over minutes, so only
figures measured seconds apart compare), then the median and range over rounds.

    python benchmarks/serving_ab.py --base HEAD~1                    # big int8, batching off and on
    python benchmarks/serving_ab.py --base v0.3 --model little --rounds 5

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from serving import load, model_sized, repo_from_models, sequential, test_images

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ("v2-raw", "v2-jpeg")  # model-sized UINT8 pixels (no decoding); JPEG images (decoded and letterboxed)


def worktree(rev: str) -> tuple[Path, str]:
    """A detached worktree of ``rev`` (created once, reused) and its commit hash."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"mlkit-ab-{sha[:12]}"
    if not (path / "src" / "mlkit").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), sha], check=True,
                       capture_output=True)
    return path, sha


class Server:
    """``python -m mlkit.serving`` from ``src`` (a checkout's src folder) on free ports."""

    def __init__(self, label: str, src: Path, repo: Path, args: list[str], log: Path) -> None:
        from mlkit.serving.server import free_port, wait_ready

        self.label, self.port = label, free_port()
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "mlkit.serving", "--host", "127.0.0.1", "--http-port", str(self.port),
               "--grpc-port", str(free_port()), "--model-dir", str(repo), *args]
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.proc, self.url, log, 60, f"the {label} server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def bodies(payload: str, model: str, model_dir: Path, images) -> list[tuple[dict, dict, bytes]]:
    from mlkit.client.http import ServingClient

    encoding = "raw" if payload == "v2-raw" else "jpeg"
    pics = model_sized(images, model_dir / "model.tflite") if encoding == "raw" else images
    with ServingClient("http://unused", model, encoding=encoding) as c:  # only builds the requests
        return [c.build([im]) for im in pics]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="HEAD~1", help="Revision to compare with (git rev).")
    p.add_argument("--model", default="big", choices=("little", "big"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,8", help="--max-batch-size values to compare (comma separated).")
    p.add_argument("--requests", type=int, default=240, help="Requests per c=16 measurement.")
    p.add_argument("--sequential", type=int, default=80, help="Requests per c=1 measurement.")
    args = p.parse_args()

    base_path, base_sha = worktree(args.base)
    head_sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                           text=True).stdout.strip()
    repo = repo_from_models([args.model], "int8")
    images = test_images(16)
    model_dir = repo / args.model / "1"
    note = " (+ uncommitted src)" if dirty else ""
    print(f"base {args.base} = {base_sha[:10]}  vs  this checkout {head_sha[:10]}{note}")
    print(f"model {args.model} int8, threads {args.threads}, {args.rounds} rounds; c=16: {args.requests} requests "
          f"(aiohttp), c=1: p50 of {args.sequential} back-to-back requests (http.client)\n")
    logs = Path(tempfile.mkdtemp(prefix="mlkit-ab-logs-"))
    results: dict[tuple, list[float]] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        flags = ["--max-batch-size", str(batch), "--threads", str(args.threads)]
        servers = [Server("base", base_path / "src", repo, flags, logs / f"base-{batch}.log"),
                   Server("head", ROOT / "src", repo, flags, logs / f"head-{batch}.log")]
        try:
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for payload in PAYLOADS:
                    reqs = bodies(payload, args.model, model_dir, images)
                    path = f"/v2/models/{args.model}/infer"
                    for srv in order:
                        sequential(srv.url, reqs, path, 10, client="stdlib")  # warm
                        c16 = asyncio.run(load(srv.url, reqs, path, 16, args.requests, client="aiohttp"))
                        if c16["errors"]:
                            raise SystemExit(f"{srv.label}: {c16['errors']} errors at c=16")
                        c1 = sequential(srv.url, reqs, path, args.sequential, client="stdlib")
                        results.setdefault((batch, payload, srv.label, "c16"), []).append(c16["throughput"])
                        results.setdefault((batch, payload, srv.label, "c1"), []).append(c1)
                print(f"  batch {batch}: round {r + 1}/{args.rounds} done", flush=True)
        finally:
            for srv in servers:
                srv.stop()
    print(f"\n{'max batch':>9} {'payload':8} {'measure':18} {'base':>22} {'this checkout':>22} "
          f"{'ratio (median, range)':>26}")
    for batch in (int(b) for b in args.batches.split(",")):
        for payload in PAYLOADS:
            for key, label in (("c16", "c=16 req/s"), ("c1", "c=1 p50 ms")):
                a, b = results[batch, payload, "base", key], results[batch, payload, "head", key]
                ratios = [y / x for x, y in zip(a, b, strict=True)]
                print(f"{batch:>9} {payload:8} {label:18} {spread(a):>22} {spread(b):>22} {spread(ratios):>26}")
    print("\nratio = this checkout / base per round: above 1 is better for req/s, below 1 is better for ms")


if __name__ == "__main__":
    main()
