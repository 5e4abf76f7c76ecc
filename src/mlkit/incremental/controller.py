"""The controller: poll the dataset index every checkPeriodSeconds; when the train trigger fires, run a round.

The trigger counts new samples, or (``metric: agreement``) reads the edge worker's edge/cloud agreement from the
hard-example store (``mlkit.incremental.store.read_agreement``), so a site change starts a round.

A round: write the round's data (new train samples + replay, the common eval set), then a runner
trains from the deployed model, evaluates the new and the deployed model on the same eval split, and
promotes the new one into the serving repository when the deploy condition holds. Runners:

- ``KfpLocalRunner``: the KFP pipeline ``mlkit.pipelines.incremental_learning`` through kfp.local (default);
- ``InProcessRunner``: the same library functions in this process, with phases reported as they go
  (and injectable steps, which the tests use to make training fast or promotion crash).

Unlike Sedna, the period is honoured (the clock is injectable, so tests check it), every round compares
against the model deployed *now* (so rounds 2, 3, ... redeploy when their condition holds), and the state
is saved at each phase, so a restarted controller resumes: an interrupted round runs again on its
recorded samples, and a promotion that reached the rename is recognised by its ``promotion.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mlkit.errors import MlkitError
from mlkit.incremental import promotion
from mlkit.incremental.index import DatasetIndex
from mlkit.incremental.rounds import RoundParams, decide, prepare_round_data, tflite_dir, write_report
from mlkit.incremental.spec import Condition, IncrementalLearningJob
from mlkit.incremental.state import JobState, RoundRecord, load_state, now_iso, register_job, save_state
from mlkit.incremental.store import read_agreement
from mlkit.incremental.triggers import should_train
from mlkit.specfiles import parse_hw

log = logging.getLogger(__name__)
RUNNING = ("Training", "Evaluating", "Deploying")


class Clock:
    """Wall clock; tests pass a fake with the same three methods."""

    def now(self) -> dt.datetime:
        return dt.datetime.now()  # local time: the timer window is a local time of day, as in Sedna

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclasses.dataclass(frozen=True)
class RoundInputs:
    round: int
    data_dir: Path
    deployed_model: Path
    repository: Path
    model_name: str
    version: int  # the serving version a deployment writes
    params: RoundParams
    condition: Condition
    class_names: tuple[str, ...]
    work_dir: Path


@dataclasses.dataclass
class RoundOutcome:
    deployed: bool
    candidate: Path
    report: dict  # rounds.decide() output
    run_dir: str | None = None


class Runner(Protocol):
    def __call__(self, inputs: RoundInputs, on_phase: Callable[[str], None]) -> RoundOutcome: ...


def _provenance(inputs: RoundInputs, candidate: Path, report: dict) -> dict:
    return {"model": str(Path(candidate).resolve()), "round": inputs.round, "reason": report["reason"],
            "value": report["value"], "promoted": now_iso()}


class InProcessRunner:
    """Train, evaluate and promote in this process (``train_fn``/``evaluate_fn``/``fault`` are injectable)."""

    def __init__(self, train_fn: Callable | None = None, evaluate_fn: Callable | None = None,
                 fault: Callable[[str], None] | None = None, show_progress: bool = False) -> None:
        from mlkit.incremental import rounds

        self.train_fn = train_fn or (lambda d, m, o, p: rounds.train_candidate(d, m, o, p, show_progress))
        self.evaluate_fn = evaluate_fn or rounds.evaluate_model
        self.fault = fault

    def __call__(self, inputs: RoundInputs, on_phase: Callable[[str], None]) -> RoundOutcome:
        candidate = inputs.work_dir / "candidate"
        on_phase("Training")
        self.train_fn(inputs.data_dir, inputs.deployed_model, candidate, inputs.params)
        on_phase("Evaluating")
        new = self.evaluate_fn(candidate, inputs.data_dir, "eval", inputs.params)
        old = self.evaluate_fn(inputs.deployed_model, inputs.data_dir, "eval", inputs.params)
        report = decide(new, old, inputs.condition, inputs.class_names)
        write_report(inputs.work_dir / "report.json", report)
        if report["deploy"]:
            on_phase("Deploying")
            promotion.promote(inputs.repository, inputs.model_name, inputs.version,
                              tflite_dir(candidate, inputs.params.variant), _provenance(inputs, candidate, report),
                              fault=self.fault)
        return RoundOutcome(bool(report["deploy"]), candidate, report, str(inputs.work_dir))


class KfpLocalRunner:
    """Run the ``incremental-learning`` pipeline (``mlkit.pipelines``) with kfp.local (one subprocess per task)."""

    def __init__(self, pipeline_root: Path | None = None) -> None:
        self.pipeline_root = pipeline_root

    def __call__(self, inputs: RoundInputs, on_phase: Callable[[str], None]) -> RoundOutcome:
        from mlkit.pipelines import incremental_learning as module

        on_phase("Training")  # the pipeline trains, evaluates and deploys in one run
        summary = module.run_local(self.pipeline_root or inputs.work_dir / "pipeline", **pipeline_arguments(inputs))
        report = summary["report"]
        return RoundOutcome(bool(summary["deployed"]), Path(summary["model"]), report, summary["run_dir"])


def pipeline_arguments(inputs: RoundInputs) -> dict:
    p, c = inputs.params, inputs.condition
    return {"data_uri": str(inputs.data_dir.resolve()), "deployed_uri": str(Path(inputs.deployed_model).resolve()),
            "repository": str(inputs.repository.resolve()), "model_name": inputs.model_name,
            "version": inputs.version, "round_number": inputs.round, "epochs": p.epochs,
            "batch_size": p.batch_size, "learning_rate": p.learning_rate, "seed": p.seed, "variant": p.variant,
            "score_threshold": p.score_threshold, "iou_threshold": p.iou_threshold, "operator": c.operator,
            "threshold": c.threshold, "metric": c.metric}


class Controller:
    def __init__(self, job: IncrementalLearningJob, runner: Runner | None = None, clock: Clock | None = None,
                 echo: Callable[[str], None] | None = None, prepare: Callable[..., dict] | None = None) -> None:
        self.job = job
        self.prepare = prepare or prepare_round_data
        self.runner = runner or KfpLocalRunner()
        self.clock = clock or Clock()
        self.echo = echo or log.info
        self.out = job.output_dir
        self.params = RoundParams.from_job(job)
        self.model_name = job.deploy_parameters()["model_name"]
        self.repo = job.serving_repository
        self.state: JobState = load_state(self.out, job.name)
        self.rounds_run = 0  # finished by this controller (for max_rounds)
        self.polls = 0

    # ----------------------------------------------------------------------------- setup
    def setup(self) -> None:
        """Check the inputs, register the job, deploy the initial model as version 1 if nothing is served,
        and finish a promotion an earlier controller left half-recorded."""
        from mlkit.models.config import DetectorConfig

        cfg_path = self.job.initial_model / "config.json"
        if not cfg_path.is_file():
            raise MlkitError(f"spec.initialModel.url {self.job.initial_model} is not a trained detector folder "
                             "(config.json + model.weights.h5)")
        cfg = DetectorConfig.load(cfg_path)
        self.class_names = tuple(cfg.class_names)
        self._check_params(cfg)
        self.index = DatasetIndex(self.job.dataset_dir, self.class_names).create()
        self.out.mkdir(parents=True, exist_ok=True)
        register_job(self.job.name, self.out, self.job.source)
        self._bootstrap()
        self._reconcile()
        save_state(self.out, self.state)

    def _check_params(self, cfg) -> None:
        for section, params in (("trainSpec", self.job.train_parameters()), ("evalSpec", self.job.eval_parameters())):
            if params.get("class_names"):
                names = tuple(n.strip() for n in params["class_names"].split(","))
                if names != tuple(cfg.class_names):
                    raise MlkitError(f"spec.{section} class_names {list(names)} differ from the initial model's "
                                     f"{list(cfg.class_names)}")
            if params.get("input_shape"):
                h, w = parse_hw(params["input_shape"])
                if (h, w) != (cfg.input_height, cfg.input_width):
                    raise MlkitError(f"spec.{section} input_shape {h},{w} differs from the initial model's "
                                     f"{cfg.input_height},{cfg.input_width} (height,width)")

    def _bootstrap(self) -> None:
        served = promotion.deployed_version(self.repo, self.model_name)
        if served is None:
            calib = None
            missing = not (tflite_dir(self.job.initial_model, "int8") / "model.tflite").is_file()
            if self.params.variant == "int8" and missing:
                train = [e for e in self.index.entries() if e["split"] == "train"]
                if not train:
                    raise MlkitError("the initial model has no tflite/int8 export and the index has no train "
                                     "samples to calibrate one: export it (mlkit export) first")
                calib = self.index.to_dataset(train, "calibration")
            from mlkit.incremental.rounds import ensure_tflite

            src = ensure_tflite(self.job.initial_model, self.params.variant, calib)
            version = promotion.next_version(self.repo, self.model_name)
            promotion.promote(self.repo, self.model_name, version, src,
                              {"model": str(self.job.initial_model.resolve()), "round": 0, "reason": "initial model"})
            self.echo(f"deployed the initial model as {self.model_name} v{version} in {self.repo}")
            served = version
        if self.state.deployed_version is None:
            self.state.deployed_version = served
            self.state.deployed_model = self._model_of(served) or str(self.job.initial_model.resolve())

    def _model_of(self, version: int) -> str | None:
        meta = self.repo / self.model_name / str(version) / "promotion.json"
        try:
            return json.loads(meta.read_text()).get("model")
        except (OSError, json.JSONDecodeError):
            return None

    def _reconcile(self) -> None:
        """A round that got as far as the rename is deployed, whatever the state file says."""
        s = self.state
        if s.phase in (*RUNNING, "Failed") and s.target_version is not None \
                and s.target_version in promotion.versions(self.repo, self.model_name):
            self.echo(f"round {s.round}: found version {s.target_version} promoted before the restart")
            model = self._model_of(s.target_version)
            report = self._read_report(s.round)
            self._finish_round(RoundOutcome(True, Path(model or s.candidate or ""), report or {}, None))

    def _read_report(self, n: int) -> dict | None:
        path = self.out / "rounds" / str(n) / "report.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    # ----------------------------------------------------------------------------- polling
    def new_samples(self) -> int:
        return len(self.index.new_since(self.state.cut))

    def poll_once(self) -> str:
        """One check: resume an interrupted round, or evaluate the train trigger and maybe run a round."""
        self.polls += 1
        s = self.state
        if s.phase in RUNNING or (s.phase == "Failed" and s.round_cut is not None):
            self.echo(f"round {s.round}: resuming after a restart (samples up to seq {s.round_cut})")
            return self._run_round(resume=True)
        s.samples = self.new_samples()
        fire, why = self._train_trigger()
        s.last_check, s.last_reason = now_iso(), why
        save_state(self.out, s)
        if not fire:
            return f"waiting: {why}"
        return self._run_round(resume=False)

    def _train_trigger(self) -> tuple[bool, str]:
        """Evaluate the train trigger; an agreement condition reads the worker's agreement.json in the store."""
        trigger, s = self.job.spec.trainSpec.trigger, self.state
        metrics: dict = {"num_of_samples": s.samples}
        if trigger.condition.metric_name == "num_of_samples":
            return should_train(trigger, metrics, self.clock.now(), self.class_names)
        # Only a window measured after the last round counts: the agreement that started a round must not start
        # the next one before the worker has measured the model again.
        last = s.last_round
        found, note = read_agreement(self.job.hard_example_store, self.class_names,
                                     (last.finished or last.started) if last else None)
        fire, why = should_train(trigger, {**metrics, **found}, self.clock.now(), self.class_names)
        why = f"{why}; {note}"
        if fire and s.samples == 0:
            return False, (f"{why}; but there are no new labelled samples to train on: label the hard examples "
                           "(mlkit label auto / mlkit label import) first")
        return fire, why

    def run(self, max_rounds: int | None = None, max_polls: int | None = None) -> JobState:
        """Poll every checkPeriodSeconds until ``max_rounds`` rounds finished (None: forever) or ``max_polls``."""
        period = self.job.spec.trainSpec.trigger.checkPeriodSeconds
        self.setup()
        while True:
            msg = self.poll_once()
            self.echo(msg)
            if max_rounds is not None and self.rounds_run >= max_rounds:
                break
            if max_polls is not None and self.polls >= max_polls:
                break
            self.clock.sleep(period)
        return self.state

    # ----------------------------------------------------------------------------- rounds
    def _phase(self, phase: str) -> None:
        self.state.phase = phase
        save_state(self.out, self.state)

    def _run_round(self, resume: bool) -> str:
        s = self.state
        if not resume:
            s.round += 1
            s.round_cut = self.index.max_seq()
            s.target_version = promotion.next_version(self.repo, self.model_name)
            s.candidate = None
            s.rounds.append(RoundRecord(round=s.round, samples=s.samples, started=now_iso()))
        s.last_error = None
        self._phase("Training")
        work = self.out / "rounds" / str(s.round)
        try:
            counts = self.prepare(self.job.dataset_dir, s.cut, s.round_cut, work / "data",
                                        self.job.train_parameters()["replay_ratio"], self.params.seed + s.round)
            inputs = RoundInputs(s.round, work / "data", Path(s.deployed_model), self.repo, self.model_name,
                                 s.target_version, self.params, self.job.spec.deploySpec.trigger.condition,
                                 self.class_names, work)
            self.echo(f"round {s.round}: training from v{s.deployed_version} on {counts['new']} new + "
                      f"{counts['replay']} replayed samples; eval set {counts['eval']}")
            outcome = self.runner(inputs, self._phase)
        except Exception as exc:  # record, then let the caller see it; a restart retries the round
            s.phase, s.last_error = "Failed", f"{type(exc).__name__}: {exc}"
            save_state(self.out, s)
            raise
        write_report(work / "report.json", outcome.report)
        return self._finish_round(outcome)

    def _finish_round(self, outcome: RoundOutcome) -> str:
        s = self.state
        rec = s.last_round
        if rec is None or rec.round != s.round:
            rec = RoundRecord(round=s.round, samples=s.samples, started=now_iso())
            s.rounds.append(rec)
        report = outcome.report or {}
        deployed = outcome.deployed and s.target_version in promotion.versions(self.repo, self.model_name)
        if outcome.deployed and not deployed:
            raise MlkitError(f"round {s.round}: the runner reports a deployment but version {s.target_version} is "
                             f"not in {self.repo / self.model_name}")
        rec.finished, rec.deployed, rec.version = now_iso(), deployed, s.target_version
        rec.reason, rec.deploy_value = report.get("reason", ""), report.get("value")
        rec.new, rec.old, rec.deltas, rec.run_dir = report.get("new"), report.get("old"), report.get("deltas"), \
            outcome.run_dir
        if deployed:
            s.deployed_version, s.deployed_model = s.target_version, str(Path(outcome.candidate).resolve())
        s.cut = s.round_cut if s.round_cut is not None else s.cut
        s.round_cut = s.target_version = s.candidate = None
        s.samples = self.new_samples()
        s.phase = "Waiting"
        save_state(self.out, s)
        self.rounds_run += 1
        verb = f"deployed as v{rec.version}" if deployed else f"kept v{s.deployed_version}"
        return f"round {s.round}: {verb}: {rec.reason}"
