"""Test helpers: a job spec writer, a fake clock, a simulated crash, samples, and a fast fake trainer and
evaluator where training itself is not under test."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np

JOB = """\
apiVersion: mlkit.io/v1
kind: IncrementalLearningJob
metadata:
  name: {name}
spec:
  initialModel: {{name: initial-model, url: {model}}}
  dataset: {{name: ds, url: dataset, format: jsonl, trainProb: 0.5}}
  trainSpec:
    workerSpec:
      parameters:
        - {{key: epochs, value: "1"}}
        - {{key: batch_size, value: "4"}}
        - {{key: tflite_variant, value: fp32}}
        - {{key: input_shape, value: "96,128"}}
        - {{key: class_names, value: "person,helmet,helmet-on,helmet-off"}}
    trigger:
      checkPeriodSeconds: {period}
{timer}      condition: {condition}
  deploySpec:
    model: {{name: deploy-model, url: serving}}
    trigger:
      condition: {{operator: ">", threshold: {deploy_threshold}, metric: "{deploy_metric}"}}
    hardExampleMining: {{name: IBT, parameters: [{{key: threshold_img, value: "0.9"}}]}}
    workerSpec:
      parameters:
        - {{key: HE_SAVED_URL, value: store}}
  outputDir: output
"""


def write_job(folder: Path, model: Path, name: str = "test-job", period: float = 30, min_samples: int = 4,
              deploy_threshold: float = 0.05, deploy_metric: str = "map_delta",
              timer: tuple[str, str] | None = None, condition: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    timer_text = f"      timer: {{start: \"{timer[0]}\", end: \"{timer[1]}\"}}\n" if timer else ""
    path = folder / "job.yaml"
    condition = condition or f'{{operator: ">=", threshold: {min_samples}, metric: num_of_samples}}'
    path.write_text(JOB.format(name=name, model=model, period=period, condition=condition,
                               deploy_threshold=deploy_threshold, deploy_metric=deploy_metric, timer=timer_text))
    return path


class FakeClock:
    """A clock whose time moves only when the controller sleeps."""

    def __init__(self, start: dt.datetime = dt.datetime(2026, 11, 22, 3, 0)) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += dt.timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.t.timestamp()


class Crash(BaseException):
    """A simulated process death: not an Exception, so nothing on the way catches it."""


CLASSES = ("person", "helmet", "helmet-on", "helmet-off")


def add_samples(index_root: Path, n: int, start: int = 0, split: str | None = None) -> None:
    """``n`` labelled samples (the image is never read by the fake trainer)."""
    from mlkit.incremental.index import DatasetIndex, draw_split, sample

    index = DatasetIndex(index_root, CLASSES).create()
    index.add(sample(f"s{i:04d}", f"/nonexistent/s{i}.jpg", 64, 48, [[1, 1, 10, 10]], [i % 4],
                     split or draw_split(f"s{i:04d}", 0.5), "test") for i in range(start, start + n))


class FakeRounds:
    """Fast stand-ins for train_candidate / evaluate_model: a model's quality is a number in quality.json.

    Training copies the deployed model (so the candidate is a valid, servable model) and sets its
    quality to the deployed one's plus the next scripted gain; evaluation reports that quality as every
    per-class AP, precision and recall.
    """

    def __init__(self, gains: list[float]) -> None:
        self.gains = list(gains)
        self.trained_from: list[Path] = []

    @staticmethod
    def quality(model: Path) -> float:
        q = Path(model) / "quality.json"
        return json.loads(q.read_text())["q"] if q.is_file() else 0.5

    def train(self, data_dir, deployed, out_dir, params) -> dict:
        self.trained_from.append(Path(deployed))
        out_dir = Path(out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(deployed, out_dir)
        (out_dir / "quality.json").write_text(json.dumps({"q": self.quality(deployed) + self.gains.pop(0)}))
        return {}

    def evaluate(self, model_dir, data_dir, split, params) -> dict:
        q = float(np.clip(self.quality(model_dir), 0, 1))
        per = dict.fromkeys(CLASSES, q)
        return {"map50": q, "map": q / 2, "ap50_per_class": per, "precision_per_class": per,
                "recall_per_class": per}
