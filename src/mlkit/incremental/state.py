"""The persisted state of an incremental learning job: ``<outputDir>/state.json``, written atomically.

A restarted controller reads it and carries on: a round that was running is run again from its
recorded sample cut (samples labelled meanwhile count for the next round), a promotion that was
under way is finished or found done. ``mlkit incremental status NAME`` finds the file through a
pointer in ``$MLKIT_STATE_DIR/incremental/<name>.json`` (default ``~/.mlkit/incremental``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError

STATE_FILE = "state.json"
STATE_DIR_ENV = "MLKIT_STATE_DIR"

# Waiting: polling the trigger. Training/Evaluating/Deploying: a round is under way (round_started
# and cut recorded). Failed: the last round raised (the job keeps polling; the error is kept).
PHASES = ("Waiting", "Training", "Evaluating", "Deploying", "Failed", "Completed")


@dataclasses.dataclass
class RoundRecord:
    round: int
    samples: int  # new labelled samples the round trained on
    started: str
    finished: str | None = None
    deployed: bool = False
    version: int | None = None  # the serving version it became (deployed) or would have become
    deploy_value: float | None = None  # the deploy condition's metric value
    reason: str = ""
    new: dict | None = None  # EvaluationResult.to_dict() of the new model on the eval set
    old: dict | None = None  # ... of the deployed model on the same eval set
    deltas: dict | None = None  # precision_delta / recall_delta / map_delta per class
    run_dir: str | None = None


@dataclasses.dataclass
class JobState:
    name: str
    phase: str = "Waiting"
    round: int = 0  # rounds started so far (the current one while a round runs)
    deployed_version: int | None = None
    deployed_model: str | None = None  # keras + tflite folder of the deployed version
    cut: int = 0  # index sequence number up to which samples were used by finished rounds
    round_cut: int | None = None  # the cut of the running round
    target_version: int | None = None  # the version a running promotion writes
    candidate: str | None = None  # the running round's new model folder (set once trained)
    samples: int = 0  # new samples waiting (at the last poll)
    last_check: str | None = None
    last_reason: str = ""
    last_error: str | None = None
    rounds: list[RoundRecord] = dataclasses.field(default_factory=list)
    updated: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JobState:
        data = dict(data)
        rounds = [RoundRecord(**r) for r in data.pop("rounds", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}, rounds=rounds)

    @property
    def last_round(self) -> RoundRecord | None:
        return self.rounds[-1] if self.rounds else None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def state_path(output_dir: Path) -> Path:
    return Path(output_dir) / STATE_FILE


def load_state(output_dir: Path, name: str) -> JobState:
    """The saved state, or a fresh one; a state of another job in the same folder is refused."""
    path = state_path(output_dir)
    if not path.is_file():
        return JobState(name=name)
    try:
        state = JobState.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise MlkitError(f"{path} is not a valid job state ({exc}); move it away to start the job afresh") from exc
    if state.name != name:
        raise MlkitError(f"{path} belongs to job {state.name!r}, not {name!r}: give each job its own outputDir")
    if state.phase not in PHASES:
        raise MlkitError(f"{path}: unknown phase {state.phase!r}")
    return state


def save_state(output_dir: Path, state: JobState) -> None:
    state.updated = now_iso()
    atomic_write_text(state_path(output_dir), json.dumps(state.to_dict(), indent=2))


def registry_dir() -> Path:
    env = os.environ.get(STATE_DIR_ENV, "").strip()
    base = Path(env).expanduser() if env else Path("~/.mlkit").expanduser()
    return base / "incremental"


def register_job(name: str, output_dir: Path, spec_path: str | None) -> None:
    """Remember where job ``name`` keeps its state (for ``mlkit incremental status NAME``)."""
    atomic_write_text(registry_dir() / f"{name}.json",
                      json.dumps({"name": name, "output_dir": str(Path(output_dir).resolve()), "spec": spec_path}))


def find_state(name: str, output_dir: Path | None = None) -> JobState:
    if output_dir is None:
        pointer = registry_dir() / f"{name}.json"
        if not pointer.is_file():
            known = sorted(p.stem for p in registry_dir().glob("*.json")) if registry_dir().is_dir() else []
            raise MlkitError(f"no incremental learning job named {name!r}; known jobs: {known or 'none'} "
                             "(or pass --output-dir)")
        output_dir = Path(json.loads(pointer.read_text())["output_dir"])
    if not state_path(output_dir).is_file():
        raise MlkitError(f"job {name!r} has no state in {output_dir} yet: has `mlkit incremental run` started?")
    return load_state(output_dir, name)


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:+.3f}" if isinstance(x, float) else str(x)


def status_table(states: list[JobState]) -> str:
    """``kubectl get``-like: NAME PHASE ROUND SAMPLES DEPLOYED LAST-ROUND MAP50 MAP-DELTA AGE."""
    head = ["NAME", "PHASE", "ROUND", "SAMPLES", "DEPLOYED", "LAST-ROUND", "MAP50", "MAP-DELTA", "P-DELTA",
            "R-DELTA", "UPDATED"]
    rows = [head]
    for s in states:
        last = s.last_round
        deltas = (last.deltas or {}) if last else {}

        def mean(key: str, d: dict = deltas) -> float | None:
            vals = [v for v in d.get(key) or [] if v is not None]
            return sum(vals) / len(vals) if vals else None

        outcome = "-" if last is None else ("deployed" if last.deployed else "kept") if last.finished else "running"
        map50 = None if not last or not last.new else last.new.get("map50")
        rows.append([s.name, s.phase, str(s.round), str(s.samples),
                     "-" if s.deployed_version is None else f"v{s.deployed_version}",
                     outcome, "-" if map50 is None else f"{map50:.3f}", _fmt(mean("map_delta")),
                     _fmt(mean("precision_delta")), _fmt(mean("recall_delta")), s.updated or "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
