"""`make demo`: the object-detection scenario end to end on this machine.

Runs the KFP pipeline with kfp.local (generate data, train little and big, convert
to four TFLite variants, evaluate, gate on mAP, publish), then prints one table of
edge and cloud accuracy and every variant's fidelity and speed, and writes a report
with a grid of predictions to the output folder.
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


def reference_models(models_dir: Path) -> list[dict]:
    """Cards of the committed full-profile models, for comparison with the demo's short training."""
    rows = []
    for card in sorted(models_dir.glob("*/model_card.json")):
        c = json.loads(card.read_text())
        test = (c.get("metrics") or {}).get("test") or {}
        rows.append({"model": c.get("name"), "map50": test.get("map50"), "map": test.get("map"),
                     "train_seconds": (c.get("training") or {}).get("train_seconds")})
    return rows


def prediction_grid(summary: dict, out_path: Path, count: int = 3, variant: str = "int8") -> Path:
    """Ground truth and little/big predictions side by side for a few test images."""
    from mlkit.data.dataset import write_rgb
    from mlkit.data.layout import load_split
    from mlkit.models.predict import TFLiteDetector
    from mlkit.viz.draw import draw_detections, draw_ground_truth, image_grid

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


def run_demo(out_dir: str | Path, profile: str = "demo", repo_root: Path | None = None, echo=print,
             keep_serving: bool = False) -> dict:
    from mlkit.pipeline_cli import find_repo_root, load_pipeline

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    module = load_pipeline("object-detection", repo_root)
    echo(f"running the object-detection pipeline ({profile} profile) with kfp.local; outputs in {out_dir}")
    summary = module.run_local(out_dir / "pipeline", profile=profile)
    table = format_table(summary)
    echo("")
    echo(table)
    answers = []
    if summary.get("url"):
        from mlkit.serving import lifecycle

        try:
            answers = query_served(summary)
            echo("")
            echo(format_answers(answers, summary["url"]))
        finally:
            if not keep_serving:
                lifecycle.stop("object-detection")
        if keep_serving:
            echo("the server keeps running; stop it with: mlkit serve stop object-detection")
    grid = prediction_grid(summary, out_dir / "predictions.jpg")
    refs = reference_models(find_repo_root(repo_root) / "models")
    report = {"profile": profile, "wall_seconds": round(time.time() - t0, 1), "summary": summary,
              "fidelity": fidelity_rows(summary), "reference_models": refs, "predictions": str(grid),
              "served_answers": answers}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=str))
    md = ["# mlkit demo report", "", f"Profile `{profile}`, wall time {report['wall_seconds']:.0f} s.", "",
          "```", table, "```", "", "![predictions: ground truth, little, big](predictions.jpg)", ""]
    if refs:
        md += ["Committed full-profile models (models/*/model_card.json):", "", "| model | mAP@.5 | mAP |",
               "|---|---|---|"]
        md += [f"| {r['model']} | {r['map50']:.3f} | {r['map']:.3f} |" for r in refs if r["map50"] is not None]
        echo("")
        echo("For comparison, the committed full-profile models: "
             + ", ".join(f"{r['model']} mAP@.5 {r['map50']:.3f}" for r in refs if r["map50"] is not None))
    atomic_write_text(out_dir / "report.md", "\n".join(md) + "\n")
    echo("")
    echo(f"report: {out_dir / 'report.md'}  ({report['wall_seconds']:.0f} s)")
    return report
