"""`mlkit incremental demo`: the helmet scenario of the seed, measured end to end on this machine.

1. Train the little model on site A only and export it (the deployed model, served with hot reload).
2. The stream switches to site B: the edge worker runs the deployed model with the job's hard-example
   filter and saves hard frames (clean JPEG + sidecar) to HE_SAVED_URL.
3. Hard examples are relabelled, with the ground truth of the synthetic scenes (an oracle, as Ianvs
   does) through ``mlkit label import`` in YOLO format, or with the big model (``mlkit label auto``).
4. The controller checks the train trigger; a round trains from the deployed model, compares new and
   deployed on the same eval split, and promotes the new model when the deploy condition holds.
   Chunks of stream and rounds repeat until a deployment (or ``max_rounds``).
5. After every round the deployed model is scored on held-out site A and site B; a chart shows both.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError

FALLBACK_LABELLER = Path("models/little/tflite/fp32")  # trained on sites A and B (full profile)


@dataclasses.dataclass(frozen=True)
class DemoSize:
    name: str
    site_a_train: int
    site_a_epochs: int
    test_images: int  # held-out per site
    stream_chunk: int  # site-B frames per round
    max_rounds: int
    round_epochs: int
    min_samples: int  # the train trigger: num_of_samples >= this
    deploy_threshold: float  # the deploy trigger: map_delta > this
    tiny: bool  # test-profile model sizes (plumbing checks)
    runner: str  # "kfp" (the pipeline through kfp.local) or "in-process"
    variant: str = "int8"
    batch_size: int = 16
    round_learning_rate: float = 1e-3  # fine-tuning across a domain shift: half the from-scratch peak


DEMO_SIZES = {
    # Seconds: tiny untrained-ish models; checks the whole path, the figures mean nothing.
    "test": DemoSize("test", 24, 1, 12, 16, 1, 1, 2, -1.0, tiny=True, runner="in-process", variant="fp32",
                     batch_size=8),
    # Minutes on 2 cores: site-A training ~700 images x 5 epochs, rounds of ~300 site-B frames.
    "demo": DemoSize("demo", 700, 5, 150, 300, 3, 3, 50, 0.02, tiny=False, runner="kfp"),
}


def example_job_yaml(name: str = "helmet-detection-demo", root: str = "runs/incremental", min_samples: int = 500,
                     deploy_threshold: float = 0.02, epochs: int = 3, variant: str = "int8",
                     period: float = 60, timer: tuple[str, str] = ("02:00", "04:00"),
                     input_shape: str = "256,320", batch_size: int = 16, learning_rate: float = 5e-4) -> str:
    """A job in the seed's shape; paths relative to the YAML file's folder."""
    return f"""\
apiVersion: mlkit.io/v1
kind: IncrementalLearningJob
metadata:
  name: {name}
spec:
  initialModel:
    name: initial-model
    url: {root}/initial-model
  dataset:
    name: incremental-dataset
    url: {root}/dataset
    format: jsonl
    trainProb: 0.8
  trainSpec:
    workerSpec:
      parameters:
        - {{key: batch_size, value: "{batch_size}"}}
        - {{key: epochs, value: "{epochs}"}}
        - {{key: learning_rate, value: "{learning_rate:g}"}}
        - {{key: input_shape, value: "{input_shape}"}}
        - {{key: class_names, value: "person,helmet,helmet-on,helmet-off"}}
        - {{key: nms_threshold, value: "0.5"}}
        - {{key: obj_threshold, value: "0.3"}}
        - {{key: replay_ratio, value: "1.0"}}
        - {{key: tflite_variant, value: "{variant}"}}
    trigger:
      checkPeriodSeconds: {period:g}
      timer:
        start: "{timer[0]}"
        end: "{timer[1]}"
      condition:
        operator: ">="
        threshold: {min_samples}
        metric: num_of_samples
  evalSpec:
    workerSpec:
      parameters:
        - {{key: input_shape, value: "{input_shape}"}}
        - {{key: class_names, value: "person,helmet,helmet-on,helmet-off"}}
  deploySpec:
    model:
      name: deploy-model
      url: {root}/serving
    trigger:
      condition:
        operator: ">"
        threshold: {deploy_threshold:g}
        metric: map_delta
    hardExampleMining:
      name: IBT
      parameters:
        - {{key: threshold_img, value: "0.9"}}
        - {{key: threshold_box, value: "0.9"}}
    workerSpec:
      parameters:
        - {{key: HE_SAVED_URL, value: {root}/hard_examples}}
        - {{key: model_name, value: little}}
  outputDir: {root}/output
"""


def _generate(out: Path, site: str, split: str, count: int, seed: int, show_progress: bool):
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_split

    spec = SyntheticSpec(train=count if split == "train" else 0, val=count if split == "val" else 0,
                         test=count if split == "test" else 0, seed=seed, sites=(site,))
    return generate_split(out, split, count, spec, workers=2, show_progress=show_progress)


def _configs(size: DemoSize):
    import dataclasses as dc

    from mlkit.models.config import LITTLE
    from mlkit.models.train import TrainConfig

    if size.tiny:
        cfg = dc.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    else:  # the seed's input_shape "256,320" (height,width), at which the demo's figures were measured
        cfg = dc.replace(LITTLE, input_width=320, input_height=256)
    return cfg, TrainConfig(epochs=size.site_a_epochs, batch_size=size.batch_size, seed=7, patience=size.site_a_epochs)


def prepare_data(out: Path, size: DemoSize, show_progress: bool = True) -> dict:
    """Site-A training images, held-out site A and B, and a pool of site-B stream frames (cached on disk)."""
    from mlkit.data.layout import load_split, write_dataset_dir

    data = out / "data"
    if (data / "done.json").is_file():
        return {k: load_split(data / k, "all") for k in ("site_a", "test_a", "test_b", "stream_b")}
    splits = {
        "site_a": _generate(data / "_a", "A", "train", size.site_a_train, 101, show_progress),
        "test_a": _generate(data / "_a", "A", "test", size.test_images, 101, show_progress),
        "test_b": _generate(data / "_b", "B", "test", size.test_images, 202, show_progress),
        "stream_b": _generate(data / "_b", "B", "train", size.stream_chunk * size.max_rounds, 303, show_progress),
    }
    for name, ds in splits.items():
        write_dataset_dir(data / name, {"all": ds})
    atomic_write_text(data / "done.json", json.dumps({k: len(v) for k, v in splits.items()}))
    return {k: load_split(data / k, "all") for k in splits}


def train_site_a(out: Path, size: DemoSize, site_a, show_progress: bool = True) -> tuple[Path, dict]:
    """The initial (deployed) model: trained on site A only, exported to TFLite (cached on disk)."""
    from mlkit.incremental.rounds import ensure_tflite
    from mlkit.models.train import train_detector

    model = out / "initial-model"
    cfg, tc = _configs(size)
    if not (model / "train_meta.json").is_file():
        train_detector(cfg, site_a, None, model, tc, show_progress=show_progress)
    ensure_tflite(model, size.variant, calibration=site_a)
    return model, json.loads((model / "train_meta.json").read_text())


def _score(tflite: Path, ds) -> float:
    from mlkit.evaluation import evaluate
    from mlkit.models.predict import TFLiteDetector

    det = TFLiteDetector(tflite / "model.tflite", num_threads=2)
    return float(evaluate(ds, lambda ims: det.predict(ims, score_threshold=0.05), show_progress=False).map50)


def _mine(stream, start: int, count: int, tflite: Path, store: Path, mining: dict) -> tuple[int, int]:
    """Run the edge worker (deployed model + filter) over site-B frames; hard ones go to the store."""
    from mlkit.joint.outputs import OutputConfig, OutputWriter
    from mlkit.joint.worker import JointWorker, StillFrame, WorkerConfig
    from mlkit.mining import build_filter
    from mlkit.models.predict import TFLiteDetector

    edge = TFLiteDetector(tflite / "model.tflite", num_threads=2)
    frames = (StillFrame(i, stream.load_image(i)) for i in range(start, min(start + count, len(stream))))
    hard = total = 0
    with OutputWriter(OutputConfig(hard_example_store=store), edge.meta.class_names) as writer:
        worker = JointWorker(edge, build_filter(mining), None, WorkerConfig(report_every_s=0), on_result=writer.write)
        for r in worker.run(frames):
            total += 1
            hard += r.is_hard
    return hard, total


def _oracle_labels(stream, store: Path, labels_dir: Path) -> None:
    """Ground truth for the stored hard frames, written as a labelling tool's YOLO export."""
    from mlkit.data.formats.yolo import label_text

    labels_dir.mkdir(parents=True, exist_ok=True)
    (labels_dir / "classes.txt").write_text("\n".join(stream.class_names) + "\n")
    for side in store.glob("frame_*.json"):
        rec = stream[int(side.stem.split("_")[1])]
        atomic_write_text(labels_dir / f"{side.stem}.txt", label_text(rec))


def run_path(out: Path, size: DemoSize, mode: str, data: dict, initial: Path, labeller: Path | None,
             max_rounds: int, echo: Callable[[str], None]) -> dict:
    """One relabelling path: fresh job, index, repository and store; stream chunks and rounds."""
    import shutil

    import yaml

    from mlkit.incremental.controller import Controller, InProcessRunner, KfpLocalRunner
    from mlkit.incremental.index import DatasetIndex, sample
    from mlkit.incremental.labels import auto_label, import_labels
    from mlkit.incremental.rounds import tflite_dir
    from mlkit.incremental.spec import parse_job
    from mlkit.serving.server import start_background_server

    started = time.time()
    root = out / mode
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cfg, _ = _configs(size)
    text = example_job_yaml(f"demo-{mode}", ".", size.min_samples, size.deploy_threshold, size.round_epochs,
                            size.variant, period=1, timer=("00:00", "00:00"),
                            input_shape=f"{cfg.input_height},{cfg.input_width}", batch_size=size.batch_size,
                            learning_rate=size.round_learning_rate)
    text = text.replace("url: ./initial-model", f"url: {initial.resolve()}")
    (root / "job.yaml").write_text(text)
    job = parse_job(yaml.safe_load(text), str(root / "job.yaml"), source=(root / "job.yaml").resolve())
    # The index starts with the site-A data the model learnt from (replay, never "new") and a site-A eval
    # share, so the deploy decision also sees forgetting.
    index = DatasetIndex(job.dataset_dir, cfg.class_names).create()
    site_a, n_eval = data["site_a"], max(2, len(data["site_a"]) // 10)
    index.add(sample(f"a{i:05d}", str(site_a[i].path), site_a[i].width, site_a[i].height, site_a[i].boxes,
                     site_a[i].labels, "eval" if i < n_eval else "train", "initial") for i in range(len(site_a)))
    runner = KfpLocalRunner(root / "pipeline") if size.runner == "kfp" else InProcessRunner()
    controller = Controller(job, runner=runner, echo=echo)
    controller.setup()
    store = job.hard_example_store
    server = start_background_server(job.serving_repository, poll_seconds=0.5, log_path=root / "server.log")
    rows = []
    try:
        def measure(round_no: int, note: str) -> dict:
            import httpx

            s = controller.state
            tfl = tflite_dir(s.deployed_model, size.variant)
            ready = httpx.get(f"{server.url}/v2/models/little/versions/{s.deployed_version}/ready", timeout=10)
            row = {"round": round_no, "deployed_version": s.deployed_version, "served": ready.status_code == 200,
                   "site_a_map50": _score(tfl, data["test_a"]), "site_b_map50": _score(tfl, data["test_b"]),
                   "note": note}
            echo(f"[{mode}] round {round_no}: v{s.deployed_version} site-A mAP@0.5 {row['site_a_map50']:.3f}, "
                 f"site-B {row['site_b_map50']:.3f} ({note})")
            rows.append(row)
            return row

        measure(0, "site-A model")
        for r in range(max_rounds):
            deployed = tflite_dir(controller.state.deployed_model, size.variant)
            hard, total = _mine(data["stream_b"], r * size.stream_chunk, size.stream_chunk, deployed, store,
                                job.mining_spec())
            if mode == "ground-truth":
                _oracle_labels(data["stream_b"], store, root / "labels")
                rep = import_labels(store, root / "labels", "yolo", job.dataset_dir, job.spec.dataset.trainProb)
            else:
                rep = auto_label(store, labeller, job.dataset_dir, job.spec.dataset.trainProb, threshold=0.5)
            echo(f"[{mode}] stream chunk {r + 1}: {hard}/{total} site-B frames hard; labels: {rep.line()}")
            t0, before = time.time(), controller.rounds_run
            msg = controller.poll_once()
            echo(f"[{mode}] {msg} ({time.time() - t0:.0f} s)")
            if controller.rounds_run == before:
                continue  # the trigger did not fire: more stream
            last = controller.state.last_round
            if last.deployed:
                _wait_served(server.url, last.version)
            measure(last.round, (f"deployed v{last.version}" if last.deployed else "kept") + f": {last.reason}")
            if last.deployed:
                break
    finally:
        server.stop()
    return {"mode": mode, "rows": rows, "state": controller.state.to_dict(),
            "wall_seconds": round(time.time() - started),
            "labeller": str(labeller) if labeller else "ground truth (oracle) via mlkit label import --format yolo"}


def _wait_served(url: str, version: int, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/v2/models/little/versions/{version}/ready", timeout=5)
        if r.status_code == 200:
            return
        time.sleep(0.3)
    raise MlkitError(f"the server did not hot-load version {version} within {timeout}s")


def chart(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for path_report, style in zip(report["paths"], ("-", "--"), strict=False):
        rounds = [r["round"] for r in path_report["rows"]]
        ax.plot(rounds, [r["site_b_map50"] for r in path_report["rows"]], style + "o", color="tab:blue",
                label=f"site B ({path_report['mode']})")
        ax.plot(rounds, [r["site_a_map50"] for r in path_report["rows"]], style + "s", color="tab:orange",
                label=f"site A ({path_report['mode']})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round (0 = site-A model)")
    ax.set_ylabel("mAP@0.5 of the deployed little model")
    ax.set_title("Incremental learning: held-out site A and site B")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(out_dir: str | Path, size: DemoSize, modes: Sequence[str] = ("ground-truth", "auto"),
             big_model: str | Path = "models/big/tflite/int8", max_rounds: int | None = None,
             echo: Callable[[str], None] = print, show_progress: bool = True) -> dict:
    out = Path(out_dir)
    t0 = time.time()
    data = prepare_data(out, size, show_progress)
    initial, meta = train_site_a(out, size, data["site_a"], show_progress)
    echo(f"site-A model: {meta['train_images']} images x {meta['epochs_run']} epochs in {meta['train_seconds']} s")
    labeller, note = None, None
    if "auto" in modes:
        big = Path(big_model)
        if (big / "model.tflite").is_file() or big.suffix == ".tflite" and big.is_file():
            labeller, note = big, f"auto-labels by the big model {big}"
        elif (FALLBACK_LABELLER / "model.tflite").is_file():
            labeller = FALLBACK_LABELLER
            note = (f"FALLBACK: {big} does not exist (the big model is not exported yet), so auto-labels come from "
                    f"{FALLBACK_LABELLER}, the full-profile little model trained on sites A and B - not the big model")
        else:
            raise MlkitError(f"auto-labelling needs the big model at {big} (or {FALLBACK_LABELLER}); train and export "
                             "it, or run with --labels ground-truth")
        echo(note)
    paths = []
    for mode in modes:
        paths.append(run_path(out, size, mode, data, initial, labeller if mode == "auto" else None,
                              max_rounds or size.max_rounds, echo))
    previous = out / "report.json"
    if previous.is_file():  # paths measured by an earlier run (e.g. --labels auto once the big model exists)
        old = json.loads(previous.read_text())
        if old.get("size") == size.name:
            paths = [p for p in old["paths"] if p["mode"] not in modes] + paths
            note = note or old.get("labeller_note")
    order = {"ground-truth": 0, "auto": 1}
    paths.sort(key=lambda p: order.get(p["mode"], 2))
    report = {"size": size.name, "site_a_model": meta, "labeller_note": note, "paths": paths,
              "wall_seconds": round(time.time() - t0, 1)}
    report["chart"] = str(chart(report, out / "incremental.png"))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report


def site_b_viewers(out_dir: str | Path, report: dict, mode: str | None = None, limit: int = 6,
                   score_threshold: float = 0.3) -> tuple:
    """Two DetectionViewers of held-out site-B images: the site-A model's boxes, then the last deployed model's.

    ``mode`` picks the relabelling path (default: the report's first); ground truth is drawn in both.
    """
    from mlkit.data.layout import load_split
    from mlkit.incremental.rounds import tflite_dir
    from mlkit.models.predict import TFLiteDetector
    from mlkit.viz import DetectionViewer

    out = Path(out_dir)
    paths = {p["mode"]: p for p in report["paths"]}
    if not paths:
        raise MlkitError("the report has no relabelling path: run the demo first")
    if mode is not None and mode not in paths:
        raise MlkitError(f"the report has no {mode!r} path; it has {', '.join(paths)}")
    path = paths[mode] if mode is not None else report["paths"][0]
    variant = DEMO_SIZES[report["size"]].variant
    test_b = load_split(out / "data" / "test_b", "all")
    test_b = test_b.subset(range(min(limit, len(test_b))))
    images = [test_b.load_image(i) for i in range(len(test_b))]
    viewers = []
    for model, title in ((out / "initial-model", "site-A model (round 0)"),
                         (Path(path["state"]["deployed_model"]), f"deployed v{path['state']['deployed_version']} "
                                                                  f"({path['mode']} labels)")):
        det = TFLiteDetector(tflite_dir(model, variant) / "model.tflite", num_threads=2)
        predictions = [det.predict([im], score_threshold=0.05)[0] for im in images]
        viewers.append(DetectionViewer.from_dataset(test_b, predictions, score_threshold=score_threshold,
                                                    title=f"site B, {title}"))
    return tuple(viewers)


def format_report(report: dict) -> str:
    lines = [f"{'path':<13} {'round':>5} {'version':>7} {'site-A mAP@.5':>13} {'site-B mAP@.5':>13}  note", "-" * 78]
    for p in report["paths"]:
        for r in p["rows"]:
            lines.append(f"{p['mode']:<13} {r['round']:>5} {'v' + str(r['deployed_version']):>7} "
                         f"{r['site_a_map50']:>13.3f} {r['site_b_map50']:>13.3f}  {r['note'][:60]}")
        first = next((r for r in p["rows"][1:] if r["note"].startswith("deployed")), None)
        base = p["rows"][0]
        if first is not None:
            db = 100 * (first["site_b_map50"] - base["site_b_map50"])
            da = 100 * (first["site_a_map50"] - base["site_a_map50"])
            lines.append(f"{'':<13} first deployment: site B {db:+.1f} pts, site A {da:+.1f} pts")
        else:
            lines.append(f"{'':<13} no deployment in {len(p['rows']) - 1} rounds")
    if report.get("labeller_note"):
        lines.append(report["labeller_note"])
    lines += [f"chart: {report['chart']}", f"wall time: {report['wall_seconds']} s"]
    return "\n".join(lines)
