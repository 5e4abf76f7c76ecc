"""How good is joint inference? mAP@0.5 of edge-only, cloud-only and joint, and each filter's trade-off.

Both models predict every image once (score threshold 0.05, as for mAP everywhere in mlkit). A frame's
joint result is the cloud's when the filter calls it hard, else the edge's, so a filter's whole
threshold sweep costs no extra inference: each filter scores every frame once, and each sweep point
only re-decides and re-scores mAP (pycocotools).

On a labelled video (``evaluate_on_video``) a frame that was not uploaded may also use the cloud's answers for
uploaded frames near it, as the worker does with ``WorkerConfig.reuse`` (``mlkit.joint.reuse.final_sequence``),
and the Keyframe filter joins the sweep. On a real video without labels the cloud's confident boxes are the labels
(``mlkit.joint.reference``): cloud only scores 1.0 and every other figure is the agreement with the cloud.

Sweep points are placed at target upload ratios (quantiles of the filter's scores), so every filter -
Random included - is compared over the same range of uploads. Thresholds are chosen on a tuning split
(``val``) under an upload budget and then reported on the test split, so the headline number is not
tuned on the data it is reported on. The choice keeps a margin under the budget (``budget_margin``): a
ratio measured on 300 frames is uncertain by a few points, and a threshold tuned right at the budget
uploads more than it on about half of all new data.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError

MAP_SCORE_THRESHOLD = 0.05
TARGET_RATIOS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8)
DEFAULT_FILTERS = (
    {"method": "IBT", "param": {"threshold_img": 0.9, "threshold_box": 0.9}},  # the helmet examples' setting
    {"method": "IBT", "param": {"threshold_box": 0.5}},  # Sedna's default box threshold
    {"method": "CrossEntropy", "param": {}},
    {"method": "Threshold", "param": {}},
    {"method": "Uncertainty", "param": {}},
    {"method": "ScoreMargin", "param": {}},
    {"method": "Random", "param": {"seed": 0}},
)
VIDEO_FILTERS = (*DEFAULT_FILTERS, {"method": "Keyframe", "param": {}})  # evenly spread uploads: for reuse
KEYFRAME_AND_RANDOM = tuple(f for f in VIDEO_FILTERS if f["method"] in ("Keyframe", "Random"))  # the content-blind


@dataclasses.dataclass(frozen=True)
class FrameOrder:
    """Frames that are clips of a video, and how a frame not uploaded uses nearby answers (the worker's reuse)."""

    clips: tuple[int, ...]  # a clip id per frame, frames in order
    reuse: str = "none"
    reuse_frames: int = 8
    # Each frame's image (a sequence, or a function of the frame index) for the tracking rules' optical flow.
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray] | None = dataclasses.field(default=None, repr=False,
                                                                                          compare=False)


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    filter: str
    value: float  # of the filter's sweep_param
    upload_ratio: float
    map50: float


@dataclasses.dataclass
class FilterResult:
    filter: str
    spec: dict
    sweep_param: str
    points: list[SweepPoint]
    chosen_value: float | None = None  # tuned on the tuning split under the upload budget
    tune_upload_ratio: float | None = None  # the chosen value's upload ratio on the tuning split
    test_upload_ratio: float | None = None
    test_map50: float | None = None
    gain_over_random: float | None = None  # mean mAP gain over Random at equal upload ratio (interpolated)


@dataclasses.dataclass
class JointEvaluation:
    num_images: int
    edge_map50: float
    cloud_map50: float
    upload_budget: float
    filters: list[FilterResult]
    bytes_jpeg: float  # mean JPEG bytes of an uploaded frame
    bytes_json_list: float  # Sedna's encoding of the same frames: the pixels as a JSON nested list
    tuned_on: str
    # A bound, not a filter: frames ranked by the cloud's gain measured against the test ground truth.
    oracle: list[SweepPoint] = dataclasses.field(default_factory=list)
    reuse: str | None = None  # video clips: how frames not uploaded used nearby answers; None for still images
    reuse_frames: int | None = None  # how far an answer reached (video clips with a reuse rule)
    reference: str = "labels"  # or "cloud": the cloud's boxes scoring >= reference_score are the labels
    reference_score: float | None = None
    classes: tuple[str, ...] = ()  # the classes scored

    @property
    def metric(self) -> str:
        """What the figures are: mAP@0.5 against the labels, or the agreement with the cloud."""
        return "mAP@0.5" if self.reference == "labels" else "agreement"

    @property
    def reference_label(self) -> str:
        if self.reference == "labels":
            return "the labels"
        return f"the cloud's boxes >= {self.reference_score:g} as labels ({', '.join(self.classes)})"

    @property
    def reuse_label(self) -> str:
        """"interpolate within 8 frames", "none", ...; "" for still images."""
        if self.reuse is None:
            return ""
        return self.reuse if self.reuse == "none" or self.reuse_frames is None else \
            f"{self.reuse} within {self.reuse_frames} frames"

    def oracle_at_budget(self) -> SweepPoint | None:
        ok = [p for p in self.oracle if p.upload_ratio <= self.upload_budget + 1e-9]
        return max(ok, key=lambda p: p.upload_ratio) if ok else None

    @property
    def best(self) -> FilterResult:
        ok = [f for f in self.filters if f.test_map50 is not None and f.filter != "Random"]
        if not ok:
            raise MlkitError("no filter has a tuned result")
        return max(ok, key=lambda f: f.test_map50)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        tuned = any(f.test_map50 is not None and f.filter != "Random" for f in self.filters)
        best = self.best if tuned else None
        d["best"] = best.filter if best else None
        d["best_fraction_of_cloud"] = best.test_map50 / self.cloud_map50 if best and self.cloud_map50 else None
        d["bytes_ratio"] = self.bytes_jpeg / self.bytes_json_list if self.bytes_json_list else None
        return d

    def table(self) -> str:
        width = max(14, *(len(f.filter) + 2 for f in self.filters))
        kind = "test images" if self.reuse is None else f"test frames (reuse: {self.reuse_label})"
        lines = [f"{self.num_images} {kind}   edge-only {self.metric} {self.edge_map50:.3f}   "
                 f"cloud-only {self.cloud_map50:.3f}   budget <= {100 * self.upload_budget:.0f}% uploads "
                 f"(thresholds tuned on {self.tuned_on})",
                 f"{'filter':<{width}}{'param':<24}{'value':>8}{'upload':>9}{self.metric:>10}{'of cloud':>10}"
                 f"{'vs Random':>11}"]
        if self.reference != "labels":
            lines.insert(1, f"reference: {self.reference_label}")
        for f in self.filters:
            if f.test_map50 is None:
                lines.append(f"{f.filter:<{width}}{f.sweep_param:<24}{'-':>8}  no threshold meets the budget")
                continue
            gain = "" if f.gain_over_random is None else f"{f.gain_over_random:+.3f}"
            lines.append(f"{f.filter:<{width}}{f.sweep_param:<24}{f.chosen_value:>8.3f}"
                         f"{100 * f.test_upload_ratio:>8.1f}%"
                         f"{f.test_map50:>10.3f}{100 * f.test_map50 / self.cloud_map50:>9.1f}%{gain:>11}")
        bound = self.oracle_at_budget()
        if bound is not None:
            who = "oracle (uses GT)" if self.reference == "labels" else "oracle (uses cloud)"
            lines.append(f"{who:<{width}}{'not deployable':<24}{'-':>8}{100 * bound.upload_ratio:>8.1f}%"
                         f"{bound.map50:>10.3f}{100 * bound.map50 / self.cloud_map50:>9.1f}%")
        lines.append(f"bytes per uploaded frame: JPEG {self.bytes_jpeg:,.0f} vs JSON list {self.bytes_json_list:,.0f} "
                     f"(1/{self.bytes_json_list / max(self.bytes_jpeg, 1):.0f})")
        return "\n".join(lines)

    def sweep_table(self) -> str:
        """Every sweep point of every filter: upload ratio and score, between edge only and cloud only."""
        width = max(14, *(len(f.filter) + 2 for f in self.filters))
        lines = [f"{'filter':<{width}}{'upload':>8}{self.metric:>11}",
                 f"{'edge only':<{width}}{0:>7.1f}%{self.edge_map50:>11.3f}"]
        for f in self.filters:
            lines += [f"{f.filter:<{width}}{100 * p.upload_ratio:>7.1f}%{p.map50:>11.3f}" for p in f.points]
        lines.append(f"{'cloud only':<{width}}{100:>7.1f}%{self.cloud_map50:>11.3f}")
        return "\n".join(lines)


def predict_dataset(dataset: Dataset, predict: Callable[[list[np.ndarray]], list[Detections]], desc: str,
                    show_progress: bool = True) -> list[Detections]:
    from tqdm.auto import tqdm

    out = []
    for i in tqdm(range(len(dataset)), desc=desc, unit="img", disable=not show_progress):
        out.extend(predict([dataset.load_image(i)]))
    return out


def _joint(edge: Sequence[Detections], cloud: Sequence[Detections], hard: np.ndarray,
           order: FrameOrder | None = None) -> list[Detections]:
    from mlkit.joint.reuse import final_sequence

    if order is None:  # still images: each keeps its own answer
        return final_sequence(edge, cloud, hard)
    return final_sequence(edge, cloud, hard, order.reuse, order.reuse_frames, order.clips, order.images)


def _value_for_cut(f, cut: float) -> float:
    """Invert the filter's (affine) map from its sweep parameter to the cut on the score."""
    a = f.cut_from(0.0)
    b = f.cut_from(1.0) - a
    value = max(0.0, (cut - a) / b)
    try:
        f.cut(value)
    except MlkitError:  # past a bounded parameter's top (a "<" cut just above a score of 1.0)
        value = 1.0
    return float(value)


def sweep_values(f, scores: np.ndarray, ratios: Sequence[float] = TARGET_RATIOS) -> list[float]:
    """Values of ``f.sweep_param`` that upload about each target ratio of these frames."""
    values = []
    for q in ratios:
        cut = np.quantile(scores, q) if f.hard_if == "<" else np.quantile(scores, 1 - q)
        if f.hard_if == "<":
            cut = np.nextafter(cut, np.inf) + f.tolerance  # include the quantile frame itself
        values.append(round(_value_for_cut(f, float(cut)), 6))
    return sorted(set(values))


def sweep_filter(f, dataset: Dataset, edge: Sequence[Detections], cloud: Sequence[Detections],
                 values: Sequence[float] | None = None, order: FrameOrder | None = None,
                 seen: Sequence[Detections] | None = None) -> tuple[list[SweepPoint], np.ndarray]:
    """Each value's upload ratio and joint mAP@0.5; ``seen``: what the filter sees of each frame when that is more
    than the scored ``edge`` answers (every class the edge model predicts, not only the scored ones)."""
    from mlkit.evaluation.coco_map import coco_map

    scores = np.array([f.score(d) for d in (edge if seen is None else seen)])
    values = sweep_values(f, scores) if values is None else values
    points = []
    for v in values:
        hard = np.asarray(f.decide(scores, v), bool).reshape(-1)
        points.append(SweepPoint(f.name, float(v), float(hard.mean()),
                                 float(coco_map(dataset, _joint(edge, cloud, hard, order))["map50"])))
    return sorted(points, key=lambda p: p.upload_ratio), scores


def oracle_points(dataset: Dataset, edge: Sequence[Detections], cloud: Sequence[Detections],
                  ratios: Sequence[float] = TARGET_RATIOS) -> list[SweepPoint]:
    """What a filter that knew the ground truth would reach: upload the frames where the cloud's AP@0.5 on
    that frame alone beats the edge's by the most (a greedy ranking, so a bound in spirit, not a proof)."""
    from mlkit.evaluation.coco_map import coco_map

    gains = np.zeros(len(dataset))
    for i in range(len(dataset)):
        one = dataset.subset([i])
        g = coco_map(one, [cloud[i]])["map50"] - coco_map(one, [edge[i]])["map50"]
        gains[i] = 0.0 if np.isnan(g) else g
    order = np.argsort(-gains, kind="stable")
    points = []
    for q in ratios:
        hard = np.zeros(len(dataset), bool)
        hard[order[:round(q * len(dataset))]] = True
        points.append(SweepPoint("oracle", float(q), float(hard.mean()),
                                 float(coco_map(dataset, _joint(edge, cloud, hard))["map50"])))
    return points


def budget_margin(budget: float, tune_images: int) -> float:
    """How far under the budget to tune so that new frames stay within it: a one-sided 95% bound on the
    sampling error of an upload ratio measured on ``tune_images`` frames, at most half the budget, and never
    so far that not one tuning frame may be uploaded."""
    n = max(tune_images, 1)
    margin = min(budget / 2, 1.645 * float(np.sqrt(budget * (1 - budget) / n)))
    return max(0.0, min(margin, budget - 1.0 / n))


def _choose(points: Sequence[SweepPoint], budget: float) -> SweepPoint | None:
    ok = [p for p in points if p.upload_ratio <= budget + 1e-9]
    return max(ok, key=lambda p: (p.map50, -p.upload_ratio)) if ok else None


def _gain_over(points: Sequence[SweepPoint], reference: Sequence[SweepPoint]) -> float | None:
    ref = sorted(reference, key=lambda p: p.upload_ratio)
    xs, ys = [p.upload_ratio for p in ref], [p.map50 for p in ref]
    inside = [p for p in points if xs[0] <= p.upload_ratio <= xs[-1]]
    if not inside:
        return None
    return float(np.mean([p.map50 - np.interp(p.upload_ratio, xs, ys) for p in inside]))


def _label(f, methods: Sequence[str]) -> str:
    """The method name, plus its fixed parameters when the same method is swept more than once."""
    if methods.count(f.name) < 2:
        return f.name
    fixed = {k: v for k, v in f.params.model_dump().items() if k != f.sweep_param}
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fixed.items())
    return f"{f.name}({args})"


def json_list_bytes(image: np.ndarray) -> int:
    """Size of Sedna's upload: the frame as a JSON nested list of pixel values."""
    return len(json.dumps(image.tolist(), separators=(", ", ": ")))


def evaluate_joint(test: Dataset, edge_test: Sequence[Detections], cloud_test: Sequence[Detections], *,
                   tune: Dataset | None = None, edge_tune: Sequence[Detections] | None = None,
                   cloud_tune: Sequence[Detections] | None = None, filters: Sequence[dict] = DEFAULT_FILTERS,
                   upload_budget: float = 0.3, jpeg_quality: int = 85, show_progress: bool = True,
                   order: FrameOrder | None = None, tune_order: FrameOrder | None = None,
                   tune_name: str = "val", seen_test: Sequence[Detections] | None = None,
                   seen_tune: Sequence[Detections] | None = None, reference=None) -> JointEvaluation:
    """Sweep every filter, tune each on ``tune`` (default: the test set itself) and report on ``test``.

    ``order`` / ``tune_order``: the sets are video clips and frames not uploaded reuse nearby answers.
    ``seen_test`` / ``seen_tune``: the edge's whole answers, which the filters decide on, when only some of their
    classes are scored. ``reference``: a ``mlkit.joint.reference.CloudReference`` when the sets' labels are the
    cloud's own boxes (the report then speaks of agreement).
    """
    from tqdm.auto import tqdm

    from mlkit.evaluation.coco_map import coco_map
    from mlkit.imaging import encode_jpeg
    from mlkit.mining import build_filter

    if len(test) == 0:
        raise MlkitError("the test set has no images")
    if not 0 < upload_budget <= 1:
        raise MlkitError(f"upload_budget must be in (0, 1], got {upload_budget}")
    tuned_on = tune_name if tune is not None else "test (no tuning split given)"
    if tune is None:
        tune, edge_tune, cloud_tune, tune_order, seen_tune = test, edge_test, cloud_test, order, seen_test
    results = []
    built = [build_filter(spec) for spec in filters]
    methods = [f.name for f in built]
    for f in tqdm(built, desc="sweep filters", unit="filter", disable=not show_progress):
        if f.sweep_param is None:
            raise MlkitError(f"{f.name} has no threshold to sweep; leave it out of the sweep")
        tune_points, _ = sweep_filter(f, tune, edge_tune, cloud_tune, order=tune_order, seen=seen_tune)
        points = tune_points if tune is test else sweep_filter(f, test, edge_test, cloud_test,
                                                               order=order, seen=seen_test)[0]
        res = FilterResult(_label(f, methods), f.spec, f.sweep_param, points)
        margin = 0.0 if tune is test else budget_margin(upload_budget, len(tune))
        chosen = _choose(tune_points, upload_budget - margin)
        if chosen is not None:
            res.chosen_value, res.tune_upload_ratio = chosen.value, chosen.upload_ratio
            if tune is test:
                res.test_upload_ratio, res.test_map50 = chosen.upload_ratio, chosen.map50
            else:
                (p,), _ = sweep_filter(f, test, edge_test, cloud_test, [chosen.value], order, seen_test)
                res.test_upload_ratio, res.test_map50 = p.upload_ratio, p.map50
        results.append(res)
    random = next((r for r in results if r.filter == "Random"), None)
    if random is not None:
        for r in results:
            if r is not random:
                r.gain_over_random = _gain_over(r.points, random.points)
    sample = [test.load_image(i) for i in range(min(3, len(test)))]
    jpeg = float(np.mean([len(encode_jpeg(im, jpeg_quality)) for im in sample]))
    js = float(np.mean([json_list_bytes(im) for im in sample]))
    reuse = None if order is None else order.reuse
    # The oracle ranks frames by their own gain: with answers shared between frames there is no such ranking.
    oracle = oracle_points(test, edge_test, cloud_test) if reuse in (None, "none") else []
    ref = {} if reference is None else {"reference": "cloud", "reference_score": reference.min_score}
    return JointEvaluation(len(test), float(coco_map(test, edge_test)["map50"]),
                           float(coco_map(test, cloud_test)["map50"]), upload_budget, results, jpeg, js, tuned_on,
                           oracle, reuse, None if reuse in (None, "none") else order.reuse_frames,
                           classes=tuple(test.class_names), **ref)


def _finish(fig, ax, path: str | Path | None, legend: str = "lower right"):
    """Grid, legend and layout (``ax``: one axes or several); saved to ``path`` (PNG, atomically) and closed when
    given."""
    for one in np.atleast_1d(ax).ravel():
        one.grid(alpha=0.3)
        one.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    if path is not None:
        import matplotlib.pyplot as plt

        from mlkit.data.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
    return fig


def plot_sweep(evaluation: JointEvaluation, path: str | Path | None = None):
    """mAP@0.5 against upload ratio, one line per filter, with edge-only and cloud-only marked."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    _draw_sweep(ax, evaluation)
    return _finish(fig, ax, path)


def _draw_sweep(ax, evaluation: JointEvaluation, title: str | None = None) -> None:
    cloud = evaluation.reference == "cloud"
    for f in evaluation.filters:
        style = {"color": "grey", "linestyle": "--"} if f.filter == "Random" else {}
        if not any(0.01 < p.upload_ratio < 0.99 for p in f.points):
            # Every threshold uploads (nearly) all frames or none: a line to the far end would not be measured.
            ax.plot([p.upload_ratio for p in f.points], [p.map50 for p in f.points], marker="o", markersize=5,
                    linestyle="none", label=f"{f.filter} (uploads all or nothing)")
            continue
        xs = [0.0] + [p.upload_ratio for p in f.points] + [1.0]
        ys = [evaluation.edge_map50] + [p.map50 for p in f.points] + [evaluation.cloud_map50]
        ax.plot(xs, ys, marker="o", markersize=3, label=f.filter, **style)
    if evaluation.oracle:
        ax.plot([0.0] + [p.upload_ratio for p in evaluation.oracle] + [1.0],
                [evaluation.edge_map50] + [p.map50 for p in evaluation.oracle] + [evaluation.cloud_map50],
                color="black", linewidth=1.2, linestyle="-.",
                label="oracle (uses the cloud's answers)" if cloud else "oracle (uses ground truth)")
    ax.axhline(evaluation.cloud_map50, color="black", linewidth=0.8, linestyle=":", label="cloud only")
    ax.axhline(0.97 * evaluation.cloud_map50, color="green", linewidth=0.8, linestyle=":", label="97% of cloud")
    ax.axvline(evaluation.upload_budget, color="red", linewidth=0.8, linestyle=":", label="upload budget")
    ax.set_xlabel("upload ratio (hard frames sent to the cloud)")
    ax.set_ylabel(f"agreement with the cloud (mAP@0.5, its boxes >= {evaluation.reference_score:g})" if cloud
                  else "joint mAP@0.5")
    if title is None:
        title = (f"Hard-example mining on {evaluation.num_images} test images" if evaluation.reuse is None else
                 f"Hard-example mining on {evaluation.num_images} video frames, reuse: {evaluation.reuse_label}")
    ax.set_title(title)
    ax.set_xlim(0, 1)


def plot_videos(evaluations: Sequence[JointEvaluation], names: Sequence[str], path: str | Path | None = None):
    """``plot_sweep`` of several videos side by side, a panel each (``evaluate_each_video``'s results)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not evaluations or len(evaluations) != len(names):
        raise MlkitError(f"give a name for each evaluation to plot; got {len(evaluations)} evaluations and "
                         f"{len(names)} names")
    fig, axes = plt.subplots(1, len(evaluations), figsize=(6.5 * len(evaluations), 4.8), squeeze=False)
    for ax, ev, name in zip(axes[0], evaluations, names, strict=True):
        _draw_sweep(ax, ev, f"{name}: {ev.num_images} frames" + (f", reuse: {ev.reuse_label}"
                                                                  if ev.reuse not in (None, "none") else ""))
    # Agreement curves run low on the right: the top left is where the legend hides nothing.
    return _finish(fig, axes, path, "upper left" if all(ev.reference == "cloud" for ev in evaluations) else
                   "lower right")


def plot_reuse_rules(evaluations: Sequence[JointEvaluation], filter_name: str = "Keyframe",
                     path: str | Path | None = None):
    """One filter's mAP@0.5 against upload ratio under each reuse rule (one ``evaluate_on_video`` per rule, on the
    same clips), with edge-only, cloud-only and 97 % / 99 % of cloud marked."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not evaluations:
        raise MlkitError("give at least one evaluation to plot")
    first = evaluations[0]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for ev in evaluations:
        found = [f for f in ev.filters if f.filter == filter_name]
        if not found:
            raise MlkitError(f"filter {filter_name!r} is not in the evaluation with reuse {ev.reuse_label}; it has "
                             f"{', '.join(f.filter for f in ev.filters)}")
        points = found[0].points
        ax.plot([0.0] + [p.upload_ratio for p in points] + [1.0],
                [ev.edge_map50] + [p.map50 for p in points] + [ev.cloud_map50], marker="o", markersize=3,
                label=f"reuse: {ev.reuse_label}")
    ax.axhline(first.cloud_map50, color="black", linewidth=0.8, linestyle=":", label="cloud only")
    ax.axhline(0.99 * first.cloud_map50, color="blue", linewidth=0.8, linestyle=":", label="99% of cloud")
    ax.axhline(0.97 * first.cloud_map50, color="green", linewidth=0.8, linestyle=":", label="97% of cloud")
    ax.axhline(first.edge_map50, color="grey", linewidth=0.8, linestyle="--", label="edge only")
    ax.set_xlabel("upload ratio (frames sent to the cloud)")
    ax.set_ylabel("joint mAP@0.5")
    ax.set_title(f"{filter_name} uploads on {first.num_images} video frames, by reuse rule")
    ax.set_xlim(0, 0.6)
    return _finish(fig, ax, path)


def _predictors(edge_model: str | Path, cloud_model: str | Path | None, cloud_endpoint: str | None, cloud_name: str,
                num_threads: int, cloud_token: str | None = None, cloud_classes: Sequence[str] | None = None):
    """(edge predict, cloud predict, edge class names, cloud class names): the edge model local, the cloud model
    local or served at ``cloud_endpoint`` (``cloud_token``: its bearer token, for a server started with
    ``--auth-token-file``; ``cloud_classes``: its class names, default the edge's)."""
    from mlkit.models.predict import open_detector

    if (cloud_model is None) == (cloud_endpoint is None):
        raise MlkitError("give exactly one of cloud_model (a local model) and cloud_endpoint (a served one)")
    if cloud_classes is not None and cloud_model is not None:
        raise MlkitError("cloud_classes is for a served cloud model; a local one names its classes itself")
    edge = open_detector(edge_model, num_threads=num_threads)
    edge_names = tuple(edge.meta.class_names)
    cloud_names = tuple(cloud_classes) if cloud_classes else edge_names
    if cloud_model is not None:
        big = open_detector(cloud_model, num_threads=num_threads)
        cloud_names = tuple(big.meta.class_names)

        def cloud_predict(ims):
            return big.predict(ims, score_threshold=MAP_SCORE_THRESHOLD)
    else:
        import logging

        from mlkit.client.http import ServingClient

        # httpx logs every request at INFO, and KFP runs tasks at INFO: thousands of lines would bury the task log.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        client = ServingClient(cloud_endpoint, cloud_name, token=cloud_token)
        client.wait_ready(30)

        def cloud_predict(ims):
            return client.predict(ims, score_threshold=MAP_SCORE_THRESHOLD)

    def edge_predict(ims):
        return edge.predict(ims, score_threshold=MAP_SCORE_THRESHOLD)

    return edge_predict, cloud_predict, edge_names, cloud_names


def evaluate_on_dataset(data_root: str | Path, edge_model: str | Path, *, cloud_model: str | Path | None = None,
                        cloud_endpoint: str | None = None, cloud_name: str = "big", split: str = "test",
                        tune_split: str | None = "val", upload_budget: float = 0.3, limit: int | None = None,
                        num_threads: int = 2, show_progress: bool = True,
                        cloud_token: str | None = None, filters: Sequence[dict] = DEFAULT_FILTERS) -> JointEvaluation:
    """Predict a dataset folder with the edge model (local TFLite) and the cloud model (local, or served at
    ``cloud_endpoint``), then ``evaluate_joint``; ``tune_split=None`` tunes on ``split`` itself."""
    from mlkit.data.layout import load_split

    edge_predict, cloud_predict, _, _ = _predictors(edge_model, cloud_model, cloud_endpoint, cloud_name, num_threads,
                                                    cloud_token)

    def load(name: str) -> Dataset:
        ds = load_split(data_root, name)
        return ds.subset(range(min(limit, len(ds)))) if limit else ds

    test = load(split)
    kw = {}
    if tune_split:
        tune = load(tune_split)
        kw = {"tune": tune, "edge_tune": predict_dataset(tune, edge_predict, f"edge {tune_split}", show_progress),
              "cloud_tune": predict_dataset(tune, cloud_predict, f"cloud {tune_split}", show_progress)}
    return evaluate_joint(test, predict_dataset(test, edge_predict, f"edge {split}", show_progress),
                          predict_dataset(test, cloud_predict, f"cloud {split}", show_progress),
                          upload_budget=upload_budget, show_progress=show_progress, filters=filters, **kw)


def _clips(videos: Sequence[str | Path], out: Path, show_progress: bool, labelled: bool = True, every: int = 1,
           max_frames: int | None = None) -> tuple[Dataset, tuple[int, ...]]:
    """Every ``every``-th frame (at most ``max_frames`` per video) of labelled videos (``<video>.labels.json`` next
    to each), or of real ones without labels, as one Dataset, and a clip id per frame."""
    from mlkit.data.synthetic.video import extract_frames
    from mlkit.joint.reference import read_frames

    if labelled:
        sets = [extract_frames(v, None, out / f"clip{i}", every=every, limit=max_frames, show_progress=show_progress)
                for i, v in enumerate(videos)]
    else:
        sets = [read_frames(v, out / f"clip{i}", every, max_frames, show_progress) for i, v in enumerate(videos)]
    clips = tuple(i for i, ds in enumerate(sets) for _ in range(len(ds)))
    return Dataset([rec for ds in sets for rec in ds.images], sets[0].class_names, "video"), clips


def _scored_against_cloud(reference: str, videos: Sequence[str | Path]) -> bool:
    """Whether the cloud's answers are the labels: ``reference`` "cloud", or "auto" on videos without labels."""
    from mlkit.data.synthetic.video import labels_path_for
    from mlkit.joint.reference import REFERENCES

    if reference not in REFERENCES:
        raise MlkitError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    labelled = {Path(v): labels_path_for(v).is_file() for v in videos}
    missing = [v for v, ok in labelled.items() if not ok]
    if reference == "cloud" or (reference == "auto" and len(missing) == len(labelled)):
        return True
    if not missing:
        return False
    if reference == "labels":
        raise MlkitError(f"{missing[0]} has no labels ({labels_path_for(missing[0]).name} next to it): score it "
                         "against the cloud's answers with reference 'cloud'")
    raise MlkitError(f"{missing[0]} has no labels but {next(v for v, ok in labelled.items() if ok)} has: give "
                     "reference 'labels' or 'cloud' (the same for every video)")


def _grays(dataset: Dataset, show_progress: bool) -> list[np.ndarray]:
    """Every frame as a gray image, held for the tracking rules (each sweep point tracks through all of them)."""
    import cv2
    from tqdm.auto import tqdm

    return [cv2.cvtColor(dataset.load_image(i), cv2.COLOR_RGB2GRAY)
            for i in tqdm(range(len(dataset)), desc="frames for tracking", unit="img", disable=not show_progress)]


def evaluate_on_video(videos: Sequence[str | Path], edge_model: str | Path, *, tune_videos: Sequence[str | Path] = (),
                      cloud_model: str | Path | None = None, cloud_endpoint: str | None = None,
                      cloud_name: str = "big", reuse: str = "interpolate", reuse_frames: int = 8,
                      upload_budget: float = 0.3, num_threads: int = 2, show_progress: bool = True,
                      cloud_token: str | None = None, filters: Sequence[dict] = VIDEO_FILTERS,
                      reference: str = "auto", reference_score: float | None = None, every: int = 1,
                      max_frames: int | None = None, cloud_classes: Sequence[str] | None = None) -> JointEvaluation:
    """``evaluate_joint`` on video clips: thresholds are tuned on ``tune_videos`` (default: the test clips
    themselves), and a frame that was not uploaded uses nearby answers as the worker does with ``reuse`` and
    ``reuse_frames``. The Keyframe filter joins the sweep.

    Labelled clips (``mlkit data video`` writes them) are scored against their labels; real videos without labels
    (or any with ``reference="cloud"``) against the cloud's boxes scoring >= ``reference_score``, on the classes both
    models name alike (``mlkit.joint.reference``). ``every`` / ``max_frames``: every N-th frame, at most so many per
    video."""
    (evaluation,) = evaluate_reuse_rules(
        videos, edge_model, rules=(reuse,), tune_videos=tune_videos, cloud_model=cloud_model,
        cloud_endpoint=cloud_endpoint, cloud_name=cloud_name, reuse_frames=reuse_frames, upload_budget=upload_budget,
        num_threads=num_threads, show_progress=show_progress, cloud_token=cloud_token, filters=filters,
        reference=reference, reference_score=reference_score, every=every, max_frames=max_frames,
        cloud_classes=cloud_classes)
    return evaluation


def evaluate_each_video(videos: Sequence[str | Path], edge_model: str | Path, *, reuse: str = "none",
                        **kw) -> list[JointEvaluation]:
    """``evaluate_on_video`` on each video alone (its own frames, its own reference); ``plot_videos`` draws them side
    by side. The keywords are ``evaluate_on_video``'s."""
    if not videos:
        raise MlkitError("give at least one video to evaluate on")
    return [evaluate_on_video([v], edge_model, reuse=reuse, **kw) for v in videos]


def evaluate_reuse_rules(videos: Sequence[str | Path], edge_model: str | Path, *,
                         rules: Sequence[str] = ("interpolate", "track", "track-interpolate"),
                         tune_videos: Sequence[str | Path] = (), cloud_model: str | Path | None = None,
                         cloud_endpoint: str | None = None, cloud_name: str = "big", reuse_frames: int = 8,
                         upload_budget: float = 0.3, num_threads: int = 2, show_progress: bool = True,
                         cloud_token: str | None = None, filters: Sequence[dict] = VIDEO_FILTERS,
                         reference: str = "auto", reference_score: float | None = None, every: int = 1,
                         max_frames: int | None = None,
                         cloud_classes: Sequence[str] | None = None) -> list[JointEvaluation]:
    """``evaluate_on_video`` once per reuse rule, on one set of predictions (both models predict every frame once);
    ``plot_reuse_rules`` draws them side by side."""
    import tempfile

    from mlkit.joint.reference import DEFAULT_REFERENCE_SCORE, CloudReference
    from mlkit.joint.reuse import TRACKING_RULES, check_reuse

    if not videos:
        raise MlkitError("give at least one video to evaluate on")
    if not rules:
        raise MlkitError("give at least one reuse rule")
    for rule in rules:
        check_reuse(rule, reuse_frames)
    if not filters:
        raise MlkitError("give at least one filter to sweep")
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise MlkitError(f"every must be an integer >= 1, got {every!r}")
    against_cloud = _scored_against_cloud(reference, [*videos, *tune_videos])
    if reference_score is not None and not against_cloud:
        raise MlkitError("reference_score is for videos scored against the cloud; these have labels")
    tracking = any(rule in TRACKING_RULES for rule in rules)
    edge_predict, cloud_predict, edge_names, cloud_names = _predictors(
        edge_model, cloud_model, cloud_endpoint, cloud_name, num_threads, cloud_token, cloud_classes)
    # Built before any frame is predicted, so models without a class in common are refused at once.
    ref = CloudReference(edge_names, cloud_names, DEFAULT_REFERENCE_SCORE if reference_score is None
                         else reference_score) if against_cloud else None
    with tempfile.TemporaryDirectory(prefix="mlkit-joint-video-") as tmp:
        test, clips = _clips(videos, Path(tmp) / "test", show_progress, not against_cloud, every, max_frames)
        images = _grays(test, show_progress) if tracking else None
        edge_test = predict_dataset(test, edge_predict, "edge test", show_progress)
        cloud_test = predict_dataset(test, cloud_predict, "cloud test", show_progress)
        seen: dict = {}
        if ref is not None:  # the filters decide on all the edge's boxes; only the shared classes are scored
            seen["seen_test"] = edge_test
            test, edge_test, cloud_test = ref.apply(test, edge_test, cloud_test)
        kw: dict = {}
        if tune_videos:
            tune, tune_clips = _clips(tune_videos, Path(tmp) / "tune", show_progress, not against_cloud, every,
                                      max_frames)
            tune_images = _grays(tune, show_progress) if tracking else None
            edge_tune = predict_dataset(tune, edge_predict, "edge tune", show_progress)
            cloud_tune = predict_dataset(tune, cloud_predict, "cloud tune", show_progress)
            if ref is not None:
                seen["seen_tune"] = edge_tune
                tune, edge_tune, cloud_tune = ref.apply(tune, edge_tune, cloud_tune)
            kw = {"tune": tune, "edge_tune": edge_tune, "cloud_tune": cloud_tune,
                  "tune_name": f"{len(tune_videos)} tuning clip{'s' if len(tune_videos) > 1 else ''}"}
        out = []
        for rule in rules:
            if tune_videos:
                kw["tune_order"] = FrameOrder(tune_clips, rule, reuse_frames, tune_images)
            out.append(evaluate_joint(test, edge_test, cloud_test, filters=filters, upload_budget=upload_budget,
                                      show_progress=show_progress, order=FrameOrder(clips, rule, reuse_frames, images),
                                      reference=ref, **seen, **kw))
        return out


def write_report(evaluation: JointEvaluation, out_dir: str | Path) -> tuple[Path, Path]:
    """``joint_evaluation.json`` and ``sweep.png`` in ``out_dir`` (atomic writes)."""
    from mlkit.data.atomic import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = atomic_write_text(out_dir / "joint_evaluation.json", json.dumps(evaluation.to_dict(), indent=2) + "\n")
    png = out_dir / "sweep.png"
    plot_sweep(evaluation, png)
    return js, png


def pipeline_edge_model(edge_model_dir: str | Path, variant: str, endpoint: str) -> Path:
    """The KFP joint components' inputs checked: ``<edge_model_dir>/<variant>`` (holding model.tflite) and an
    http(s) cloud endpoint; ``MlkitError`` (a ValueError) names what is wrong."""
    path = Path(edge_model_dir) / variant
    if not (path / "model.tflite").is_file():
        raise MlkitError(f"no TFLite variant {variant!r} in {edge_model_dir}: convert the edge model first")
    if not endpoint.startswith(("http://", "https://")):
        raise MlkitError(f"endpoint must be an http(s) URL of the cloud server, got {endpoint!r}")
    return path


def write_pipeline_outputs(evaluation: JointEvaluation, report_dir: str | Path, sweep_html: str | Path
                           ) -> dict[str, float]:
    """What the KFP joint components publish: the report folder (``write_report``), the chart and table as one HTML
    page for the KFP UI, and the flat metrics (returned)."""
    import base64

    from mlkit.data.atomic import atomic_write_text

    _, png = write_report(evaluation, report_dir)
    image = base64.b64encode(png.read_bytes()).decode()
    table = evaluation.table().replace("&", "&amp;").replace("<", "&lt;")
    atomic_write_text(sweep_html, f'<html><body><img src="data:image/png;base64,{image}"/><pre>{table}</pre>'
                                  f'</body></html>')
    return metrics(evaluation)


def metrics(evaluation: JointEvaluation) -> dict[str, float]:
    """Flat figures for a KFP Metrics artifact."""
    best = evaluation.best
    out = {"edge_map50": evaluation.edge_map50, "cloud_map50": evaluation.cloud_map50,
           "best_map50": best.test_map50, "best_upload_ratio": best.test_upload_ratio,
           "best_fraction_of_cloud": best.test_map50 / evaluation.cloud_map50 if evaluation.cloud_map50 else 0.0,
           "bytes_per_upload_jpeg": evaluation.bytes_jpeg, "bytes_json_list": evaluation.bytes_json_list}
    bound = evaluation.oracle_at_budget()
    if bound is not None:
        out["oracle_map50_at_budget"] = bound.map50
    for f in evaluation.filters:
        if f.test_map50 is not None:
            out[f"{f.filter}_map50"] = f.test_map50
            out[f"{f.filter}_upload_ratio"] = f.test_upload_ratio
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
