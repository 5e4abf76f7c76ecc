"""``mlkit incremental`` (run, status, demo, example-config) and ``mlkit label`` (import, auto)."""

from __future__ import annotations

from pathlib import Path

import click

from mlkit.cli.tools import friendly


@click.group()
def incremental() -> None:
    """Incremental learning: retrain from the deployed model on relabelled hard examples, redeploy when better."""


@incremental.command("run")
@click.argument("job_path", metavar="JOB.yaml", type=click.Path(path_type=Path))
@click.option("--max-rounds", type=click.IntRange(min=1), default=None,
              help="Stop after this many rounds (default: run indefinitely).")
@click.option("--max-polls", type=click.IntRange(min=1), default=None, help="Stop after this many trigger checks.")
@click.option("--in-process", is_flag=True,
              help="Run rounds in this process instead of the KFP pipeline through kfp.local.")
@friendly
def run_cmd(job_path: Path, max_rounds: int | None, max_polls: int | None, in_process: bool) -> None:
    """Poll the job's dataset index every checkPeriodSeconds and run a round whenever the train trigger fires."""
    from mlkit.incremental.controller import Controller, InProcessRunner, KfpLocalRunner
    from mlkit.incremental.spec import load_job
    from mlkit.incremental.state import status_table

    job = load_job(job_path)
    runner = InProcessRunner() if in_process else KfpLocalRunner()
    state = Controller(job, runner=runner, echo=click.echo).run(max_rounds=max_rounds, max_polls=max_polls)
    click.echo(status_table([state]))


@incremental.command("status")
@click.argument("name")
@click.option("--output-dir", type=click.Path(path_type=Path), default=None,
              help="The job's outputDir (default: where `mlkit incremental run` registered it).")
@click.option("--rounds", "show_rounds", is_flag=True, help="Also list every round.")
@friendly
def status_cmd(name: str, output_dir: Path | None, show_rounds: bool) -> None:
    """Print job NAME's state like `kubectl get`: phase, round, samples, last metrics, deployed version."""
    from mlkit.incremental.state import find_state, status_table

    state = find_state(name, output_dir)
    click.echo(status_table([state]))
    if state.last_error:
        click.echo(f"last error: {state.last_error}")
    if state.last_reason:
        click.echo(f"last check: {state.last_reason}")
    if show_rounds:
        for r in state.rounds:
            outcome = "running" if not r.finished else (f"deployed v{r.version}" if r.deployed else "kept")
            click.echo(f"round {r.round}: {r.samples} samples, {outcome}: {r.reason}")


@incremental.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/incremental-demo"), show_default=True)
@click.option("--size", type=click.Choice(["test", "demo"]), default="demo", show_default=True,
              help="test: seconds, tiny models (checks the plumbing); demo: minutes, the measured scenario.")
@click.option("--labels", "label_modes", type=click.Choice(["ground-truth", "auto", "both"]), default="both",
              show_default=True, help="How hard examples are relabelled.")
@click.option("--big-model", type=click.Path(path_type=Path), default=Path("models/big/tflite/int8"),
              show_default=True, help="Auto-labeller (the cloud model).")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, help="Rounds per relabelling path.")
@friendly
def demo_cmd(out_dir: Path, size: str, label_modes: str, big_model: Path, max_rounds: int | None) -> None:
    """Site A model, stream switches to site B, hard examples relabelled, rounds until a deployment; chart."""
    from mlkit.incremental.demo import DEMO_SIZES, format_report, run_demo

    modes = ("ground-truth", "auto") if label_modes == "both" else (label_modes,)
    report = run_demo(out_dir, DEMO_SIZES[size], modes=modes, big_model=big_model, max_rounds=max_rounds,
                      echo=click.echo)
    click.echo(format_report(report))


@incremental.command("example-config")
def example_cmd() -> None:
    """Print an IncrementalLearningJob YAML to start from."""
    from mlkit.incremental.demo import example_job_yaml

    click.echo(example_job_yaml(), nl=False)


@click.group()
def label() -> None:
    """Relabel hard examples into an incremental-learning dataset index."""


def _job_defaults(job_path: Path | None, store: Path | None, index: Path | None, train_prob: float | None):
    if job_path is None:
        if store is None or index is None:
            raise click.UsageError("give --job JOB.yaml, or --store and --index")
        return store, index, 0.8 if train_prob is None else train_prob
    from mlkit.incremental.spec import load_job

    job = load_job(job_path)
    store = store or job.hard_example_store
    if store is None:
        raise click.UsageError(f"{job_path} has no HE_SAVED_URL in spec.deploySpec.workerSpec.parameters; "
                               "pass --store")
    return store, index or job.dataset_dir, job.spec.dataset.trainProb if train_prob is None else train_prob


@label.command("import")
@click.argument("labels", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["yolo", "voc", "coco"]), required=True,
              help="yolo: a folder of <frame>.txt (+ classes.txt); voc: a folder of .xml (or with Annotations/); "
                   "coco: an annotations .json.")
@click.option("--job", "job_path", type=click.Path(path_type=Path), default=None,
              help="IncrementalLearningJob YAML: store = HE_SAVED_URL, index = dataset.url, trainProb.")
@click.option("--store", type=click.Path(path_type=Path), default=None, help="Hard-example store folder.")
@click.option("--index", type=click.Path(path_type=Path), default=None, help="Dataset index folder.")
@click.option("--train-prob", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--class-names", default=None, help="Comma-separated classes, when creating a new index.")
@friendly
def label_import(labels: Path, fmt: str, job_path: Path | None, store: Path | None, index: Path | None,
                 train_prob: float | None, class_names: str | None) -> None:
    """Bring labels for hard examples back (YOLO, VOC or COCO) and append them to the dataset index."""
    from mlkit.incremental.labels import import_labels

    store, index, train_prob = _job_defaults(job_path, store, index, train_prob)
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else None
    report = import_labels(store, labels, fmt, index, train_prob, class_names=names)
    click.echo(report.line())


@label.command("auto")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=Path("models/big/tflite/int8"),
              show_default=True, help="The labeller: a .tflite, a TFLite folder or a trained detector folder.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Keep boxes scoring at least this.")
@click.option("--job", "job_path", type=click.Path(path_type=Path), default=None)
@click.option("--store", type=click.Path(path_type=Path), default=None)
@click.option("--index", type=click.Path(path_type=Path), default=None)
@click.option("--train-prob", type=click.FloatRange(0, 1, min_open=True), default=None)
@friendly
def label_auto(model: Path, threshold: float, job_path: Path | None, store: Path | None, index: Path | None,
               train_prob: float | None) -> None:
    """Pseudo-label unlabelled hard examples with the big model; they are marked pseudo for review."""
    from mlkit.incremental.labels import auto_label

    store, index, train_prob = _job_defaults(job_path, store, index, train_prob)
    report = auto_label(store, model, index, train_prob, threshold=threshold)
    click.echo(report.line() + " (marked pseudo: review them with `mlkit label import`)")
