"""Fixtures for joint inference: the committed little model at the edge, a real cloud server, frames."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LITTLE = ROOT / "models" / "little" / "tflite"


@pytest.fixture(scope="session")
def edge_model():
    from mlkit.models.predict import TFLiteDetector

    path = LITTLE / "int8" / "model.tflite"
    if not path.is_file():
        pytest.skip(f"the committed edge model {path} is missing")
    return TFLiteDetector(path)


@pytest.fixture(scope="session")
def cloud_repo(tmp_path_factory) -> Path:
    """A repository serving the little fp32 model under the name "big" (the real big model is too slow here)."""
    repo = tmp_path_factory.mktemp("cloud-repo")
    dest = repo / "big" / "1"
    dest.mkdir(parents=True)
    for name in ("model.tflite", "metadata.json"):
        shutil.copy2(LITTLE / "fp32" / name, dest / name)
    return repo


@pytest.fixture(scope="session")
def frames(tmp_path_factory):
    """12 synthetic site images (deterministic) as frames."""
    from mlkit.data.layout import load_split
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.joint.worker import StillFrame

    out = tmp_path_factory.mktemp("frames")
    test = load_split(generate_dataset(out, SyntheticSpec(train=0, val=0, test=12, seed=3), workers=1,
                                       show_progress=False), "test")
    return [StillFrame(i, test.load_image(i), timestamp=i / 10) for i in range(len(test))]


class _Always500(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"error": "injected failure"}'
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server_500():
    """A real HTTP server on 127.0.0.1 that answers every POST with 500."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def cloud_server(cloud_repo, tmp_path_factory):
    """A real mlkit server on 127.0.0.1 serving "big" (batching off)."""
    from mlkit.serving.server import start_background_server

    handle = start_background_server(cloud_repo, log_path=tmp_path_factory.mktemp("log") / "cloud.log")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 10-frame synthetic site video (320x240, MJPG)."""
    from mlkit.data.synthetic.video import VideoSpec, render_video

    path = tmp_path_factory.mktemp("video") / "site.avi"
    render_video(path, VideoSpec(frames=10, fps=10.0, width=320, height=240, seed=2), show_progress=False)
    return path


@pytest.fixture
def slow_server(cloud_repo, tmp_path):
    """A real mlkit server serving "big" that holds every answer 3 s."""
    from mlkit.serving.server import start_background_server

    server = start_background_server(cloud_repo, response_delay_ms=3000, log_path=tmp_path / "slow.log")
    yield server
    server.stop()


def first_result_timing(worker, frames):
    """Run ``worker`` over ``frames``: (when each frame was pulled, the first result, when it came, the rest)."""
    import time

    pulled = []

    def stream():
        for f in frames:
            pulled.append(time.perf_counter())
            yield f

    it = worker.run(stream())
    first = next(it)
    first_at = time.perf_counter()
    return pulled, first, first_at, list(it)


def joint_spec(tmp_path, video, cloud_url: str, mining: dict, edge_extra: tuple = ()) -> Path:
    """The example service spec with this test's video, committed edge model, cloud URL and filter; its path.

    The cloud timeout is 60 s (a busy CI machine is slow) and 16 frames may be out at once (no "busy").
    """
    import yaml

    from mlkit.cli.joint import EXAMPLE

    data = yaml.safe_load(EXAMPLE.replace("joint-output", str(tmp_path / "out")))
    data["spec"]["edgeWorker"]["model"]["url"] = "models/little/tflite/int8"
    edge_params = data["spec"]["edgeWorker"]["workerSpec"]["parameters"]
    edge_params[0]["value"] = str(video)
    edge_params.extend({"key": k, "value": v} for k, v in edge_extra)
    data["spec"]["edgeWorker"]["hardExampleMining"] = mining
    cloud_params = data["spec"]["cloudWorker"]["workerSpec"]["parameters"]
    cloud_params[0]["value"], cloud_params[1]["value"], cloud_params[2]["value"] = cloud_url, "60000", "16"
    config = tmp_path / "joint.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def run_worker(edge_model, frames, cloud, hem: dict, out_dir=None, config=None):
    """Every result of a JointWorker run (outputs written under ``out_dir`` when given) and the final stats."""
    from mlkit.joint.outputs import OutputConfig, OutputWriter
    from mlkit.joint.worker import JointWorker, WorkerConfig
    from mlkit.mining import build_filter

    writer = OutputWriter(OutputConfig.under(out_dir), edge_model.meta.class_names) if out_dir else None
    worker = JointWorker(edge_model, build_filter(hem), cloud, config or WorkerConfig(report_every_s=0),
                         on_result=writer.write if writer else None)
    try:
        results = list(worker.run(frames))
    finally:
        if writer:
            writer.close()
    return results, worker.stats.snapshot()
