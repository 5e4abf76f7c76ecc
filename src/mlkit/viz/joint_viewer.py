"""``JointInferenceViewer``: a joint-inference run frame by frame, edge and cloud answers side by side.

Each frame shows the edge (little model) boxes on the left and the cloud (big model) boxes on the right, with
the hard-example filter's verdict and score, and why the edge result stood when the cloud did not answer.
"Hard frames only" narrows the browsing to the frames that were sent to the cloud.

``JointInferenceViewer.from_results("joint-output/results.jsonl", frames="site.avi")``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.imaging import draw_detections
from mlkit.viz.records import FrameImages, JointRecord, class_names_in, load_joint_records, read_jsonl
from mlkit.viz.widgets import Viewer, placeholder, png_bytes


class JointInferenceViewer(Viewer):
    """Browse ``records`` (one per frame) over ``frames``; ``hard_only`` starts on the hard frames."""

    css_class = "mlkit-joint-viewer"

    def __init__(self, records: Sequence[JointRecord], frames: FrameImages, class_names: Sequence[str], *,
                 hard_only: bool = False, score_threshold: float = 0.3, title: str = "") -> None:
        super().__init__(title)
        w = self._w
        self.records = sorted(records, key=lambda r: r.frame)
        self.frames, self.class_names = frames, tuple(class_names)
        self.shown: dict[str, Detections | None] = {"edge": None, "cloud": None}
        self.visible: list[JointRecord] = []
        if not self.records:
            self.fail("no frames to show" + (f" in {title}" if title else ""))
            return
        hard = sum(r.is_hard for r in self.records)
        self.hard_only = w.Checkbox(bool(hard_only and hard), description=f"hard frames only ({hard})",
                                    indent=False, layout=w.Layout(width="auto"))
        self.index = w.IntSlider(0, min=0, max=0, description="frame", continuous_update=False)
        self.score = w.FloatSlider(float(score_threshold), min=0.0, max=1.0, step=0.05, description="min score",
                                   readout_format=".2f", continuous_update=False)
        # each panel is half the width; its picture fills it, so edge and cloud stay the same size
        self.edge_image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.cloud_image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.edge_image.add_class("mlkit-image")
        self.cloud_image.add_class("mlkit-image")
        self.edge_caption, self.cloud_caption, self.info = w.HTML(), w.HTML(), w.HTML()
        self.hard_only.observe(lambda _change: self._refilter(), names="value")
        self.index.observe(lambda _change: self.render(), names="value")
        self.score.observe(lambda _change: self.render(), names="value")
        panel = {"width": "50%", "padding": "0 4px"}
        self.body.children = [
            w.HBox([self.index, self.score, self.hard_only]), self.info,
            w.HBox([w.VBox([self.edge_caption, self.edge_image], layout=w.Layout(**panel)),
                    w.VBox([self.cloud_caption, self.cloud_image], layout=w.Layout(**panel))])]
        self.summary = (f"{len(self.records)} frames, {hard} hard ({100 * hard / len(self.records):.0f}% sent to "
                        f"the cloud), {sum(r.cloud is not None for r in self.records)} cloud answers")
        self.title.value += f" <small>{html.escape(self.summary)}</small>"
        self._refilter()

    @classmethod
    def from_results(cls, results: str | Path, frames: str | Path | Dataset | Sequence[np.ndarray], *,
                     class_names: Sequence[str] | None = None, hard_only: bool = False, score_threshold: float = 0.3,
                     title: str | None = None) -> JointInferenceViewer:
        """A joint run's ``results.jsonl`` over the video (or images) it was run on."""
        title = title if title is not None else f"joint inference: {Path(results).name}"
        try:
            records = load_joint_records(results)
            images = FrameImages(frames)
            names = tuple(class_names) if class_names is not None else class_names_in(read_jsonl(results))
        except (MlkitError, OSError) as exc:
            viewer = cls([], FrameImages([]), (), title=title)
            viewer.fail(str(exc))
            return viewer
        if not records:
            viewer = cls([], images, names, title=title)
            viewer.fail(f"{results} has no frames yet (is the run still starting, or did it fail?)")
            return viewer
        return cls(records, images, names, hard_only=hard_only, score_threshold=score_threshold, title=title)

    @property
    def current(self) -> JointRecord:
        return self.visible[self.index.value]

    def _refilter(self) -> None:
        self.visible = [r for r in self.records if r.is_hard or not self.hard_only.value]
        if not self.visible:  # cannot happen through the checkbox (it is off without hard frames); kept for safety
            self.show_message("no hard frames in this run", "info")
            self.visible = list(self.records)
        # Moving max below the current value makes the slider clamp (and render); render once either way.
        with self.index.hold_trait_notifications():
            self.index.value = 0
            self.index.max = len(self.visible) - 1
        self.render()

    def render(self) -> None:
        rec = self.current
        try:
            image = self.frames.get(rec.frame)
        except (MlkitError, OSError) as exc:
            self.show_message(str(exc))
            return
        self.show_message("")
        t = self.score.value
        edge = rec.edge.filter(t)
        self.shown["edge"] = edge
        self.edge_image.value = png_bytes(draw_detections(image, edge, self.class_names))
        self.edge_caption.value = (f"<b>edge</b> (little model): {len(edge)} boxes ≥ {t:.2f}"
                                   + (f", {rec.edge_ms:.0f} ms" if rec.edge_ms is not None else ""))
        if rec.cloud is not None:
            cloud = rec.cloud.filter(t)
            self.shown["cloud"] = cloud
            self.cloud_image.value = png_bytes(draw_detections(image, cloud, self.class_names))
            self.cloud_caption.value = (f"<b>cloud</b> (big model): {len(cloud)} boxes ≥ {t:.2f}"
                                        + (f", {rec.cloud_ms:.0f} ms" if rec.cloud_ms is not None else ""))
        else:
            self.shown["cloud"] = None
            h, w = image.shape[:2]
            self.cloud_image.value = png_bytes(placeholder(w, h))
            why = "easy frame: not sent" if not rec.is_hard else f"no cloud answer ({rec.fallback}): edge result kept"
            self.cloud_caption.value = f"<b>cloud</b>: {html.escape(why)}"
        verdict = ('<span style="color:#c0392b"><b>hard</b></span>' if rec.is_hard else "easy")
        self.info.value = (f"frame <b>{rec.frame}</b> (t = {rec.timestamp:.2f} s) · {verdict} · filter score "
                           f"{rec.hem_score:.3f} · final result from {'cloud' if rec.cloud is not None else 'edge'}"
                           f" · {self.index.value + 1} of {len(self.visible)} shown")


__all__ = ["JointInferenceViewer"]
