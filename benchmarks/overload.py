"""Load shedding under 8x the server's capacity: how fast a refused request learns it, and what the accepted
ones pay.

Each round, on one server:
  1. saturation: closed-loop load at concurrency 1, 2, 4, 8, 16 and 32. The capacity is the best throughput of
     answered requests; the saturation point is the lowest concurrency within 5 % of it, and its p99 is the
     reference (c=32's p99 is printed too: the load the serving benchmark calls high);
  2. overload: an open-loop load offering ``--factor`` (8) times that capacity for ``--seconds``: requests leave
     on a fixed schedule whatever the answers, as independent clients do. Requests refused on arrival (503),
     dropped after waiting past the queue deadline (503 saying so) and accepted (200) are timed apart; anything
     else is an error.
Rounds repeat both, so each overload figure has a capacity measured seconds before it. Median and range.

    python benchmarks/overload.py                              # big int8, the server's defaults (--max-queue 64)
    python benchmarks/overload.py --max-queue 16 --rounds 5
    python benchmarks/overload.py --queue-timeout-ms 500

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from serving import percentile, repo_from_models, test_images

SWEEP = (1, 2, 4, 8, 16, 32)


async def open_loop(url: str, path: str, requests: list[tuple[bytes, dict]], rate: float, seconds: float) -> dict:
    """Send ``rate`` requests per second for ``seconds`` on a fixed schedule; time 200s and 503s apart."""
    import aiohttp

    done: list[tuple[int, float]] = []
    connector = aiohttp.TCPConnector(limit=0)  # as many connections as requests out: independent clients
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def one(body: bytes, headers: dict) -> None:
            t = time.perf_counter()
            try:
                async with s.post(path, data=body, headers=headers) as r:
                    text = await r.text()
                    status = r.status
                    if status == 503 and "retry-after" not in r.headers:
                        status = -503  # a 503 without Retry-After is not the server's shedding answer
                    elif status == 503 and " waited " in text:
                        status = 504  # admitted, then dropped when it had waited past its deadline
            except Exception:  # noqa: BLE001 - counted as an error, whatever the client raised
                status = -1
            done.append((status, 1000 * (time.perf_counter() - t)))

        tasks = []
        n = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(*requests[i % len(requests)])))
        sent_for = time.perf_counter() - t0
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    ok = [ms for st, ms in done if st == 200]
    shed = [ms for st, ms in done if st == 503]  # refused when they arrived
    dropped = [ms for st, ms in done if st == 504]
    return {"offered": n / sent_for, "sent": n, "accepted": len(ok), "accepted_per_s": len(ok) / wall,
            "refused": len(shed), "dropped": len(dropped), "errors": len(done) - len(ok) - len(shed) - len(dropped),
            "refused_p50": percentile(shed, 50), "refused_p99": percentile(shed, 99),
            "refused_max": max(shed) if shed else float("nan"),
            "accepted_p50": percentile(ok, 50), "accepted_p99": percentile(ok, 99)}


async def closed_loop(url: str, path: str, requests: list[tuple[bytes, dict]], concurrency: int, n: int) -> dict:
    """``n`` requests from ``concurrency`` clients that each wait for their answer: throughput and p99 of the 200s
    (with a queue deadline, 503s at high concurrency are the server shedding, counted apart)."""
    import aiohttp

    ok: list[float] = []
    refused = errors = 0
    counter = iter(range(n))
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def worker() -> None:
            nonlocal refused, errors
            for i in counter:
                body, headers = requests[i % len(requests)]
                t = time.perf_counter()
                async with s.post(path, data=body, headers=headers) as r:
                    await r.read()
                if r.status == 200:
                    ok.append(1000 * (time.perf_counter() - t))
                elif r.status == 503:
                    refused += 1
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"throughput": len(ok) / wall, "p99": percentile(ok, 99), "refused": refused, "errors": errors}


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="big", choices=("little", "big"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-queue", type=int, default=None, help="Server --max-queue [default: the server's].")
    p.add_argument("--queue-timeout-ms", type=float, default=0.0, help="Server --queue-timeout-ms.")
    p.add_argument("--factor", type=float, default=8.0, help="Offered load as a multiple of the capacity.")
    p.add_argument("--seconds", type=float, default=10.0, help="Length of each overload.")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    from mlkit.client.http import ServingClient
    from mlkit.serving.overload import DEFAULT_MAX_QUEUE
    from mlkit.serving.server import start_background_server

    max_queue = DEFAULT_MAX_QUEUE if args.max_queue is None else args.max_queue
    repo = repo_from_models([args.model], "int8")
    with ServingClient("http://unused", args.model, encoding="jpeg") as c:  # only builds the requests
        built = [c.build([im]) for im in test_images(16)]
    requests = [(raw, headers) for _, headers, raw in built]
    path = f"/v2/models/{args.model}/infer"
    log = Path(tempfile.mkdtemp(prefix="mlkit-overload-")) / "server.log"
    print(f"model {args.model} int8, threads {args.threads}, max queue {max_queue}, queue timeout "
          f"{args.queue_timeout_ms:g} ms; v2 JPEG requests (aiohttp); overload {args.factor:g}x capacity for "
          f"{args.seconds:g} s; {args.rounds} rounds\n")
    rows: dict[str, list[float]] = {}
    with start_background_server(repo, num_threads=args.threads, max_queue=max_queue,
                                 queue_timeout_ms=args.queue_timeout_ms, log_path=log) as server:
        asyncio.run(closed_loop(server.url, path, requests, 4, 40))  # warm
        for r in range(args.rounds):
            sweep = {c: asyncio.run(closed_loop(server.url, path, requests, c, max(40, 12 * c))) for c in SWEEP}
            if any(s["errors"] for s in sweep.values()):
                raise SystemExit(f"errors in the closed-loop sweep: {sweep}")
            capacity = max(s["throughput"] for s in sweep.values())
            c_sat = min(c for c in SWEEP if sweep[c]["throughput"] >= 0.95 * capacity)
            over = asyncio.run(open_loop(server.url, path, requests, args.factor * capacity, args.seconds))
            print(f"round {r + 1}: capacity {capacity:.1f} req/s (saturated at c={c_sat}, p99 "
                  f"{sweep[c_sat]['p99']:.0f} ms; c=32 p99 {sweep[32]['p99']:.0f} ms, {sweep[32]['refused']} "
                  f"refused at c=32); offered {over['offered']:.0f} "
                  f"req/s: {over['accepted']} accepted, {over['refused']} refused, {over['errors']} errors", flush=True)
            for key, value in (("capacity req/s", capacity), ("saturation concurrency", c_sat),
                               ("p99 at saturation ms", sweep[c_sat]["p99"]), ("p99 at c=32 ms", sweep[32]["p99"]),
                               ("offered req/s", over["offered"]), ("accepted req/s", over["accepted_per_s"]),
                               ("refused share", over["refused"] / over["sent"]),
                               ("dropped after waiting", over["dropped"]), ("errors", over["errors"]),
                               ("refused p50 ms", over["refused_p50"]), ("refused p99 ms", over["refused_p99"]),
                               ("refused max ms", over["refused_max"]), ("accepted p50 ms", over["accepted_p50"]),
                               ("accepted p99 ms", over["accepted_p99"]),
                               ("accepted p99 / p99 at saturation", over["accepted_p99"] / sweep[c_sat]["p99"]),
                               ("accepted p99 / p99 at c=32", over["accepted_p99"] / sweep[32]["p99"])):
                rows.setdefault(key, []).append(value)
        rss = __import__("psutil").Process(server.proc.pid).memory_info().rss / 1e6
    print(f"\n{'figure':36} {'median [range] over rounds':>30}")
    for key, values in rows.items():
        fmt = "{:.2f}" if "/" in key or "share" in key else "{:.0f}" if "concurrency" in key or key in (
            "errors", "dropped after waiting") else "{:.1f}"
        print(f"{key:36} {spread(values, fmt):>30}")
    print(f"\nserver RSS after the run: {rss:.0f} MB")


if __name__ == "__main__":
    main()
