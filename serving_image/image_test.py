"""`make image-test` (through serving_image/image_test.sh): the serving image, run for real with podman.

``serve``: the image's own ENTRYPOINT + CMD (``python -m mlkit.serving --model-dir /mnt/models --host 0.0.0.0``),
run as the image's user (uid 1000, checked), with a model repository mounted read-only at /mnt/models and
HTTP published on 127.0.0.1. The repository holds the committed big detector (models/big/tflite/int8) as
``big/1/model.tflite + metadata.json``, the layout of mlkit.serving.repository. Checks ``GET /v2/health/ready``
and ``/v2/models/big/ready``, then sends a synthetic helmet scene as a v2 UINT8 tensor with mlkit's own client
(ServingClient, encoding="raw") and requires the answer to match the same model run here, in this process.

``pipeline``: the object-detection pipeline (test profile) with kfp.local's DockerRunner: every task runs in the
image (``build_pipeline(base_image=IMAGE)``), through podman's Docker-compatible API
(``podman system service``; DOCKER_HOST names its socket). What kfp 2.17's DockerRunner does
(kfp/local/docker_task_handler.py), and how this adapts:

* it looks the image up by tag in ``images.list()`` and pulls only when it is missing: the image is local;
* it runs the component's own command (``sh -ec '... python3 -m kfp.dsl.executor_main ...'``) as the
  container's *command* (Docker's CMD), so the image's ENTRYPOINT would still run, with the task's command as its
  arguments ("python -m mlkit.serving: error: unrecognized arguments: sh -ec ..."). On a cluster the task's
  command replaces the ENTRYPOINT; locally ``entrypoint=[""]`` (``docker run --entrypoint ""``) clears it.
  ``python3`` must then be the image's venv (it is first on PATH);
* it passes no user: tasks run as the image's USER, uid 1000;
* it bind-mounts the pipeline root at the same path, read-write. kfp.local (this process, root) creates some
  folders there itself (the run folder, importer outputs), so the root is world-writable and this process
  runs with umask 0: uid 1000 in a task can write next to them;
* ``container_run_args`` go to ``containers.run``: besides ``entrypoint``, ``environment`` sets
  MLKIT_STATE_DIR to a folder in the pipeline root, so the serve step's server state and log outlive the
  task's container.

The serve step (serve_mode "local") starts a detached ``python -m mlkit.serving`` on 127.0.0.1 *inside the
serve task's container* and returns once it answers /v2/health/ready; the container ends with the task
(auto_remove), and the server with it. So the URL in the summary is the one the server had; this script shows
the server's log from the pipeline root and checks that nothing answers at that URL any more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "image" / "test"
BIG = ROOT / "models" / "big" / "tflite" / "int8"
NICE = ["nice", "-n", "10"]  # containers inherit it (podman run -> conmon -> runc; the API service likewise)


def say(msg: str) -> None:
    print(f"image-test: {msg}", flush=True)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True)


def wait_ready(url: str, alive, timeout: float, what: str) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise RuntimeError(f"{what} exited before {url} answered")
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return r
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)


# --------------------------------------------------------------------------- serve
def model_repository(dest: Path) -> Path:
    """``dest/big/1/model.tflite + metadata.json`` from the committed big int8 model."""
    shutil.rmtree(dest, ignore_errors=True)
    version = dest / "big" / "1"
    version.mkdir(parents=True)
    for name in ("model.tflite", "metadata.json"):
        shutil.copy2(BIG / name, version / name)
    for p in [dest, *dest.rglob("*")]:  # readable by the container's uid 1000
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def scene() -> np.ndarray:
    """A synthetic helmet scene (RGB uint8), the kind of image the big model was trained on."""
    from mlkit.data.synthetic.scene import render_scene
    from mlkit.data.synthetic.sites import SITES

    site = next(iter(SITES.values()))
    image, _, _ = render_scene(np.random.default_rng(7), site, 512, 384)
    return image


def meta_names() -> list[str]:
    return json.loads((BIG / "metadata.json").read_text())["class_names"]


def compact_v2_answer(answer: dict) -> str:
    """The v2 answer as JSON, each output cut to the image's ``num_detections`` entries (the rest is padding)."""
    outputs = {o["name"]: o for o in answer.get("outputs", [])}
    n = int(outputs["num_detections"]["data"][0]) if "num_detections" in outputs else None
    short = []
    for o in answer.get("outputs", []):
        o = dict(o)
        per_slot = 1
        for dim in o["shape"][2:]:
            per_slot *= dim
        if n is not None and len(o["shape"]) >= 2 and len(o["data"]) > n * per_slot:
            slots = o["shape"][1]
            data = o["data"][: n * per_slot]
            o["data"] = [round(v, 4) if isinstance(v, float) else v for v in data]
            o["data_note"] = f"first {n} of {slots} slots shown; the other {slots - n} are zero padding"
        short.append(o)
    return json.dumps({**answer, "outputs": short})


def check_serve(image: str) -> None:
    from mlkit.client.http import ServingClient
    from mlkit.models.predict import TFLiteDetector
    from mlkit.serving.server import free_port

    repo = model_repository(WORK / "models")
    port = free_port()
    name = f"mlkit-image-test-{os.getpid()}"
    say(f"podman run {image} as its own user, {repo} at /mnt/models (ro), HTTP on 127.0.0.1:{port}")
    subprocess.run([*NICE, "podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                    "-v", f"{repo}:/mnt/models:ro", image], check=True, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() == "true"

    try:
        t0 = time.monotonic()
        health = wait_ready(f"{url}/v2/health/ready", alive, 180, f"container {name}")
        say(f"GET /v2/health/ready -> {health.status_code} {health.text.strip() or '(empty body)'} "
            f"({time.monotonic() - t0:.1f} s after start)")
        inside = podman("exec", name, "sh", "-c", 'echo "uid=$(id -u) python3=$(command -v python3)"').stdout.strip()
        user = podman("inspect", "--format", "{{.Config.User}}", name).stdout.strip()
        say(f"inside the container: {inside}; the image's USER: {user}")
        if not inside.startswith("uid=1000 python3=/opt/mlkit/bin/python3"):
            raise RuntimeError(f"expected uid 1000 and the venv's python3, got {inside!r}")
        ready = httpx.get(f"{url}/v2/models/big/ready", timeout=5)
        say(f"GET /v2/models/big/ready -> {ready.status_code} {ready.text.strip()}")
        ready.raise_for_status()
        meta = httpx.get(f"{url}/v2/models/big", timeout=5).json()
        say(f"GET /v2/models/big -> {json.dumps(meta)}")

        img = scene()
        score = 0.3
        with ServingClient(url, "big", protocol="v2", encoding="raw") as client:
            _, headers, body = client.build([img], score_threshold=score)
            t0 = time.monotonic()
            response = httpx.post(url + client.infer_path, content=body, headers=headers, timeout=60)
            took = time.monotonic() - t0
            say(f"POST {client.infer_path} (v2, UINT8 tensor {[1, *img.shape]}, score_threshold {score}) -> "
                f"{response.status_code} in {took * 1000:.0f} ms:")
            print(compact_v2_answer(response.json()), flush=True)
            (got,) = client.parse(response)
        names = meta_names()
        for d in got.to_list(names):
            print(f"  {d['label']:<11} {d['score']:.3f}  box {d['box']}", flush=True)
        (expected,) = TFLiteDetector(BIG / "model.tflite").predict([img], score_threshold=score)
        say(f"{len(got)} detections from the container, {len(expected)} from the same model run here")
        same = (len(got) == len(expected) and np.array_equal(got.labels, expected.labels)
                and np.allclose(got.boxes, expected.boxes, atol=0.05) and np.allclose(got.scores, expected.scores,
                                                                                        atol=1e-4))
        if not same or not len(got):
            raise RuntimeError(f"the container's answer differs from the model's:\n{got}\nvs\n{expected}")
        say("serve: OK (health, model ready, v2 inference equal to the local result)")
    finally:
        logs = podman("logs", name, check=False)
        tail = (logs.stdout + logs.stderr).strip().splitlines()[-15:]
        say("server log (tail):\n  " + "\n  ".join(tail))
        podman("stop", "-t", "10", name, check=False)
        podman("rm", "-f", name, check=False)


# --------------------------------------------------------------------------- pipeline
@contextlib.contextmanager
def podman_api_service():
    """``podman system service`` on a fresh unix socket; yields its ``unix://`` URL (also set as DOCKER_HOST)."""
    import docker

    folder = Path(tempfile.mkdtemp(prefix="mlkit-podman-"))
    sock = folder / "podman.sock"
    log = open(WORK / "podman-service.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*NICE, "podman", "system", "service", "--time=0", f"unix://{sock}"], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"podman system service exited ({proc.returncode}); see {log.name}")
            if sock.exists():
                with contextlib.suppress(Exception):
                    client = docker.DockerClient(base_url=url)
                    version = client.version()
                    client.close()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("podman system service did not answer within 30 s")
            time.sleep(0.3)
        say(f"podman system service at {url}: Docker API {version.get('ApiVersion')}, "
            f"{version.get('Components', [{}])[0].get('Name', '')} {version.get('Version')}")
        os.environ["DOCKER_HOST"] = url
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def import_pipeline():
    """The object-detection pipeline module: the installed package's if it has it, else the checkout's."""
    try:
        from mlkit.pipelines import object_detection as module
    except ImportError:
        sys.path.insert(0, str(ROOT))
        from pipelines import object_detection as module
    return module


def check_pipeline(image: str) -> None:
    import warnings

    from kfp import local

    module = import_pipeline()
    say(f"pipeline module: {module.__name__} ({module.__file__})")
    root = WORK / "pipeline-root"
    shutil.rmtree(root, ignore_errors=True)
    os.umask(0)  # folders kfp.local makes here (as root) stay writable by the tasks' uid 1000
    state = root / "mlkit-servers"
    state.mkdir(parents=True)
    root.chmod(0o777)
    state.chmod(0o777)
    with podman_api_service():
        runner = local.DockerRunner(entrypoint=[""], environment={"MLKIT_STATE_DIR": str(state)})
        local.init(runner=runner, pipeline_root=str(root))
        pipeline = module.build_pipeline(base_image=image)
        arguments = module.run_arguments(profile="test")
        say(f"object-detection pipeline, every task in {image}, arguments {arguments}")
        t0 = time.monotonic()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
            task = pipeline(**arguments)
        took = time.monotonic() - t0
    summary = module.summarize(task.outputs, arguments["map_threshold"], arguments["tflite_variant"])
    say(f"pipeline finished in {took:.0f} s with DockerRunner:")
    print(module.format_summary(summary), flush=True)
    print(json.dumps({"gate": summary["gate"], "url": summary["url"],
                      "evaluation": {n: m["evaluation"] for n, m in summary["models"].items()}}, indent=1), flush=True)
    if not summary["gate"]["passed"] or not summary["repository"]:
        raise RuntimeError(f"the gate did not pass or nothing was published: {summary['gate']}")
    endpoint = Path(summary["run_dir"]) / "serve" / "endpoint"
    endpoint_json = endpoint / "endpoint.json" if endpoint.is_dir() else None
    if endpoint_json and endpoint_json.is_file():
        say(f"serve step's endpoint: {endpoint_json.read_text().strip()}")
    log = state / "object-detection.log"
    if log.is_file():
        say("the serve step's server (inside the serve task's container), log tail:\n  "
            + "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-8:]))
    if summary["url"]:
        try:
            httpx.get(f"{summary['url']}/v2/health/ready", timeout=2)
            say(f"{summary['url']} still answers (something else listens there)")
        except httpx.TransportError as exc:
            say(f"{summary['url']} no longer answers ({type(exc).__name__}): the server ended with the serve "
                "task's container, as expected under DockerRunner")
    say("pipeline: OK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checks", nargs="*", metavar="serve|pipeline", help="the checks to run (default: both)")
    parser.add_argument("--image", default="localhost/mlkit-serving:0.1.0")
    args = parser.parse_args()
    checks = {"serve": check_serve, "pipeline": check_pipeline}
    unknown = set(args.checks) - set(checks)
    if unknown:
        parser.error(f"unknown checks {sorted(unknown)}: choose from {list(checks)}")
    if not os.environ.get("CONTAINERS_CONF"):
        parser.error("CONTAINERS_CONF is not set: run this through serving_image/image_test.sh")
    WORK.mkdir(parents=True, exist_ok=True)
    timings = {}
    for check in args.checks or list(checks):
        t0 = time.monotonic()
        checks[check](args.image)
        timings[check] = round(time.monotonic() - t0, 1)
    say(f"all checks passed: {timings} (seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
