"""Do the ensemble's branches run in parallel? Pipeline latency against the max and the sum of its branches.

Runs models/ensemble/config.json's pipeline in process (mlkit.serving.graph.Graph, the executor the server
uses, without HTTP in the way) and reads each node's run interval from the executor's trace. Per request:
the pipeline's latency, the longest branch, and the sum of the branches. Parallel branches put the pipeline
near the max; a sequential executor would put it at the sum plus the combiner.

    python benchmarks/ensemble.py --requests 200 --batch 1,8

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def crops(count: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def isolated(graph, trace_nodes, images, requests, pipeline_name, input_name) -> dict[str, float]:
    """Median ms of each branch model run alone (through the same runtime, no other node running)."""
    pipe = graph.pipeline(pipeline_name)
    out = {}
    nodes = pipe.pipeline.nodes
    for node in (nodes.values() if isinstance(nodes, dict) else nodes):
        if node.model_name is None or node.name == trace_nodes[-1]:
            continue
        runner = pipe.runtime
        async def timed(node=node, runner=runner) -> list[float]:  # one loop, as in the server
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                await runner(node, {k: images for k in node.inputs})
                times.append(time.perf_counter() - t0)
            return times

        times = asyncio.run(timed())
        out[node.name] = 1000 * float(np.median(times))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "models/ensemble/config.json"))
    p.add_argument("--pipeline", default="helmet_ensemble")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--batch", default="1,8", help="Images per request, comma-separated.")
    p.add_argument("--threads", type=int, default=1, help="Interpreter threads per model.")
    args = p.parse_args()

    from mlkit.serving.graph.loading import Graph

    graph = Graph.load(args.config, num_threads=args.threads)
    pipeline = graph.pipeline(args.pipeline)
    input_name = next(iter(pipeline.pipeline.inputs))
    print(f"{'batch':>5} {'pipeline ms':>12} {'max branch':>11} {'sum branches':>13} {'combiner':>9} "
          f"{'(pipe-max)/(sum-max)':>21}")
    try:
        for batch in [int(b) for b in args.batch.split(",")]:
            images = crops(batch)
            total, longest, summed, combiner = [], [], [], []

            async def requests(images=images, total=total, longest=longest, summed=summed, combiner=combiner):
                # One event loop for every request, as in the server (asyncio.run per request would time
                # the loop's set-up and tear-down too).
                for _ in range(10):  # warm up
                    await graph.arun(args.pipeline, **{input_name: images})
                for _ in range(args.requests):
                    trace = []
                    t0 = time.perf_counter()
                    await graph.arun(args.pipeline, trace=trace, **{input_name: images})
                    total.append(time.perf_counter() - t0)
                    runs = {r.node: r.end - r.start for r in trace}
                    last = max(trace, key=lambda r: r.end).node
                    branches = [v for k, v in runs.items() if k != last]
                    longest.append(max(branches))
                    summed.append(sum(branches))
                    combiner.append(runs[last])

            asyncio.run(requests())
            trace = []
            graph.run(args.pipeline, trace=trace, **{input_name: images})
            t, m, s, c = (1000 * float(np.median(x)) for x in (total, longest, summed, combiner))
            print(f"{batch:>5} {t:>12.2f} {m:>11.2f} {s:>13.2f} {c:>9.2f} {(t - m) / (s - m):>21.2f}"
                  "   (branches timed inside the pipeline)")
            # The same branches run alone, one after another: what a sequential executor would cost.
            iso = isolated(graph, trace_nodes=[r.node for r in trace], images=images, requests=args.requests,
                           pipeline_name=args.pipeline, input_name=input_name)
            if iso:
                m2, s2 = max(iso.values()), sum(iso.values())
                print(f"{batch:>5} {t:>12.2f} {m2:>11.2f} {s2:>13.2f} {c:>9.2f} {(t - m2) / (s2 - m2):>21.2f}"
                      "   (branches timed alone)")
    finally:
        graph.close()
    print("\nmedians over requests; 0 = the pipeline costs its longest branch, 1 = it costs the sum of its branches "
          "(the combiner and scheduling add to both).")


if __name__ == "__main__":
    main()
