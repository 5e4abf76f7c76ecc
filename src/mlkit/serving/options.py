"""Options of the model server that the CLI, the launchers and the server itself share (no KServe import)."""

from __future__ import annotations

from mlkit.errors import MlkitError

DEFAULT_MAX_PAYLOAD_MB = 16.0
# Batching and interpreters per model version (Triton's dynamic batcher and instance count): no batching, one
# single-thread interpreter, unless asked.
DEFAULT_MAX_BATCH_SIZE = 1
DEFAULT_MAX_LATENCY_MS = 5.0
DEFAULT_THREADS = 1
DEFAULT_INSTANCES = 1
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
DEFAULT_MODEL_CONTROL = "poll"  # incremental learning drops new version folders in and expects them served
_CONTROL_EFFECT = {"none": "with 'none' the server serves what the repository held at start",
                   "poll": "with 'poll' the server loads new version folders by itself"}


class ModelControlDisabled(Exception):
    """A load or unload request while the server's model control is not ``explicit`` (403, PERMISSION_DENIED)."""

    def __init__(self, mode: str) -> None:
        super().__init__(mode)
        self.reason = (f"model control is {mode!r}: loading and unloading through the API needs --model-control "
                       f"explicit (a server option); {_CONTROL_EFFECT[mode]}")

    def __str__(self) -> str:
        return self.reason


def check_model_control(mode: str) -> None:
    if mode not in MODEL_CONTROL_MODES:
        raise MlkitError(f"model control {mode!r} is not one of {', '.join(MODEL_CONTROL_MODES)}")
