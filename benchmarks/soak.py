"""A soak with faults: many requests over every protocol while new model versions land and one client misbehaves.

``--requests`` (10,000) requests from ``--concurrency`` (32) workers, rotating v1 REST (base64 JPEG), v2 REST
(binary JPEG) and v2 gRPC (JPEG BYTES). Every ``--publish-every`` (5) seconds a new version folder of the model
is published (written aside, then renamed in), so the server hot-swaps all along. One worker is a bad client: a
third of its requests are garbage of some kind (1 % of all requests), and each must get 400 (gRPC
INVALID_ARGUMENT). The server's RSS is sampled twice a second.

Outcome: errors on valid requests (anything but 200 / OK), bad requests that did not get 400, versions served,
and the RSS: where it settled (median over the second tenth of the run), at the end and at most.

    python benchmarks/soak.py                         # little int8
    python benchmarks/soak.py --model big --requests 3000

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from serving import percentile, repo_from_models, test_images

PROTOCOLS = ("v1", "v2", "grpc")


def garbage(model: str, jpeg: bytes, kind: int) -> tuple[str, bytes | object, dict]:
    """(protocol, body or gRPC request, headers) of a bad request of kind ``kind``."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    if kind == 0:
        return "v1", b'{"instances": [{"b64": "not base64!!"}]}', {"content-type": "application/json"}
    if kind == 1:
        return "v1", b'{"instances": [', {"content-type": "application/json"}  # truncated JSON
    if kind == 2:
        head = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 10 ** 6}}]}).encode()
        return "v2", head + jpeg[:100], {"inference-header-content-length": str(len(head)),
                                         "content-type": "application/octet-stream"}  # size lies
    if kind == 3:
        body = json.dumps({"inputs": [{"name": "image", "shape": [2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4]}]})
        return "v2", body.encode(), {"content-type": "application/json"}  # pixels of the wrong rank
    if kind == 4:
        body = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                       "data": [base64.b64encode(b"GIF89a not a picture").decode()]}]})
        return "v2", body.encode(), {"content-type": "application/json"}  # not an image
    req = pb.ModelInferRequest(model_name=model)
    tensor = req.inputs.add()
    tensor.name, tensor.datatype, tensor.shape[:] = "image", "FP32", [1, 3]  # a datatype the model cannot take
    req.raw_input_contents.append(b"\0" * 12)
    return "grpc", req, {}


class Publisher(threading.Thread):
    """Copies version 1 to version N+1 every ``every`` seconds (written aside, then renamed in)."""

    def __init__(self, repo: Path, model: str, every: float) -> None:
        super().__init__(daemon=True)
        self.base, self.every, self.stop = repo / model, every, threading.Event()
        self.published = 1

    def run(self) -> None:
        while not self.stop.wait(self.every):
            version = self.published + 1
            tmp = self.base / f".tmp-{version}"
            shutil.copytree(self.base / "1", tmp)
            meta = json.loads((tmp / "metadata.json").read_text())
            meta["soak_version"] = version  # a new file, as a retrained model would be
            (tmp / "metadata.json").write_text(json.dumps(meta))
            tmp.rename(self.base / str(version))
            self.published = version


async def soak(server, model: str, requests: int, concurrency: int, bad_share: float) -> dict:
    import aiohttp
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingClient

    images = test_images(8)
    with ServingClient("http://unused", model, protocol="v1") as v1, ServingClient("http://unused", model) as v2:
        rest = {"v1": [(json.dumps(v1.build([im])[0]).encode(), {"content-type": "application/json"})
                       for im in images],
                "v2": [(raw, headers) for _, headers, raw in (v2.build([im]) for im in images)]}
    with GRPCServingClient(server.grpc_url, model) as g:
        grpc_requests = [g.build([im]) for im in images]
    jpeg = rest["v2"][0][0][-2000:]
    paths = {"v1": f"/v1/models/{model}:predict", "v2": f"/v2/models/{model}/infer"}
    valid = requests - int(requests * bad_share)
    counter = iter(range(valid))
    out = {"valid": 0, "valid_errors": [], "bad": 0, "bad_not_400": [], "latency": [], "versions": set()}

    async with aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http, \
            grpc.aio.insecure_channel(server.grpc_url) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def send(protocol: str, body, headers: dict) -> tuple[int | str, str]:
            if protocol == "grpc":
                try:
                    reply = await stub.ModelInfer(body, timeout=60)
                    return "OK", reply.model_version
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name, exc.details() or ""
            async with http.post(paths[protocol], data=body, headers=headers) as r:
                text = await r.text()
                version = ""
                if r.status == 200 and protocol == "v2":
                    version = json.loads(text).get("model_version") or ""
                return r.status, text[:200] if r.status != 200 else version

        async def worker() -> None:
            for i in counter:
                protocol = PROTOCOLS[i % 3]
                body, headers = (grpc_requests[i % len(grpc_requests)], {}) if protocol == "grpc" \
                    else rest[protocol][i % len(rest[protocol])]
                t = time.perf_counter()
                try:
                    status, detail = await send(protocol, body, headers)
                except Exception as exc:  # noqa: BLE001 - a failed valid request is an error, whatever it was
                    status, detail = type(exc).__name__, str(exc)[:200]
                out["latency"].append(1000 * (time.perf_counter() - t))
                out["valid"] += 1
                if status not in (200, "OK"):
                    out["valid_errors"].append((protocol, status, detail))
                elif detail:
                    out["versions"].add(detail)

        async def bad_client() -> None:
            """One client whose every request is garbage, one per ``1 / bad_share`` requests of the others."""
            every, kind = max(1, round(1 / bad_share)), 0
            while out["valid"] < valid:
                while out["valid"] < (kind + 1) * every and out["valid"] < valid:
                    await asyncio.sleep(0.002)
                protocol, body, headers = garbage(model, jpeg, kind % 6)
                kind += 1
                status, detail = await send(protocol, body, headers)
                out["bad"] += 1
                if status not in (400, "INVALID_ARGUMENT"):
                    out["bad_not_400"].append((protocol, status, detail))

        t0 = time.perf_counter()
        await asyncio.gather(bad_client(), *(worker() for _ in range(concurrency - 1)))
        out["wall"] = time.perf_counter() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="little", choices=("little", "big"))
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--publish-every", type=float, default=5.0, help="Seconds between new model versions.")
    p.add_argument("--bad-share", type=float, default=0.01, help="Share of all requests that are garbage.")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import psutil

    from mlkit.serving.server import start_background_server

    repo = repo_from_models([args.model], "int8")
    log = Path(tempfile.mkdtemp(prefix="mlkit-soak-")) / "server.log"
    publisher = Publisher(repo, args.model, args.publish_every)
    samples: list[tuple[float, float]] = []
    with start_background_server(repo, num_threads=args.threads, poll_seconds=1.0, log_path=log) as server:
        proc = psutil.Process(server.proc.pid)
        sampling = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not sampling.wait(0.5):
                samples.append((time.monotonic() - t0, proc.memory_info().rss / 1e6))

        sampler = threading.Thread(target=sample, daemon=True)
        print(f"model {args.model} int8 (threads {args.threads}); {args.requests} requests at c={args.concurrency}, "
              f"v1 / v2 REST / gRPC in turn; a new version every {args.publish_every:g} s; "
              f"{args.bad_share:.0%} garbage from one client\n", flush=True)
        sampler.start()
        publisher.start()
        result = asyncio.run(soak(server, args.model, args.requests, args.concurrency, args.bad_share))
        publisher.stop.set()
        sampling.set()
        sampler.join()
        log_text = server.log_text()
    rss = [mb for _, mb in samples]
    tenth = max(1, len(rss) // 10)
    settled = statistics.median(rss[tenth:2 * tenth]) if len(rss) >= 4 else rss[0]
    lat = result["latency"]
    print(f"wall {result['wall']:.1f} s, {result['valid'] / result['wall']:.0f} valid req/s; latency p50 "
          f"{percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms")
    print(f"valid requests: {result['valid']}, errors: {len(result['valid_errors'])}")
    for e in result["valid_errors"][:5]:
        print(f"   {e}")
    print(f"bad requests: {result['bad']} ({result['bad'] / args.requests:.1%}), not answered 400: "
          f"{len(result['bad_not_400'])}")
    for e in result["bad_not_400"][:5]:
        print(f"   {e}")
    print(f"versions published: {publisher.published}, versions seen in v2 answers: {len(result['versions'])}")
    print(f"server RSS: settled {settled:.0f} MB, end {rss[-1]:.0f} MB ({rss[-1] / settled - 1:+.1%}), "
          f"max {max(rss):.0f} MB ({max(rss) / settled - 1:+.1%}); {len(rss)} samples")
    deciles = [rss[min(len(rss) - 1, k * len(rss) // 10)] for k in range(10)] + [rss[-1]]
    print("RSS at each tenth of the run (MB): " + " ".join(f"{mb:.0f}" for mb in deciles))
    print(f"tracebacks in the server log: {log_text.count('Traceback')}")


if __name__ == "__main__":
    main()
