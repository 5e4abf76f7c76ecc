"""Real data for the viewer tests: synthetic scenes and a clip, the committed little model's predictions, a joint
run's results written by mlkit's own writer, and (module-scoped where used) a real model server."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LITTLE = ROOT / "models" / "little" / "tflite"


@pytest.fixture(scope="session")
def detectors():
    from mlkit.models.predict import TFLiteDetector

    if not (LITTLE / "int8" / "model.tflite").is_file():
        pytest.skip(f"the committed little model is missing under {LITTLE}")
    return {v: TFLiteDetector(LITTLE / v / "model.tflite") for v in ("int8", "fp32")}


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """Six synthetic labelled site images (deterministic)."""
    from mlkit.data.layout import load_split
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset

    root = generate_dataset(tmp_path_factory.mktemp("scenes"), SyntheticSpec(train=0, val=0, test=6, seed=11),
                            workers=1, show_progress=False)
    return load_split(root, "test")


@pytest.fixture(scope="session")
def scene_predictions(scenes, detectors):
    return [detectors["int8"].predict([scenes.load_image(i)], score_threshold=0.05)[0] for i in range(len(scenes))]


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 12-frame synthetic site video (MJPG), with its labels file next to it."""
    from mlkit.data.synthetic.video import VideoSpec, render_video

    path = tmp_path_factory.mktemp("clip") / "site.avi"
    render_video(path, VideoSpec(frames=12, fps=10.0, width=320, height=240, seed=5), show_progress=False)
    return path


@pytest.fixture(scope="session")
def clip_frames(clip) -> list[np.ndarray]:
    from mlkit.viz.records import FrameImages

    frames = FrameImages(clip)
    try:
        return [frames.get(i) for i in range(len(frames))]
    finally:
        frames.close()


@pytest.fixture(scope="session")
def joint_results(tmp_path_factory, clip_frames, detectors) -> Path:
    """results.jsonl of a joint run over the clip, written by ``OutputWriter``: the int8 model at the edge, the
    fp32 model standing in for the cloud, the IBT filter deciding (the second hard frame gets a timeout fallback)."""
    from mlkit.joint.outputs import OutputConfig, OutputWriter
    from mlkit.joint.worker import FrameResult
    from mlkit.mining import build_filter

    edges = [detectors["int8"].predict([image], score_threshold=0.05)[0] for image in clip_frames]
    # IBT is hard when its score >= 1 - threshold_img: cut at the median score, so about half the frames are hard
    probe = build_filter({"method": "IBT", "param": {"threshold_box": 0.5}})
    cut = float(np.median([probe.score(e) for e in edges]))
    hem = build_filter({"method": "IBT", "param": {"threshold_img": 1.0 - cut, "threshold_box": 0.5}})
    path = tmp_path_factory.mktemp("joint") / "results.jsonl"
    names = detectors["int8"].meta.class_names
    with OutputWriter(OutputConfig(results_jsonl=path), names) as writer:
        hard_seen = 0
        for i, (image, edge) in enumerate(zip(clip_frames, edges, strict=True)):
            j = hem.judge(edge)
            cloud, fallback = None, None
            if j.is_hard:
                hard_seen += 1
                if hard_seen == 2:
                    fallback = "timeout"
                else:
                    cloud = detectors["fp32"].predict([image], score_threshold=0.05)[0]
            writer.write(FrameResult(i, i / 10, j.is_hard, j.score, edge, cloud, fallback, 5.0,
                                     None if cloud is None else 20.0, 25.0), image)
    return path


@pytest.fixture(scope="session")
def local_run(tmp_path_factory) -> Path:
    """A kfp.local pipeline root with one finished run: ``measure`` logs metrics, ``report`` returns a string."""
    import warnings

    from kfp import local
    from kfp_tiny import viz_check

    root = tmp_path_factory.mktemp("kfp-root")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        viz_check(scale=1.5)
    return root


@pytest.fixture(scope="session")
def little_server(tmp_path_factory):
    """A real mlkit server on 127.0.0.1 serving the little int8 model as "little"."""
    from mlkit.serving.server import start_background_server

    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(LITTLE / "int8", repo / "little" / "1")
    handle = start_background_server(repo, log_path=repo / "server.log")
    yield handle
    handle.stop()


@pytest.fixture
def closed_url() -> str:
    """An http URL where nothing listens."""
    from mlkit.serving.server import free_port

    return f"http://127.0.0.1:{free_port()}"
