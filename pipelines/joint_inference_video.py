"""The joint-inference pipeline on video: render labelled clips, deploy the cloud (big) model, evaluate edge + cloud
with answers reused between frames, as the edge worker does on a stream.

```
generate-video (seeds, frames) -> Dataset (clip set: test clips, tuning clips, clips.json)
importer little_uri -> Model (TFLite variants)      importer big_uri -> Model (TFLite variants)
publish (little + big, variant) -> model repository
serve (local detached server, or a KServe InferenceService) -> url
joint-inference-video: little model in the task (the edge), big model at url (the cloud); every filter's threshold
                       swept and tuned on the tuning clips; frames not uploaded use nearby answers (reuse)
                       -> Metrics, sweep chart (HTML), report (JSON + PNG)
```

The defaults are the held-out set of issue 5's figures (test seeds 7001-7004, tuning seeds 101 and 202, 300 frames
each, reuse interpolate within 8 frames). Run locally: ``mlkit pipeline run joint-inference-video``; fewer frames
for a quick look: ``--param frames=60``.
"""

# No `from __future__ import annotations`: KFP reads the real annotations of the pipeline functions.
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from mlkit.components.common import default_base_image
from mlkit.components.generate_video import component as video_component
from mlkit.components.joint_inference_video import component as joint_component
from mlkit.components.publish import component as publish_component
from mlkit.components.serve import component as serve_component
from mlkit.pipelines import joint_inference as stills
from mlkit.pipelines._local import compile_main, run_with_kfp_local
from mlkit.pipelines.object_detection import _cluster_settings

PIPELINE_NAME = "joint-inference-video"


class Outputs(NamedTuple):
    clips: Dataset
    metrics: Metrics
    report: Artifact
    sweep: HTML


def build_pipeline(base_image: str | None = None, aws_secret: str | None = None,
                   pvc: str | None = None, pvc_mount: str = "/mnt/data") -> Callable:
    """The pipeline function with every component on ``base_image`` (see object_detection.build_pipeline)."""
    image = base_image or default_base_image()
    cluster = _cluster_settings(aws_secret, pvc, pvc_mount)
    video_op = video_component.make_component(image)
    publish_op = publish_component.make_component(image)
    serve_op = serve_component.make_component(image)
    joint_op = joint_component.make_component(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Render labelled clips, serve the big model as the cloud, run the little model as the "
                              "edge, and measure joint inference on video with cloud answers reused between frames: "
                              "mAP@0.5 against upload ratio for every hard-example filter.")
    def joint_inference_video(little_uri: str, big_uri: str, test_seeds: str = "7001,7002,7003,7004",
                              tune_seeds: str = "101,202", frames: int = 300, tflite_variant: str = "int8",
                              reuse: str = "interpolate", reuse_frames: int = 8, upload_budget: float = 0.3,
                              serve_mode: str = "local", serve_name: str = "joint-cloud") -> Outputs:
        clips = cluster(video_op(test_seeds=test_seeds, tune_seeds=tune_seeds, frames=frames)
                        .set_display_name("generate-video")).outputs["clips"]
        little = dsl.importer(artifact_uri=little_uri, artifact_class=Model, reimport=False).set_display_name(
            "little-model")
        big = dsl.importer(artifact_uri=big_uri, artifact_class=Model, reimport=False).set_display_name("big-model")
        published = cluster(publish_op(little=little.output, big=big.output, variant=tflite_variant)
                            .set_display_name("publish").set_caching_options(False))
        served = cluster(serve_op(repository=published.outputs["repository"], mode=serve_mode, name=serve_name,
                                  image=image).set_display_name("serve").set_caching_options(False), secret=True)
        joint = cluster(joint_op(edge_model=little.output, clips=clips, endpoint=served.outputs["url"],
                                 cloud_model="big", variant=tflite_variant, reuse=reuse, reuse_frames=reuse_frames,
                                 upload_budget=upload_budget)
                        .set_display_name("joint-inference-video").set_caching_options(False))
        return Outputs(clips, joint.outputs["metrics"], joint.outputs["report"], joint.outputs["sweep"])

    return joint_inference_video


joint_inference_video = build_pipeline()


def run_arguments(little_uri: str | None = None, big_uri: str | None = None, test_seeds: str = "7001,7002,7003,7004",
                  tune_seeds: str = "101,202", frames: int | str = 300, tflite_variant: str = "int8",
                  reuse: str = "interpolate", reuse_frames: int | str = 8, upload_budget: float | str = 0.3,
                  serve_mode: str = "local", serve_name: str = "joint-cloud") -> dict:
    """Checked arguments (``--param`` values arrive as strings); the model URIs default to models/little|big/tflite."""
    from mlkit.data.synthetic.clipset import ClipSetSpec
    from mlkit.errors import MlkitError
    from mlkit.joint.reuse import check_reuse

    base = stills.run_arguments(little_uri, big_uri, tflite_variant=tflite_variant, upload_budget=upload_budget,
                                serve_mode=serve_mode, serve_name=serve_name)
    try:
        frames, reuse_frames = int(frames), int(reuse_frames)
    except ValueError:
        raise MlkitError(f"frames and reuse_frames must be integers, got {frames!r} and {reuse_frames!r}") from None
    spec = ClipSetSpec(test_seeds=test_seeds, tune_seeds=tune_seeds, frames=frames)
    check_reuse(reuse, reuse_frames)
    return {"little_uri": base["little_uri"], "big_uri": base["big_uri"],
            "test_seeds": ",".join(map(str, spec.test_seeds)), "tune_seeds": ",".join(map(str, spec.tune_seeds)),
            "frames": frames, "tflite_variant": tflite_variant, "reuse": reuse, "reuse_frames": reuse_frames,
            "upload_budget": base["upload_budget"], "serve_mode": serve_mode, "serve_name": serve_name}


def run_local(pipeline_root: str | Path, little_uri: str | None = None, big_uri: str | None = None,
              test_seeds: str = "7001,7002,7003,7004", tune_seeds: str = "101,202", frames: int | str = 300,
              tflite_variant: str = "int8", reuse: str = "interpolate", reuse_frames: int | str = 8,
              upload_budget: float | str = 0.3, serve_name: str = "joint-cloud", keep_serving: bool = False) -> dict:
    """Run with kfp.local and summarize. The cloud server is stopped afterwards unless ``keep_serving``."""
    from mlkit.serving import lifecycle

    arguments = run_arguments(little_uri, big_uri, test_seeds, tune_seeds, frames, tflite_variant, reuse,
                              reuse_frames, upload_budget, "local", serve_name)
    try:
        task = run_with_kfp_local(joint_inference_video, pipeline_root, arguments)
    finally:
        if not keep_serving:
            lifecycle.stop(serve_name)
    return summarize(task.outputs)


def summarize(outputs: dict[str, Any]) -> dict:
    return {**stills.summarize({**outputs, "dataset": outputs["clips"]}), "clips": outputs["clips"].path}


format_summary = stills.format_summary


if __name__ == "__main__":  # pragma: no cover - `python -m mlkit.pipelines.joint_inference_video [out.yaml]`
    compile_main(joint_inference_video, "joint_inference_video.yaml")
