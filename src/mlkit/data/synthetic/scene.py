"""Render one construction-site scene with exact boxes.

Objects are painted far to near (painter's algorithm). Every painted pixel
records which object owns it, so a box is the extent of the pixels that are still
visible at the end: occlusion and crowding give correct, tight boxes, and an object
that is mostly hidden is left unlabelled rather than labelled where it cannot be seen.

Classes (``HELMET_CLASSES``): 0 person (whole worker), 1 helmet (not worn),
2 helmet-on (head with helmet), 3 helmet-off (head without helmet; caps count as
helmet-off: they are confusers, not helmets).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mlkit.data.synthetic.sites import RGB, SiteStyle

PERSON, HELMET, HELMET_ON, HELMET_OFF = 0, 1, 2, 3
SHIFT = 4  # OpenCV fixed-point bits: sub-pixel drawing keeps 12 px heads well-formed
_S = 1 << SHIFT

SKIN = ((240, 200, 170), (200, 150, 110), (150, 100, 70), (100, 65, 45))
HAIR = ((30, 25, 20), (70, 45, 25), (150, 120, 70), (15, 15, 15))
SHIRT = ((60, 90, 150), (200, 200, 200), (90, 90, 90), (120, 40, 40))

# Fractions of the full pixel area that must stay visible for an object to be labelled.
MIN_VISIBLE = {PERSON: 0.35, HELMET_ON: 0.5, HELMET_OFF: 0.5, HELMET: 0.5}


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _S)), int(round(y * _S))


def _ax(a: float, b: float) -> tuple[int, int]:
    return max(1, int(round(a * _S))), max(1, int(round(b * _S)))


class Canvas:
    """A region of the scene with a colour layer and an object-id mask."""

    def __init__(self, image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
        self.x0, self.y0 = x0, y0
        self.rgb = image[y0:y1, x0:x1].copy()
        self.mask = np.zeros(self.rgb.shape[:2], np.uint8)  # 1 body, 2 head

    def ellipse(self, cx, cy, ax, ay, color, part=1, start=0, end=360, angle=0.0) -> None:
        import cv2

        c = _p(cx - self.x0, cy - self.y0)
        axes = _ax(ax, ay)
        cv2.ellipse(self.rgb, c, axes, angle, start, end, color, -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(self.mask, c, axes, angle, start, end, part, -1, cv2.LINE_8, SHIFT)

    def poly(self, pts, color, part=1) -> None:
        import cv2

        arr = np.array([_p(x - self.x0, y - self.y0) for x, y in pts], np.int32)
        cv2.fillPoly(self.rgb, [arr], color, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.mask, [arr], part, cv2.LINE_8, SHIFT)

    def line(self, x0, y0, x1, y1, color, thickness, part=1) -> None:
        import cv2

        t = max(1, int(round(thickness)))
        a, b = _p(x0 - self.x0, y0 - self.y0), _p(x1 - self.x0, y1 - self.y0)
        cv2.line(self.rgb, a, b, color, t, cv2.LINE_AA, SHIFT)
        cv2.line(self.mask, a, b, part, t, cv2.LINE_8, SHIFT)


@dataclasses.dataclass
class Worker:
    x: float
    foot_y: float
    height: float
    headwear: str  # "helmet" | "cap" | "none"
    helmet_color: RGB
    cap_color: RGB
    vest_color: RGB
    trouser_color: RGB
    shirt_color: RGB
    skin: RGB
    hair: RGB
    arm_swing: tuple[float, float]
    leg_phase: float
    facing: int  # -1 left, +1 right (cap visor side)
    has_vest: bool = True

    @property
    def head_h(self) -> float:
        return self.height * 0.13

    @property
    def head_label(self) -> int:
        return HELMET_ON if self.headwear == "helmet" else HELMET_OFF


@dataclasses.dataclass
class Prop:
    kind: str  # "helmet" | "cone" | "bucket" | "barrier" | "sign"
    x: float
    base_y: float
    size: float
    color: RGB


def draw_worker(image: np.ndarray, owner: np.ndarray, w: Worker, body_id: int, head_id: int) -> tuple[int, int]:
    """Paint a worker; returns its full (unoccluded) body and head pixel areas."""
    H, W = image.shape[:2]
    hh = w.head_h
    hw = hh * 0.8
    top = w.foot_y - w.height
    half = max(hw * 1.6, w.height * 0.32)
    x0, y0 = int(math.floor(w.x - half)) - 2, int(math.floor(top)) - 2
    x1, y1 = int(math.ceil(w.x + half)) + 2, int(math.ceil(w.foot_y)) + 2
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return 0, 0
    # Draw on a canvas covering the unclipped extent so areas count hidden-by-border pixels too.
    big = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    big[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = image[cy0:cy1, cx0:cx1]
    cv = Canvas(big, 0, 0, big.shape[1], big.shape[0])
    cv.x0, cv.y0 = x0, y0

    shoulder_y = top + hh * 1.12
    hip_y = top + w.height * 0.54
    sw = hw * 1.05  # half shoulder width
    # legs
    spread = hw * (0.35 + 0.35 * math.sin(w.leg_phase))
    leg_t = hw * 0.5
    for side, ph in ((-1, 0.0), (1, math.pi)):
        fx = w.x + side * (hw * 0.3 + spread * 0.5 * (1 + math.sin(w.leg_phase + ph)) * 0.5)
        cv.line(w.x + side * hw * 0.35, hip_y, fx, w.foot_y - hh * 0.25, w.trouser_color, leg_t)
        cv.poly([(fx - hw * 0.3, w.foot_y - hh * 0.3), (fx + hw * 0.35 * w.facing + hw * 0.3, w.foot_y - hh * 0.3),
                 (fx + hw * 0.35 * w.facing + hw * 0.3, w.foot_y), (fx - hw * 0.3, w.foot_y)], (40, 35, 30))
    # arms (behind torso edges)
    arm_len = w.height * 0.36
    for side, swing in ((-1, w.arm_swing[0]), (1, w.arm_swing[1])):
        sx = w.x + side * sw * 0.9
        ex = sx + side * math.sin(swing) * arm_len
        ey = shoulder_y + math.cos(swing) * arm_len
        cv.line(sx, shoulder_y + hh * 0.1, ex, ey, w.shirt_color, hw * 0.42)
        cv.ellipse(ex, ey, hw * 0.2, hw * 0.2, w.skin)
    # torso
    torso = [(w.x - sw, shoulder_y), (w.x + sw, shoulder_y), (w.x + sw * 0.85, hip_y), (w.x - sw * 0.85, hip_y)]
    cv.poly(torso, w.vest_color if w.has_vest else w.shirt_color)
    if w.has_vest:
        for f in (0.45, 0.75):
            y = shoulder_y + (hip_y - shoulder_y) * f
            cv.line(w.x - sw * 0.9, y, w.x + sw * 0.9, y, (215, 215, 210), max(1.0, hh * 0.12))
    # neck + head
    head_cy = top + hh * 0.55
    cv.ellipse(w.x, shoulder_y - hh * 0.1, hw * 0.25, hh * 0.2, w.skin)
    cv.ellipse(w.x, head_cy, hw * 0.5, hh * 0.5, w.skin, part=2)
    if w.headwear == "helmet":
        c = w.helmet_color
        cv.ellipse(w.x, head_cy - hh * 0.02, hw * 0.62, hh * 0.55, c, part=2, start=180, end=360)
        cv.ellipse(w.x, head_cy - hh * 0.02, hw * 0.8, hh * 0.09, c, part=2)  # brim
        hl = tuple(min(255, int(v * 0.6 + 110)) for v in c)
        cv.ellipse(w.x - hw * 0.18, head_cy - hh * 0.32, hw * 0.14, hh * 0.08, hl, part=2, angle=-20)
    else:
        cv.ellipse(w.x, head_cy - hh * 0.05, hw * 0.5, hh * 0.45, w.hair, part=2, start=190, end=350)
        if w.headwear == "cap":
            c = w.cap_color
            cv.ellipse(w.x, head_cy - hh * 0.12, hw * 0.52, hh * 0.32, c, part=2, start=180, end=360)
            cv.poly([(w.x, head_cy - hh * 0.16), (w.x + w.facing * hw * 0.95, head_cy - hh * 0.1),
                     (w.x + w.facing * hw * 0.95, head_cy - hh * 0.02), (w.x, head_cy - hh * 0.04)], c, part=2)
    if hh >= 18:  # eyes, only where they are a few pixels wide
        for side in (-1, 1):
            cv.ellipse(w.x + side * hw * 0.18 + w.facing * hw * 0.08, head_cy + hh * 0.08,
                       hw * 0.05, hh * 0.04, (30, 25, 25), part=2)

    body_area = int(np.count_nonzero(cv.mask))
    head_area = int(np.count_nonzero(cv.mask == 2))
    _composite(image, owner, cv, x0, y0, {1: body_id, 2: head_id})
    return body_area, head_area


def _composite(image, owner, cv: Canvas, x0: int, y0: int, ids: dict[int, int]) -> None:
    H, W = image.shape[:2]
    h, w = cv.mask.shape
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(W, x0 + w), min(H, y0 + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sub_mask = cv.mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    sub_rgb = cv.rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    region = image[cy0:cy1, cx0:cx1]
    own = owner[cy0:cy1, cx0:cx1]
    painted = sub_mask > 0
    region[painted] = sub_rgb[painted]
    for part, oid in ids.items():
        own[sub_mask == part] = oid


def draw_prop(image: np.ndarray, owner: np.ndarray, p: Prop, oid: int) -> int:
    """Paint a prop; returns its full pixel area."""
    H, W = image.shape[:2]
    s = p.size
    x0, y0 = int(p.x - s * 1.6) - 2, int(p.base_y - s * 2.2) - 2
    x1, y1 = int(p.x + s * 1.6) + 3, int(p.base_y) + 3
    big = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return 0
    big[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = image[cy0:cy1, cx0:cx1]
    cv = Canvas(big, 0, 0, big.shape[1], big.shape[0])
    cv.x0, cv.y0 = x0, y0
    x, b, c = p.x, p.base_y, p.color
    if p.kind == "helmet":
        # a helmet lying on the ground: dome + brim, like a worn one without a head under it
        cv.ellipse(x, b - s * 0.12, s * 0.5, s * 0.62, c, start=180, end=360)
        cv.ellipse(x, b - s * 0.12, s * 0.66, s * 0.11, c)
        hl = tuple(min(255, int(v * 0.6 + 110)) for v in c)
        cv.ellipse(x - s * 0.15, b - s * 0.45, s * 0.12, s * 0.07, hl, angle=-20)
    elif p.kind == "cone":
        cv.poly([(x - s * 0.55, b - s * 0.1), (x + s * 0.55, b - s * 0.1), (x + s * 0.08, b - s * 1.6),
                 (x - s * 0.08, b - s * 1.6)], c)
        cv.line(x - s * 0.4, b - s * 0.7, x + s * 0.4, b - s * 0.7, (240, 240, 240), s * 0.18)
        cv.poly([(x - s * 0.75, b - s * 0.15), (x + s * 0.75, b - s * 0.15), (x + s * 0.75, b), (x - s * 0.75, b)],
                (40, 40, 40))
    elif p.kind == "bucket":  # upside-down bucket: round-ish top like a helmet, straight sides
        cv.poly([(x - s * 0.42, b - s * 0.9), (x + s * 0.42, b - s * 0.9), (x + s * 0.55, b), (x - s * 0.55, b)], c)
        cv.ellipse(x, b - s * 0.9, s * 0.42, s * 0.12, tuple(int(v * 0.8) for v in c))
    elif p.kind == "sign":  # round sign on a post
        cv.line(x, b, x, b - s * 1.3, (90, 90, 90), max(1.0, s * 0.1))
        cv.ellipse(x, b - s * 1.5, s * 0.4, s * 0.4, c)
    elif p.kind == "barrier":
        cv.poly([(x - s * 1.5, b - s * 0.9), (x + s * 1.5, b - s * 0.9), (x + s * 1.5, b - s * 0.35),
                 (x - s * 1.5, b - s * 0.35)], (235, 235, 235))
        for k in range(-3, 3):
            xs = x + k * s * 0.5
            cv.line(xs, b - s * 0.35, xs + s * 0.3, b - s * 0.9, (210, 40, 30), s * 0.16)
        for side in (-1, 1):
            cv.line(x + side * s * 1.3, b - s * 0.35, x + side * s * 1.3, b, (60, 60, 60), max(1.0, s * 0.12))
    area = int(np.count_nonzero(cv.mask))
    _composite(image, owner, cv, x0, y0, {1: oid})
    return area


def draw_background(rng: np.random.Generator, site: SiteStyle, width: int, height: int, horizon: float) -> np.ndarray:
    import cv2

    img = np.zeros((height, width, 3), np.float32)
    hz = int(horizon)
    t = np.linspace(0.0, 1.0, max(hz, 1))[:, None]
    sky = (1 - t) * np.array(site.sky_top, np.float32) + t * np.array(site.sky_bottom, np.float32)
    img[:hz] = sky[:, None, :]
    # ground: base colour + low-frequency texture + perspective darkening toward the camera
    noise = rng.normal(0, 1, (6, 8)).astype(np.float32)
    tex = cv2.resize(noise, (width, height - hz), interpolation=cv2.INTER_CUBIC) * site.ground_texture
    fine = rng.normal(0, site.ground_texture * 0.25, (height - hz, width)).astype(np.float32)
    ground = np.array(site.ground, np.float32)[None, None, :] + (tex + fine)[..., None]
    img[hz:] = ground
    out = np.clip(img, 0, 255).astype(np.uint8)
    # buildings on the horizon, with window grids and scaffolding
    for _ in range(rng.integers(1, 4)):
        bw = rng.uniform(0.15, 0.4) * width
        bh = rng.uniform(0.3, 0.9) * horizon
        bx = rng.uniform(-0.1, 0.9) * width
        color = site.building_colors[rng.integers(len(site.building_colors))]
        x0, y0, x1, y1 = int(bx), int(horizon - bh), int(bx + bw), hz + 2
        cv2.rectangle(out, (x0, y0), (x1, y1), color, -1)
        win = tuple(int(v * 0.55) for v in color)
        step = int(rng.uniform(10, 18))
        for wy in range(y0 + 5, y1 - 6, step):
            for wx in range(x0 + 4, x1 - 6, step):
                cv2.rectangle(out, (wx, wy), (wx + step // 2, wy + step // 2), win, -1)
        if rng.random() < 0.5:
            sc = (150, 150, 150) if rng.random() < 0.5 else (200, 120, 40)
            for sx in range(x0, x1, step * 2):
                cv2.line(out, (sx, y0 - 10), (sx, y1), sc, 1)
            for sy in range(y0 - 10, y1, step):
                cv2.line(out, (x0, sy), (x1, sy), sc, 1)
    if rng.random() < 0.5:  # a crane: line clutter at head height in the distance
        cx = int(rng.uniform(0.1, 0.9) * width)
        top = int(horizon * rng.uniform(0.05, 0.3))
        color = (230, 190, 30)
        cv2.line(out, (cx, hz), (cx, top), color, 2)
        cv2.line(out, (cx - int(width * 0.3), top), (cx + int(width * 0.15), top), color, 2)
    for _ in range(rng.integers(0, 3)):  # tyre tracks
        y = int(rng.uniform(horizon + 10, height))
        cv2.line(out, (0, y), (width, int(y + rng.uniform(-30, 30))), tuple(int(v * 0.8) for v in site.ground), 3)
    return out


def apply_camera(rng: np.random.Generator, site: SiteStyle, img: np.ndarray, blur: bool = True) -> np.ndarray:
    """Lighting, colour cast, blur and sensor noise."""
    import cv2

    h, w = img.shape[:2]
    f = img.astype(np.float32)
    gain = rng.uniform(*site.brightness)
    slope = rng.uniform(-0.15, 0.15)
    shade = 1.0 + slope * np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    tint = np.array(site.tint, np.float32) / 255.0
    f = f * gain * shade * tint
    gamma = rng.uniform(0.85, 1.2)
    f = 255.0 * np.power(np.clip(f, 0, 255) / 255.0, gamma)
    if blur:
        r = rng.random()
        if r < 0.25:
            f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.3))
        elif r < 0.35:
            k = int(rng.integers(3, 7))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            kernel /= max(kernel.sum(), 1e-6)
            f = cv2.filter2D(f, -1, kernel)
    sigma = rng.uniform(*site.noise_sigma)
    if sigma > 0:
        f = f + rng.normal(0, sigma, f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def perspective_height(foot_y: float, horizon: float, height: int, max_person: float) -> float:
    """Person height in pixels for a worker standing at ``foot_y`` (linear ground-plane perspective)."""
    return max_person * (foot_y - horizon) / (height - horizon)


def sample_worker(rng: np.random.Generator, site: SiteStyle, x: float, person_h: float, foot_y: float,
                  headwear_probs: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Worker:
    headwear = rng.choice(["helmet", "cap", "none"], p=list(headwear_probs))
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    return Worker(
        x=x, foot_y=foot_y, height=person_h, headwear=str(headwear),
        helmet_color=pick(site.helmet_colors), cap_color=pick(site.cap_colors),
        vest_color=pick(site.vest_colors), trouser_color=pick(site.trouser_colors),
        shirt_color=pick(SHIRT), skin=pick(SKIN), hair=pick(HAIR),
        arm_swing=(float(rng.uniform(-0.5, 0.9)), float(rng.uniform(-0.5, 0.9))),
        leg_phase=float(rng.uniform(0, 2 * math.pi)), facing=int(rng.choice([-1, 1])),
        has_vest=bool(rng.random() < 0.85),
    )


@dataclasses.dataclass
class SceneLayout:
    horizon: float
    max_person: float
    workers: list[Worker]
    props: list[Prop]


def sample_layout(rng: np.random.Generator, site: SiteStyle, width: int, height: int,
                  min_person: float = 85.0, max_workers: int = 8) -> SceneLayout:
    horizon = rng.uniform(0.26, 0.40) * height
    max_person = rng.uniform(0.85, 1.0) * (height - horizon) * 1.25
    n = int(rng.integers(1, max_workers + 1))
    workers: list[Worker] = []
    while len(workers) < n:
        if workers and rng.random() < 0.4:  # crowding: a second worker next to an existing one
            ref = workers[int(rng.integers(len(workers)))]
            ph = ref.height * rng.uniform(0.9, 1.1)
            x = ref.x + rng.choice([-1, 1]) * rng.uniform(0.25, 0.8) * ref.height * 0.35
        else:
            ph = float(np.exp(rng.uniform(np.log(min_person), np.log(max_person * 0.95))))
            x = rng.uniform(0.02, 0.98) * width
        foot = horizon + ph / max_person * (height - horizon)
        workers.append(sample_worker(rng, site, float(x), float(ph), float(foot)))
    props: list[Prop] = []
    kinds = (["helmet"] * int(rng.integers(0, 3)) + ["cone"] * int(rng.integers(0, 4))
             + ["bucket"] * int(rng.integers(0, 2)) + ["sign"] * int(rng.integers(0, 2))
             + ["barrier"] * int(rng.integers(0, 3)))
    for kind in kinds:
        base = rng.uniform(horizon + 0.08 * (height - horizon), height * 1.02)
        ph = perspective_height(base, horizon, height, max_person)
        size = ph * {"helmet": 0.13, "cone": 0.2, "bucket": 0.16, "sign": 0.25, "barrier": 0.22}[kind]
        if kind == "helmet":
            color = site.helmet_colors[int(rng.integers(len(site.helmet_colors)))]
        elif kind == "cone":
            color = (245, 110, 25)
        elif kind == "bucket":
            palette = site.helmet_colors + site.cap_colors
            color = palette[int(rng.integers(len(palette)))]
        elif kind == "sign":
            color = (240, 200, 30) if rng.random() < 0.5 else (220, 40, 30)
        else:
            color = (235, 235, 235)
        props.append(Prop(kind, float(rng.uniform(0.02, 0.98) * width), float(base), float(max(size, 6.0)), color))
    return SceneLayout(horizon, max_person, workers, props)


def render_layout(layout: SceneLayout, background: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint workers and props over ``background``; returns (rgb, boxes [N,4], labels [N])."""
    img = background.copy()
    H, W = img.shape[:2]
    owner = np.full((H, W), -1, np.int32)
    items: list[tuple[float, str, object]] = [(w.foot_y, "w", w) for w in layout.workers]
    items += [(p.base_y, "p", p) for p in layout.props]
    items.sort(key=lambda t: t[0])
    # objects: (label, owner ids, full area)
    objects: list[tuple[int, tuple[int, ...], int]] = []
    next_id = 0
    for _, kind, obj in items:
        if kind == "w":
            body, head = next_id, next_id + 1
            next_id += 2
            body_area, head_area = draw_worker(img, owner, obj, body, head)
            objects.append((PERSON, (body, head), body_area))
            objects.append((obj.head_label, (head,), head_area))
        else:
            oid = next_id
            next_id += 1
            area = draw_prop(img, owner, obj, oid)
            if obj.kind == "helmet":
                objects.append((HELMET, (oid,), area))
    boxes, labels = [], []
    for label, ids, area in objects:
        if area <= 0:
            continue
        vis = np.isin(owner, ids) if len(ids) > 1 else owner == ids[0]
        count = int(np.count_nonzero(vis))
        if count < MIN_VISIBLE[label] * area or count < 12:
            continue
        ys, xs = np.nonzero(vis)
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if box[2] - box[0] < 3 or box[3] - box[1] < 3:
            continue
        boxes.append(box)
        labels.append(label)
    return (img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64))


def render_scene(rng: np.random.Generator, site: SiteStyle, width: int = 512, height: int = 384
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A full random scene: (rgb uint8 [H,W,3], boxes [N,4] float32 pixels, labels [N] int64)."""
    layout = sample_layout(rng, site, width, height)
    bg = draw_background(rng, site, width, height, layout.horizon)
    img, boxes, labels = render_layout(layout, bg)
    return apply_camera(rng, site, img), boxes, labels
