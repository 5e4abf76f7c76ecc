"""Draw docs/images/real_people.png: real test images (never trained on) with the person boxes of the real labeller
and of the models before and after the real-image recipe (models/real-recipe.sh).

    python docs/make_real_figure.py --image data/real/store_vtest/vtest_000710.jpg --image ... \
        --labeller data/real/repo/ssdlite/1 --model "before=OLD/tflite/int8" --model "after=models/big/tflite/int8"
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--image", "images", multiple=True, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--labeller", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "models", multiple=True, required=True, help="NAME=PATH, one column each.")
@click.option("--score", type=float, default=0.4, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/images/real_people.png"), show_default=True)
def main(images, labeller, models, score, out) -> None:
    import cv2

    from mlkit.data.dataset import read_rgb, write_rgb
    from mlkit.detections import Detections
    from mlkit.imaging import draw_detections
    from mlkit.models.predict import open_detector

    columns = [("silver labels", open_detector(labeller), 0.5)]
    for spec in models:
        name, _, path = spec.partition("=")
        columns.append((name, open_detector(path), score))
    rows = []
    for path in images:
        rgb = read_rgb(path)
        scale = 360 / rgb.shape[0]
        tiles = []
        for title, det, threshold in columns:
            (d,) = det.predict([rgb], score_threshold=threshold)
            names = det.meta.class_names
            keep = np.array([names[int(lab)] == "person" for lab in d.labels], bool)
            d = Detections(d.boxes[keep], d.scores[keep], d.labels[keep])
            tile = draw_detections(rgb, d, names, thickness=2)
            tile = cv2.resize(tile, (int(rgb.shape[1] * scale), 360))
            cv2.putText(tile, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles]))
    width = max(r.shape[1] for r in rows)
    grid = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(out, grid)
    click.echo(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
