"""`make demo`: the object-detection scenario end to end on this machine.

By default it fine-tunes the committed little (edge) and big (cloud) detectors on a construction site they
never saw (synthetic site C) with the object-detection KFP pipeline, run by kfp.local: generate the site's
data, train both from the committed weights, convert to four TFLite variants, evaluate, gate on mAP, publish
and serve. The console gets one line per pipeline step, then a table of each model's accuracy on the new
site before and after; the logs of KFP and TensorFlow go to ``<out>/demo.log``. ``from_scratch`` trains
both from random weights instead (the ``demo-scratch`` profile).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlkit.data.atomic import atomic_write_text

VARIANTS = ("fp32", "fp16", "dynamic", "int8")


def fidelity_rows(summary: dict) -> list[dict]:
    rows = []
    for name, m in summary["models"].items():
        fid = m["fidelity"]
        rows.append({"model": name, "variant": "keras", "map50": fid.get("keras_map50"), "delta_pts": 0.0,
                     "size_mb": None, "ms_per_image": fid.get("keras_ms_per_image")})
        for v in VARIANTS:
            if f"{v}_map50" in fid:
                rows.append({"model": name, "variant": v, "map50": fid[f"{v}_map50"],
                             "delta_pts": fid.get(f"{v}_delta_map50"), "size_mb": fid.get(f"{v}_size_mb"),
                             "ms_per_image": fid.get(f"{v}_ms_per_image")})
    return rows


def format_table(summary: dict) -> str:
    def f(x, spec):
        return "-" if x is None else format(x, spec)

    lines = ["Edge (little) and cloud (big) detectors on the held-out test split", "",
             f"{'model':<7} {'variant':<8} {'mAP@.5':>7} {'vs keras':>9} {'MB':>6} {'ms/img':>7}", "-" * 48]
    for r in fidelity_rows(summary):
        lines.append(f"{r['model']:<7} {r['variant']:<8} {f(r['map50'], '7.3f')} {f(r['delta_pts'], '+8.2f')}p "
                     f"{f(r['size_mb'], '6.2f')} {f(r['ms_per_image'], '7.2f')}")
    g = summary["gate"]
    lines += ["", f"mAP gate: big {summary['tflite_variant']} mAP@0.5 {g['big_map50']:.3f} >= {g['threshold']:g} -> "
              + ("passed, models published" if g["passed"] else "not passed, nothing published")]
    return "\n".join(lines)


def prediction_grid(summary: dict, out_path: Path, count: int = 3, variant: str = "int8") -> Path:
    """Ground truth and little/big predictions side by side for a few test images."""
    from mlkit.data.dataset import write_rgb
    from mlkit.data.layout import load_split
    from mlkit.imaging import draw_detections, draw_ground_truth, image_grid
    from mlkit.models.predict import TFLiteDetector

    test = load_split(summary["dataset"], "test")
    dets = {name: TFLiteDetector(Path(m["tflite"]) / variant / "model.tflite") for name, m in summary["models"].items()}
    tiles = []
    for i in range(min(count, len(test))):
        img, rec = test.load_image(i), test[i]
        tiles.append(draw_ground_truth(img, rec.boxes, rec.labels, test.class_names))
        for name in ("little", "big"):
            tiles.append(draw_detections(img, dets[name].predict([img])[0], test.class_names))
    write_rgb(out_path, image_grid(tiles, cols=3), quality=90)
    return out_path


def query_served(summary: dict, count: int = 3) -> list[dict]:
    """Ask the served models about a few test images over KServe v2 REST; one row per (model, image)."""
    from mlkit.client.http import ServingClient
    from mlkit.data.layout import load_split

    test = load_split(summary["dataset"], "test")
    images = [test.load_image(i) for i in range(min(count, len(test)))]
    rows = []
    for name in ("little", "big"):
        with ServingClient(summary["url"], name, protocol="v2") as client:
            for i, det in enumerate(client.predict(images)):
                rows.append({"model": name, "image": test[i].path.name, "detections": len(det),
                             "answer": det.to_list(test.class_names)[:3]})
    return rows


def format_answers(rows: list[dict], url: str) -> str:
    lines = [f"Served at {url} (KServe v2 REST); answers for {len({r['image'] for r in rows})} test images:"]
    for r in rows:
        top = ", ".join(f"{d['label']} {d['score']:.2f}" for d in r["answer"]) or "nothing above the threshold"
        lines.append(f"  {r['model']:<6} {r['image']:<18} {r['detections']:>2} boxes  e.g. {top}")
    return "\n".join(lines)


def committed_baseline(dataset: str | Path, variant: str = "int8") -> dict[str, float]:
    """mAP@0.5 of the committed (bundled) models on the dataset's test split, before any fine-tuning."""
    from mlkit.data.layout import load_split
    from mlkit.evaluation import evaluate
    from mlkit.models.bundled import NAMES, bundled_model
    from mlkit.models.predict import TFLiteDetector

    test = load_split(dataset, "test")
    out = {}
    for name in NAMES:
        detector = TFLiteDetector(bundled_model(name, variant) / "model.tflite", num_threads=2)
        result = evaluate(test, lambda images, d=detector: d.predict(images, score_threshold=0.05),
                          show_progress=False)
        out[name] = float(result.map50)
    return out


def format_comparison(summary: dict, baseline: dict[str, float], site: str) -> str:
    """Each model's mAP@0.5 on the new site: the committed model as shipped, then fine-tuned by the pipeline."""
    lines = [f"Site {site}, new to both models: mAP@0.5 on its test split ({summary['tflite_variant']} TFLite)", "",
             f"{'model':<8} {'committed':>10} {'fine-tuned':>11}", "-" * 31]
    for name, m in summary["models"].items():
        lines.append(f"{name:<8} {baseline[name]:>10.3f} {float(m['evaluation']['map50']):>11.3f}")
    return "\n".join(lines)


def step_figure(name: str, outputs: dict) -> str | None:
    """The key figure of a finished pipeline step, for its progress line (None: not worth a line)."""
    from mlkit.runlog import artifact_metadata

    kind = name.rpartition("-")[0] if name.startswith(("train-", "convert-", "evaluate-")) else name
    if kind in ("generate-dataset", "download-dataset"):
        meta = artifact_metadata(outputs, "dataset")
        counts = meta.get("counts") or {}
        sites = ",".join((meta.get("generator") or {}).get("sites", [])) or "?"
        return (f"{sum(counts.values())} images of site {sites} "
                f"({', '.join(f'{n} {split}' for split, n in counts.items())})")
    if kind == "train":
        m, meta = artifact_metadata(outputs, "metrics"), artifact_metadata(outputs, "model")
        start = "from the committed model" if meta.get("init_from") else "from random weights"
        epochs = m.get("epochs_run", 0)
        return f"keras mAP@.5 {m.get('map50', float('nan')):.3f}, {epochs:g} epoch{'s' * (epochs != 1)} {start}"
    if kind == "convert":
        f = artifact_metadata(outputs, "fidelity")
        return (f"{', '.join(v for v in VARIANTS if f'{v}_map50' in f)}; int8 mAP@.5 "
                f"{f.get('int8_map50', float('nan')):.3f} ({f.get('int8_delta_map50', float('nan')):+.1f} pts), "
                f"{f.get('int8_size_mb', float('nan')):.1f} MB")
    if kind == "evaluate":
        m = artifact_metadata(outputs, "metrics")
        return f"mAP@.5 {m.get('map50', float('nan')):.3f}, {m.get('images_per_second', 0):.0f} img/s"
    if kind == "publish":
        models = artifact_metadata(outputs, "repository").get("models", {})
        return "model repository: " + ", ".join(models.values())
    if kind == "serve":
        return f"KServe v2 at {(outputs.get('parameterValues') or {}).get('url', '?')}"
    return None


def run_demo(out_dir: str | Path, profile: str | None = None, from_scratch: bool = False, echo=print,
             keep_serving: bool = False) -> dict:
    """Run the demo (see the module's docstring); returns the report also written to ``<out>/report.json``."""
    from mlkit.errors import MlkitError
    from mlkit.pipelines import object_detection
    from mlkit.profiles import get_profile
    from mlkit.runlog import TaskProgress, captured_output, task_display_names

    profile = profile or ("demo-scratch" if from_scratch else "demo")
    init_from = "" if from_scratch else "bundled"
    object_detection.run_arguments(profile=profile, init_from=init_from)  # bad arguments fail before any work
    site = ",".join(get_profile(profile).data.sites)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "demo.log"
    t0 = time.time()
    start = "from random weights" if from_scratch else "from the committed models"
    echo(f"mlkit demo: the object-detection pipeline ({profile} profile) trains little and big {start} on "
         f"site {site}, with kfp.local.")
    echo(f"KFP and TensorFlow logs: {log_path}")
    echo("")
    answers: list[dict] = []
    with captured_output(log_path) as capture:
        capture.on_line = TaskProgress(capture.say, task_display_names(object_detection.object_detection),
                                       step_figure)
        try:
            summary = object_detection.run_local(out_dir / "pipeline", profile=profile, init_from=init_from)
        except RuntimeError as exc:  # a task failed: its log is in the file
            raise MlkitError(f"{exc}; its log is in {log_path}") from None
        baseline = None if from_scratch else committed_baseline(summary["dataset"], summary["tflite_variant"])
        if summary.get("url"):
            from mlkit.serving import lifecycle

            try:
                answers = query_served(summary)
            finally:
                if not keep_serving:
                    lifecycle.stop("object-detection")
        grid = prediction_grid(summary, out_dir / "predictions.jpg")
    report = {"profile": profile, "init_from": init_from, "wall_seconds": round(time.time() - t0, 1),
              "summary": summary, "fidelity": fidelity_rows(summary), "committed_on_new_site": baseline,
              "predictions": str(grid), "served_answers": answers, "log": str(log_path)}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=str))
    sections = [format_table(summary)]
    if baseline is not None:
        sections.insert(0, format_comparison(summary, baseline, site))
    if answers:
        sections.append(format_answers(answers, summary["url"]))
    md = ["# mlkit demo report", "", f"Profile `{profile}`, wall time {report['wall_seconds']:.0f} s.", ""]
    for text in sections:
        echo("")
        echo(text)
        md += ["```", text, "```", ""]
    md += ["![predictions: ground truth, little, big](predictions.jpg)", ""]
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    echo("")
    if keep_serving and summary.get("url"):
        echo(f"the server keeps running at {summary['url']}; stop it with: mlkit serve stop object-detection")
    echo(f"report: {out_dir / 'report.md'}  ({report['wall_seconds']:.0f} s)")
    return report
