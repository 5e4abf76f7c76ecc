"""``DetectionViewer``: browse images with their boxes - per-class toggles, a score slider, ground truth vs predictions.

Ground truth is drawn thin and white, predictions thick in their class's colour with the score. Three ways in:

- ``DetectionViewer.from_dataset(ds, predictions=...)``: a ``Dataset`` (its boxes are the ground truth), with
  predictions as a list, ``{index: Detections}`` or a results JSON-lines file;
- ``DetectionViewer.from_jsonl("results.jsonl", frames="clip.avi")``: a stream's (or joint run's) results
  over the frames they were made from;
- ``DetectionViewer.from_endpoint(url, model, images)``: asks a live model server for each image shown.

Problems a user can meet (empty data, a missing file, a server that is down) become a message in the widget.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.imaging import PALETTE, draw_detections, draw_ground_truth
from mlkit.viz.records import FrameImages, class_names_in, load_predictions, read_jsonl
from mlkit.viz.widgets import Viewer, png_bytes

GroundTruth = tuple[np.ndarray, np.ndarray]  # boxes [N, 4], labels [N]


def _swatch(rgb: tuple[int, int, int], name: str, outline: bool = False) -> str:
    style = f"border:2px solid rgb{rgb};" if outline else f"background:rgb{rgb};"
    return (f'<span style="display:inline-block;width:10px;height:10px;{style}margin:0 3px 0 8px"></span>'
            f"{html.escape(name)}")


def _keep(labels: np.ndarray, enabled: set[int]) -> np.ndarray:
    return np.isin(labels, sorted(enabled)) if len(labels) else np.zeros(0, bool)


class DetectionViewer(Viewer):
    """Browse ``frames`` (indices ``indices``) with predictions and/or ground truth.

    ``predictions``: ``{index: Detections}``; ``predict``: a callable ``image -> Detections`` asked for each
    image shown (a live endpoint), cached; ``ground_truth``: ``{index: (boxes, labels)}``.
    """

    css_class = "mlkit-detection-viewer"

    def __init__(self, frames: FrameImages, class_names: Sequence[str], indices: Sequence[int], *,
                 predictions: Mapping[int, Detections] | None = None,
                 predict: Callable[[np.ndarray], Detections] | None = None,
                 ground_truth: Mapping[int, GroundTruth] | None = None, score_threshold: float = 0.3,
                 title: str = "", names: Mapping[int, str] | None = None) -> None:
        super().__init__(title)
        w = self._w
        self.frames, self.class_names = frames, tuple(class_names)
        self.indices = list(indices)
        self.predictions = dict(predictions or {})
        self.ground_truth = dict(ground_truth or {})
        self._predict, self._names = predict, dict(names or {})
        self.counts: dict[str, int] = {}
        self.shown_predictions = Detections()
        self.shown_ground_truth: GroundTruth = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        if not self.indices:
            self.fail("no images to show" + (f" in {title}" if title else ""))
            return
        has_pred = predictions is not None or predict is not None
        self.index = w.IntSlider(0, min=0, max=len(self.indices) - 1, description="image", continuous_update=False)
        self.score = w.FloatSlider(float(score_threshold), min=0.0, max=1.0, step=0.05, description="min score",
                                   readout_format=".2f", continuous_update=False)
        self.score.layout.display = "" if has_pred else "none"
        self.class_toggles = [w.ToggleButton(True, description=name, tooltip=f"show {name} boxes",
                                             layout=w.Layout(width="auto")) for name in self.class_names]
        self.show_ground_truth = w.Checkbox(bool(self.ground_truth), description="ground truth", indent=False,
                                            layout=w.Layout(width="auto"))
        self.show_ground_truth.layout.display = "" if self.ground_truth else "none"
        legend = "".join(_swatch(PALETTE[i % len(PALETTE)], n) for i, n in enumerate(self.class_names))
        if self.ground_truth:
            legend += _swatch((60, 60, 60), "ground truth (white, thin)", outline=True)
        # flex-start: natural size (a flex column would stretch the picture to the page width)
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", align_self="flex-start"))
        self.image.add_class("mlkit-image")
        self.info = w.HTML()
        for control in (self.index, self.score, self.show_ground_truth, *self.class_toggles):
            control.observe(lambda _change: self.render(), names="value")
        self.body.children = [w.HBox([self.index, self.score]),
                              w.HBox([*self.class_toggles, self.show_ground_truth]),
                              w.HTML(f"<small>{legend}</small>"), self.image, self.info]
        self.render()

    # ---------------------------------------------------------------- constructors
    @classmethod
    def _failed(cls, text: str, title: str = "") -> DetectionViewer:
        viewer = cls(FrameImages([]), (), [], title=title)
        viewer.fail(text)
        return viewer

    @classmethod
    def from_dataset(cls, dataset: Dataset, predictions: Sequence[Detections] | Mapping[int, Detections] | str
                     | Path | None = None, *, limit: int | None = None, score_threshold: float = 0.3,
                     title: str | None = None) -> DetectionViewer:
        """Images of ``dataset`` with its ground truth, and ``predictions`` (by image index) when given."""
        title = title if title is not None else f"{dataset.name}: {len(dataset)} images"
        try:
            if isinstance(predictions, (str, Path)):
                predictions = load_predictions(predictions)
            elif predictions is not None and not isinstance(predictions, Mapping):
                if len(predictions) != len(dataset):
                    raise MlkitError(f"{len(predictions)} predictions for {len(dataset)} images")
                predictions = dict(enumerate(predictions))
        except (MlkitError, OSError) as exc:
            return cls._failed(str(exc), title)
        n = len(dataset) if limit is None else min(limit, len(dataset))
        gt = {i: (rec.boxes, rec.labels) for i, rec in enumerate(dataset.images[:n])}
        names = {i: rec.path.name for i, rec in enumerate(dataset.images[:n])}
        return cls(FrameImages(dataset), dataset.class_names, range(n), predictions=predictions, ground_truth=gt,
                   score_threshold=score_threshold, title=title, names=names)

    @classmethod
    def from_jsonl(cls, path: str | Path, frames: str | Path | Dataset | Sequence[np.ndarray], *,
                   class_names: Sequence[str] | None = None, key: str | None = None, limit: int | None = None,
                   ground_truth: Mapping[int, GroundTruth] | None = None, score_threshold: float = 0.3,
                   title: str | None = None) -> DetectionViewer:
        """A results file (``mlkit stream`` or joint inference) over its frames. Ground truth: ``{frame: (boxes,
        labels)}`` (a synthetic video's ``VideoLabels.frames``), or taken from ``frames`` when it is a ``Dataset``."""
        title = title if title is not None else Path(path).name
        try:
            records = read_jsonl(path)
            if not records:
                raise MlkitError(f"{path} has no results yet (is the run still starting, or did it fail?)")
            predictions = load_predictions(path, key)
            images = FrameImages(frames)
        except (MlkitError, OSError) as exc:
            return cls._failed(str(exc), title)
        names = tuple(class_names) if class_names is not None else (
            frames.class_names if isinstance(frames, Dataset) else class_names_in(records))
        indices = sorted(predictions)[:limit]
        gt = dict(ground_truth) if ground_truth is not None else {
            i: (frames.images[i].boxes, frames.images[i].labels) for i in indices
            if i < len(frames)} if isinstance(frames, Dataset) else None
        return cls(images, names, indices, predictions=predictions, ground_truth=gt,
                   score_threshold=score_threshold, title=title)

    @classmethod
    def from_endpoint(cls, url: str, model: str, images: str | Path | Dataset | Sequence[np.ndarray], *,
                      class_names: Sequence[str] | None = None, protocol: str = "v2", limit: int | None = None,
                      score_threshold: float = 0.3, timeout: float = 10.0, title: str | None = None,
                      token: str | None = None) -> DetectionViewer:
        """Ask the model server at ``url`` for each image shown (answers are cached); ``token``: the server's bearer
        token, for a server started with ``--auth-token-file``."""
        from mlkit.client.http import ServingClient

        title = title if title is not None else f"{model} at {url}"
        try:
            frames = FrameImages(images)
            client = ServingClient(url, model, protocol=protocol, timeout=timeout, retries=1, token=token)
        except MlkitError as exc:
            return cls._failed(str(exc), title)
        # Boxes down to 0.05 come back, so the slider can go lower than the default without asking again.
        low = min(0.05, score_threshold)

        def predict(image: np.ndarray) -> Detections:
            return client.predict([image], score_threshold=low)[0]

        names = tuple(class_names) if class_names is not None else (
            images.class_names if isinstance(images, Dataset) else ())
        gt = {i: (r.boxes, r.labels) for i, r in enumerate(images.images)} if isinstance(images, Dataset) else None
        n = len(frames) if limit is None else min(limit, len(frames))
        viewer = cls(frames, names, range(n), predict=predict, ground_truth=gt, score_threshold=score_threshold,
                     title=title)
        viewer.client = client
        return viewer

    # ---------------------------------------------------------------- state
    @property
    def current(self) -> int:
        """The frame index shown."""
        return self.indices[self.index.value]

    @property
    def enabled_classes(self) -> set[int]:
        return {i for i, t in enumerate(self.class_toggles) if t.value}

    def _predictions_for(self, index: int) -> Detections | None:
        if index in self.predictions:
            return self.predictions[index]
        if self._predict is None:
            return None
        from mlkit.client.http import ServingError

        try:
            det = self._predict(self.frames.get(index))
        except (ServingError, MlkitError, OSError) as exc:
            self.show_message(f"no predictions for image {index}: {exc}")
            return None
        self.show_message("")
        self.predictions[index] = det
        return det

    def _widen_classes(self, det: Detections | None, labels: np.ndarray) -> None:
        """A server may know more classes than we were told: add toggles for ids seen for the first time."""
        seen = [int(v) for v in (*(det.labels if det is not None else ()), *labels)]
        if seen and max(seen) >= len(self.class_toggles):
            extra = [str(i) for i in range(len(self.class_toggles), max(seen) + 1)]
            self.class_names = (*self.class_names, *extra)
            for name in extra:
                t = self._w.ToggleButton(True, description=name, layout=self._w.Layout(width="auto"))
                t.observe(lambda _change: self.render(), names="value")
                self.class_toggles.append(t)
            self.body.children[1].children = [*self.class_toggles, self.show_ground_truth]

    def render(self) -> None:
        """Draw the current image with what the controls select."""
        index = self.current
        try:
            image = self.frames.get(index)
        except (MlkitError, OSError) as exc:
            self.show_message(str(exc))
            return
        det = self._predictions_for(index)
        boxes, labels = self.ground_truth.get(index, (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
        self._widen_classes(det, labels)
        enabled = self.enabled_classes
        drawn = image
        gt_keep = _keep(labels, enabled)
        counts = {"ground_truth": int(gt_keep.sum())}
        if self.show_ground_truth.value and gt_keep.any():
            self.shown_ground_truth = (boxes[gt_keep], labels[gt_keep])
            drawn = draw_ground_truth(drawn, *self.shown_ground_truth, self.class_names)
        else:
            self.shown_ground_truth = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        if det is not None:
            by_score = det.scores >= self.score.value
            by_class = _keep(det.labels, enabled)
            keep = by_score & by_class
            self.shown_predictions = Detections(det.boxes[keep], det.scores[keep], det.labels[keep])
            counts |= {"predicted": len(det), "shown": int(keep.sum()), "below_score": int((~by_score).sum()),
                       "hidden_class": int((by_score & ~by_class).sum())}
            drawn = draw_detections(drawn, self.shown_predictions, self.class_names)
        else:
            self.shown_predictions = Detections()
        self.counts = counts
        self.image.value = png_bytes(drawn)
        name = self._names.get(index, f"frame {index}")
        parts = [f"<b>{html.escape(name)}</b> ({self.index.value + 1} of {len(self.indices)})"]
        if det is not None:
            parts.append(f"{counts['shown']} of {counts['predicted']} predicted boxes shown "
                         f"({counts['below_score']} below {self.score.value:.2f}, "
                         f"{counts['hidden_class']} of hidden classes)")
        if self.ground_truth:
            parts.append(f"{counts['ground_truth']} ground-truth boxes" +
                         ("" if self.show_ground_truth.value else " (hidden)"))
        self.info.value = " · ".join(parts)


__all__ = ["DetectionViewer"]
