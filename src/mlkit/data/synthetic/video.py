"""A synthetic, fully labelled video of workers walking across a construction site.

One background and one set of props are fixed for the clip; workers walk sideways with
a slow drift in depth (their size follows the ground-plane perspective), swing legs and
arms, leave the frame and are replaced by new workers entering from a side. Every frame
is rendered by :func:`render_layout`, so boxes handle occlusion and visibility exactly
like the still-image generator, and every frame is labelled.

A clip is a pure function of :class:`VideoSpec`: the same seed gives the same pixels
(before encoding) and the same labels.

>>> labels = render_video("site.avi", VideoSpec(frames=150, seed=3))   # + site.labels.json
>>> ds = extract_frames("site.avi", labels, "frames/", every=5)        # a Dataset of JPEGs
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlkit.data.dataset import HELMET_CLASSES, Dataset, ImageRecord
from mlkit.data.synthetic.scene import SceneLayout, Worker
from mlkit.data.synthetic.sites import SiteStyle, get_site
from mlkit.errors import DataFormatError, MlkitError

# Container each codec is written in: OpenCV picks the muxer from the file extension.
CONTAINERS: dict[str, str] = {"MJPG": ".avi", "mp4v": ".mp4"}

# Random streams of a clip, each from ``default_rng([seed, STREAM])`` (frame noise adds the index).
_SCENE, _CAMERA, _MOTION, _NOISE = 0, 1, 2, 3
_HEADWEAR_CHANGE_P = 0.0015  # per worker and frame: a couple of helmet on/off events per 300-frame clip
_LEAVE_WITHOUT_REPLACEMENT_P = 0.3
_EXTRA_WORKER_P = 0.02  # per frame, while below the maximum


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """What to render. ``workers`` is the most workers in view at once (at least one always is)."""

    frames: int = 300
    fps: float = 15.0
    width: int = 512
    height: int = 384
    site: str = "A"
    seed: int = 0
    workers: int = 6
    codec: str = "MJPG"

    def __post_init__(self) -> None:
        if int(self.frames) != self.frames or self.frames < 1:
            raise MlkitError(f"frames must be an integer >= 1, got {self.frames}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise MlkitError(f"fps must be > 0, got {self.fps}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if int(v) != v or not 64 <= v <= 4096 or v % 2:
                raise MlkitError(f"video {name} must be an even integer in 64..4096, got {v}")
        get_site(self.site)
        if int(self.workers) != self.workers or self.workers < 1:
            raise MlkitError(f"workers must be an integer >= 1, got {self.workers}")
        if self.codec not in CONTAINERS:
            raise MlkitError(
                f"unknown codec {self.codec!r}; choose one of "
                + ", ".join(f"{c} ({ext})" for c, ext in CONTAINERS.items())
            )

    @property
    def container(self) -> str:
        """File extension the codec is written in (``.avi`` for MJPG, ``.mp4`` for mp4v)."""
        return CONTAINERS[self.codec]


# ---------------------------------------------------------------------------------------------- labels


def labels_path_for(video_path: Path | str) -> Path:
    """``clip.avi`` -> ``clip.labels.json`` (the labels file written next to a video)."""
    p = Path(video_path)
    return p.with_name(f"{p.stem}.labels.json")


@dataclasses.dataclass
class VideoLabels:
    """Boxes ``[x0, y0, x1, y1]`` (pixels) and class ids for every frame of a video."""

    frames: list[tuple[np.ndarray, np.ndarray]]
    fps: float
    width: int
    height: int
    class_names: tuple[str, ...] = HELMET_CLASSES
    site: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        frames = []
        for i, (boxes, labels) in enumerate(self.frames):
            b = np.asarray(boxes, np.float32).reshape(-1, 4)
            lab = np.asarray(labels, np.int64).reshape(-1)
            if len(b) != len(lab):
                raise MlkitError(f"frame {i}: {len(b)} boxes but {len(lab)} labels")
            frames.append((b, lab))
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(lab) for _, lab in self.frames))

    def to_json(self) -> dict:
        return {
            "fps": float(self.fps),
            "width": int(self.width),
            "height": int(self.height),
            "frames": len(self.frames),
            "class_names": list(self.class_names),
            "site": self.site,
            "seed": self.seed,
            "annotations": [
                {"frame": i, "boxes": [[round(float(v), 3) for v in box] for box in boxes],
                 "labels": [int(v) for v in labels]}
                for i, (boxes, labels) in enumerate(self.frames)
            ],
        }

    def save(self, path: Path | str) -> Path:
        """Write the labels JSON atomically; returns the path."""
        from mlkit.data.atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_json(), separators=(",", ":")))

    @classmethod
    def load(cls, path: Path | str) -> VideoLabels:
        """Read a labels JSON written by :meth:`save`; errors name the file and what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise MlkitError(f"video labels not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"not valid JSON: {e.msg} (column {e.colno})", e.lineno) from None
        except UnicodeDecodeError:
            raise DataFormatError(path, "not a UTF-8 text file") from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: object, path: Path | str = "<labels>") -> VideoLabels:
        if not isinstance(data, dict):
            raise DataFormatError(path, f"expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("fps", "width", "height", "frames", "annotations") if k not in data]
        if missing:
            raise DataFormatError(path, f"missing key(s) {missing}; is this a video labels file?")
        try:
            fps, width, height = float(data["fps"]), int(data["width"]), int(data["height"])
            n = int(data["frames"])
        except (TypeError, ValueError):
            raise DataFormatError(path, "fps, width, height and frames must be numbers") from None
        if fps <= 0 or width <= 0 or height <= 0 or n < 0:
            raise DataFormatError(path, f"bad header: fps={fps}, size {width}x{height}, frames={n}")
        class_names = tuple(data.get("class_names") or HELMET_CLASSES)
        anns = data["annotations"]
        if not isinstance(anns, list):
            raise DataFormatError(path, "'annotations' must be a list")
        empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
        frames: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n
        for k, ann in enumerate(anns):
            try:
                i = int(ann["frame"])
                boxes = np.asarray(ann.get("boxes", []), np.float32).reshape(-1, 4)
                labels = np.asarray(ann.get("labels", []), np.int64).reshape(-1)
            except (TypeError, ValueError, KeyError) as e:
                raise DataFormatError(path, f"annotation #{k}: malformed ({e})") from None
            if not 0 <= i < n:
                raise DataFormatError(path, f"annotation #{k}: frame {i} is outside 0..{n - 1}")
            if frames[i] is not None:
                raise DataFormatError(path, f"annotation #{k}: frame {i} is annotated twice")
            if len(boxes) != len(labels):
                raise DataFormatError(path, f"frame {i}: {len(boxes)} boxes but {len(labels)} labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise DataFormatError(path, f"frame {i}: class id outside 0..{len(class_names) - 1}")
            frames[i] = (boxes, labels)
        seed = data.get("seed")
        return cls([f if f is not None else empty for f in frames], fps, width, height, class_names,
                   data.get("site"), int(seed) if seed is not None else None)


# ---------------------------------------------------------------------------------------------- motion


def _min_person(spec: VideoSpec) -> float:
    """Smallest worker height in pixels: 85 px at 384 rows, like the still images, scaled with the frame."""
    return 85.0 * spec.height / 384.0


@dataclasses.dataclass
class _Walker:
    worker: Worker
    speed: float  # px/frame for a worker of reference height; scaled by the current height
    direction: int  # -1 left, +1 right
    depth_speed: float  # foot_y px/frame
    arm_base: tuple[float, float]
    arm_amp: float


class _Crowd:
    """Workers walking over a fixed scene; ``step`` advances one frame."""

    def __init__(self, spec: VideoSpec, site: SiteStyle, layout: SceneLayout,
                 rng: np.random.Generator) -> None:
        self.spec, self.site, self.rng = spec, site, rng
        self.horizon, self.max_person = layout.horizon, layout.max_person
        self.ref_h = 0.26 * spec.height  # ~100 px at 384 rows: a worker this tall moves 0.5..2.5 px/frame
        self.min_person = min(_min_person(spec), 0.5 * self.max_person)
        self.foot_lo = self._foot(self.min_person)
        self.foot_hi = self._foot(self.max_person * 0.95)
        self.walkers = [self._walker(w) for w in layout.workers[: spec.workers]]
        for wk in self.walkers:  # workers cut by a border walk into the frame
            if not self._inside(wk.worker):
                wk.direction = wk.worker.facing = 1 if wk.worker.x < spec.width / 2 else -1

    def _foot(self, person_h: float) -> float:
        return self.horizon + person_h / self.max_person * (self.spec.height - self.horizon)

    def _height(self, foot_y: float) -> float:
        from mlkit.data.synthetic.scene import perspective_height

        return perspective_height(foot_y, self.horizon, self.spec.height, self.max_person)

    def _walker(self, w: Worker, direction: int | None = None) -> _Walker:
        rng = self.rng
        direction = int(direction if direction is not None else w.facing)
        w.facing = direction
        a0, a1 = (float(np.clip(a, 0.05, 0.45)) for a in w.arm_swing)
        depth = float(rng.uniform(-1.0, 1.0) * 0.0015 * (self.spec.height - self.horizon))
        speed, amp = float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.15, 0.35))
        return _Walker(w, speed, direction, depth, (a0, a1), amp)

    def _enter(self) -> _Walker:
        """A new worker just outside the left or right border, walking in."""
        from mlkit.data.synthetic.scene import sample_worker

        rng = self.rng
        ph = float(np.exp(rng.uniform(np.log(self.min_person), np.log(self.max_person * 0.95))))
        direction = 1 if rng.random() < 0.5 else -1
        half = 0.35 * ph + 3
        x = -half + 1 if direction > 0 else self.spec.width + half - 1
        w = sample_worker(rng, self.site, float(x), ph, float(self._foot(ph)))
        return self._walker(w, direction)

    def _pose(self, wk: _Walker) -> None:
        w = wk.worker
        s = math.sin(w.leg_phase)
        w.arm_swing = (wk.arm_base[0] + wk.arm_amp * s, wk.arm_base[1] - wk.arm_amp * s)

    def workers(self) -> list[Worker]:
        for wk in self.walkers:
            self._pose(wk)
        return [wk.worker for wk in self.walkers]

    def _inside(self, w: Worker, dx: float = 0.0) -> bool:
        """The whole worker is within the frame horizontally (after moving ``dx``)."""
        half = 0.32 * w.height
        return half <= w.x + dx <= self.spec.width - half

    def step(self) -> None:
        rng = self.rng
        width = self.spec.width
        inside = [self._inside(wk.worker) for wk in self.walkers]
        kept: list[_Walker] = []
        for k, wk in enumerate(self.walkers):
            w = wk.worker
            w.foot_y += wk.depth_speed
            if not self.foot_lo <= w.foot_y <= self.foot_hi:
                w.foot_y = float(np.clip(w.foot_y, self.foot_lo, self.foot_hi))
                wk.depth_speed = -wk.depth_speed
            w.height = self._height(w.foot_y)
            dx = wk.speed * w.height / self.ref_h
            if inside[k] and not self._inside(w, wk.direction * dx) and sum(inside) == 1:
                # The last worker fully in view turns back at the border instead of walking out,
                # so the frame is never empty; someone new heads in to take over.
                wk.direction = w.facing = -wk.direction
                if len(self.walkers) < self.spec.workers:
                    kept.append(self._enter())
            w.x += wk.direction * dx
            w.leg_phase = (w.leg_phase + 2 * math.pi * dx / (0.8 * w.height)) % (2 * math.pi)
            if w.headwear in ("helmet", "none") and rng.random() < _HEADWEAR_CHANGE_P:
                w.headwear = "none" if w.headwear == "helmet" else "helmet"
            half = 0.35 * w.height + 3
            gone = w.x - half > width if wk.direction > 0 else w.x + half < 0
            if not gone:
                kept.append(wk)
            elif not (len(self.walkers) > 1 and rng.random() < _LEAVE_WITHOUT_REPLACEMENT_P):
                kept.append(self._enter())
        if not kept:
            kept.append(self._enter())
        if len(kept) < self.spec.workers and rng.random() < _EXTRA_WORKER_P:
            kept.append(self._enter())
        self.walkers = kept


# ---------------------------------------------------------------------------------------------- camera


class _ClipCamera:
    """``apply_camera`` without blur, with gain, shading, tint and gamma fixed for the whole clip.

    ``255 * (min(img * g, 255) / 255) ** gamma == min(lut[img] * g ** gamma, 255)`` for ``g >= 0``, so
    a per-pixel-value LUT and a per-column factor give the same result as the still-image camera.
    Only the sensor noise changes from frame to frame (same sigma, new samples).
    """

    def __init__(self, rng: np.random.Generator, site: SiteStyle, width: int) -> None:
        gain = rng.uniform(*site.brightness)
        slope = rng.uniform(-0.15, 0.15)
        shade = 1.0 + slope * np.linspace(-1, 1, width)
        tint = np.array(site.tint, np.float64) / 255.0
        gamma = rng.uniform(0.85, 1.2)
        factor = np.maximum(gain * shade[:, None] * tint[None, :], 0.0)
        self.factor = np.power(factor, gamma)[None].astype(np.float32)  # [1, W, 3]
        self.lut = (255.0 * np.power(np.arange(256) / 255.0, gamma)).astype(np.float32)
        self.sigma = float(rng.uniform(*site.noise_sigma)) * 0.5  # mild: half the still-image noise

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = self.lut[img]
        f *= self.factor
        np.minimum(f, 255.0, out=f)
        if self.sigma > 0:
            f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(self.sigma)
        np.clip(f, 0, 255, out=f)
        return f.astype(np.uint8)


# ---------------------------------------------------------------------------------------------- render


def render_frames(spec: VideoSpec) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(rgb uint8 [H,W,3], boxes [N,4] float32, labels [N] int64)`` for each frame of the clip."""
    from mlkit.data.synthetic.scene import draw_background, render_layout, sample_layout

    site = get_site(spec.site)
    scene_rng = np.random.default_rng([spec.seed, _SCENE])
    layout = sample_layout(scene_rng, site, spec.width, spec.height,
                           min_person=_min_person(spec), max_workers=spec.workers)
    background = draw_background(scene_rng, site, spec.width, spec.height, layout.horizon)
    camera = _ClipCamera(np.random.default_rng([spec.seed, _CAMERA]), site, spec.width)
    crowd = _Crowd(spec, site, layout, np.random.default_rng([spec.seed, _MOTION]))
    for i in range(spec.frames):
        if i:
            crowd.step()
        frame_layout = SceneLayout(layout.horizon, layout.max_person, crowd.workers(), layout.props)
        img, boxes, labels = render_layout(frame_layout, background)
        yield camera(img, np.random.default_rng([spec.seed, _NOISE, i])), boxes, labels


def render_video(out_path: Path | str, spec: VideoSpec, show_progress: bool = True) -> VideoLabels:
    """Write the clip to ``out_path`` (``.avi`` for MJPG, ``.mp4`` for mp4v) and its labels next to it.

    Both files are written to temp files in the destination folder and renamed into place, so a
    reader never sees a half-written video. Returns the labels (also saved as ``<stem>.labels.json``).
    """
    import cv2
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    if out_path.suffix.lower() != spec.container:
        raise MlkitError(
            f"{out_path}: codec {spec.codec} is written as {spec.container}; "
            f"name the file {out_path.with_suffix(spec.container).name} or pick another codec"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the extension (OpenCV chooses the container from it); OpenCV creates the
    # file itself, so it gets the usual permissions rather than mkstemp's 0600.
    tmp = out_path.with_name(f".{out_path.stem}.{uuid.uuid4().hex[:12]}.tmp{spec.container}")
    frames: list[tuple[np.ndarray, np.ndarray]] = []
    writer = None
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*spec.codec), float(spec.fps),
                                 (spec.width, spec.height))
        if not writer.isOpened():
            raise MlkitError(
                f"OpenCV cannot write {spec.codec} video to {out_path}: this OpenCV build lacks the codec "
                f"or the folder is not writable; try codec one of {sorted(CONTAINERS)}"
            )
        with tqdm(total=spec.frames, desc=f"render {out_path.name}", unit="frame",
                  disable=not show_progress) as bar:
            for rgb, boxes, labels in render_frames(spec):
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                frames.append((boxes, labels))
                bar.update(1)
        writer.release()
        writer = None
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise MlkitError(f"OpenCV wrote an empty video for {out_path} (codec {spec.codec})")
        os.replace(tmp, out_path)
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    result = VideoLabels(frames, float(spec.fps), spec.width, spec.height, HELMET_CLASSES,
                         site=spec.site, seed=spec.seed)
    result.save(labels_path_for(out_path))
    return result


def extract_frames(
    video_path: Path | str,
    labels: VideoLabels | Path | str | None,
    out_dir: Path | str,
    every: int = 1,
    limit: int | None = None,
    show_progress: bool = True,
) -> Dataset:
    """Decode ``video_path`` and write every ``every``-th frame (at most ``limit``) as JPEG.

    Images go to ``out_dir/images/<stem>_<frame>.jpg``; the returned ``Dataset`` holds each frame's
    boxes and labels with ``meta={"frame": i}``. ``labels`` may be a :class:`VideoLabels`, a path
    to its JSON, or ``None`` for the ``<stem>.labels.json`` next to the video.
    """
    import cv2
    from tqdm.auto import tqdm

    video_path = Path(video_path)
    if labels is None:
        labels = labels_path_for(video_path)
    if not isinstance(labels, VideoLabels):
        labels = VideoLabels.load(labels)
    if int(every) != every or every < 1:
        raise MlkitError(f"every must be an integer >= 1, got {every}")
    if limit is not None and (int(limit) != limit or limit < 0):
        raise MlkitError(f"limit must be None or an integer >= 0, got {limit}")
    if not video_path.is_file():
        raise MlkitError(f"video not found: {video_path}")
    n = len(labels)
    wanted = list(range(0, n, every))
    if limit is not None:
        wanted = wanted[:limit]
    last = wanted[-1] if wanted else -1
    img_dir = Path(out_dir) / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video_path))
    records: list[ImageRecord] = []
    try:
        if not cap.isOpened():
            raise MlkitError(f"cannot open video {video_path}: not a video OpenCV can decode")
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if 0 < reported < n:
            raise MlkitError(f"{video_path} has {reported} frames but its labels describe {n}")
        take = set(wanted)
        with tqdm(total=len(wanted), desc=f"extract {video_path.name}", unit="frame",
                  disable=not show_progress) as bar:
            for i in range(last + 1):
                if i not in take:
                    if not cap.grab():
                        raise MlkitError(f"{video_path} ends after {i} frames but its labels describe {n}")
                    continue
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    raise MlkitError(f"{video_path} ends after {i} frames but its labels describe {n}")
                h, w = bgr.shape[:2]
                if (w, h) != (labels.width, labels.height):
                    raise MlkitError(
                        f"{video_path} frames are {w}x{h} but its labels are for "
                        f"{labels.width}x{labels.height}: wrong labels file?"
                    )
                path = img_dir / f"{video_path.stem}_{i:06d}.jpg"
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise MlkitError(f"cannot encode frame {i} of {video_path} as JPEG")
                buf.tofile(path)
                boxes, labs = labels.frames[i]
                records.append(ImageRecord(path.resolve(), w, h, boxes.copy(), labs.copy(), {"frame": i}))
                bar.update(1)
    finally:
        cap.release()
    return Dataset(records, labels.class_names, name=video_path.stem)
