"""Images as bytes and as pictures: JPEG and PNG encoding, boxes drawn with OpenCV.

numpy and OpenCV only (no TensorFlow, no widgets): the clients, the edge worker and the server use it, and
``mlkit.viz`` builds its widgets on it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError

# RGB per class id (person, helmet, helmet-on, helmet-off); later ids cycle.
PALETTE = ((60, 200, 60), (230, 60, 230), (40, 170, 255), (255, 60, 40), (250, 200, 0), (0, 200, 200))
GROUND_TRUTH = (255, 255, 255)


def draw_detections(image: np.ndarray, det: Detections, class_names: Sequence[str], *, thickness: int = 2,
                    show_scores: bool = True, color: tuple[int, int, int] | None = None) -> np.ndarray:
    """A copy of the RGB ``image`` with boxes and labels drawn."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
        c = color or PALETTE[int(label) % len(PALETTE)]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), c, thickness)
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
        text = f"{name} {score:.2f}" if show_scores else name
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        ty = max(y0, th + 2)
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty), c, -1)
        cv2.putText(out, text, (x0 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def draw_ground_truth(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
                      ) -> np.ndarray:
    det = Detections(boxes, np.ones(len(labels), np.float32), labels)
    return draw_detections(image, det, class_names, thickness=1, show_scores=False, color=GROUND_TRUTH)


def image_grid(images: Sequence[np.ndarray], cols: int = 3, pad: int = 4) -> np.ndarray:
    """Tile same-size RGB images into one image (white padding)."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return grid


def encode_image(image: np.ndarray, encoding: str = "jpeg", quality: int = 90) -> bytes:
    """RGB uint8 [H, W, 3] -> JPEG or PNG bytes."""
    import cv2

    image = np.ascontiguousarray(image)  # OpenCV refuses strided views (crops, flipped arrays)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MlkitError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
    ext, params = (".png", []) if encoding == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise MlkitError(f"could not encode the image as {encoding}")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    return encode_image(rgb, "jpeg", quality)
