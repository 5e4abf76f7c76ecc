"""Drawing boxes, plots, and the ipywidgets viewers used by the notebooks.

- ``DetectionViewer``: images with boxes (a Dataset, a results JSON-lines file, or a live endpoint)
- ``JointInferenceViewer``: edge vs cloud per frame of a joint-inference run
- ``StreamMonitor``: live FPS / latency while a stream runs
- ``PipelineRunView``: status and metrics of a KFP run (local or cluster)

The viewers import ipywidgets when one is built, never on ``import mlkit.viz``.
"""

from __future__ import annotations

_VIEWERS = {
    "DetectionViewer": "mlkit.viz.detection_viewer",
    "JointInferenceViewer": "mlkit.viz.joint_viewer",
    "StreamMonitor": "mlkit.viz.stream_monitor",
    "PipelineRunView": "mlkit.viz.run_view",
}


def __getattr__(name: str):
    if name in _VIEWERS:
        import importlib

        return getattr(importlib.import_module(_VIEWERS[name]), name)
    raise AttributeError(f"module 'mlkit.viz' has no attribute {name!r}")


__all__ = list(_VIEWERS)
