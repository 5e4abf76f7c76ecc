"""joint_inference_video: edge Model + labelled clips + the cloud endpoint -> Metrics, the sweep chart, the report."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def joint_inference_video(edge_model: Input[Model], clips: Input[Dataset], endpoint: str, metrics: Output[Metrics],
                          report: Output[Artifact], sweep: Output[HTML], cloud_model: str = "big",
                          variant: str = "int8", reuse: str = "interpolate", reuse_frames: int = 8,
                          upload_budget: float = 0.3, num_threads: int = 2) -> float:
    """Evaluate joint inference on labelled clips (``generate_video``'s clip set): the edge model
    (``<edge_model>/<variant>/model.tflite``) runs in the task, the cloud model answers at ``endpoint``, every
    filter's threshold is swept (Keyframe included) and tuned on the tuning clips, and a frame that was not
    uploaded uses nearby answers by ``reuse`` (none, hold, interpolate) within ``reuse_frames``, as the edge
    worker does. Outputs as ``joint_inference``; returns the best filter's mAP@0.5 on the test clips.
    """
    from mlkit.data.synthetic.clipset import load_clip_set
    from mlkit.joint.evaluate import evaluate_on_video, pipeline_edge_model, write_pipeline_outputs

    path = pipeline_edge_model(edge_model.path, variant, endpoint)
    test, tune = load_clip_set(clips.path)
    result = evaluate_on_video(test, path, tune_videos=tune, cloud_endpoint=endpoint, cloud_name=cloud_model,
                               reuse=reuse, reuse_frames=reuse_frames, upload_budget=upload_budget,
                               num_threads=num_threads, show_progress=False)
    for key, value in write_pipeline_outputs(result, report.path, sweep.path).items():
        metrics.log_metric(key, value)
    return float(result.best.test_map50)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``joint_inference_video`` built on ``base_image``."""
    return with_base_image(joint_inference_video, base_image)
