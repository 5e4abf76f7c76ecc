"""Read the hard-example store (HE_SAVED_URL) that the deploy worker writes (``mlkit.joint.outputs``).

A store holds clean frames ``frame_000123.jpg`` (no boxes drawn, unlike Sedna's) and a sidecar
``frame_000123.json`` with ``width``, ``height``, ``class_names`` and the edge (and cloud) predictions.
The sidecar is written after its image, so a frame counts only once its sidecar exists.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mlkit.errors import MlkitError


@dataclasses.dataclass(frozen=True)
class HardExample:
    id: str  # the frame's stem, e.g. frame_000123 (prefixed when the store is namespaced)
    image: Path
    width: int
    height: int
    sidecar: dict


def read_store(store: str | Path, prefix: str = "") -> list[HardExample]:
    """Every complete hard example of a store, by name. ``prefix`` keeps ids unique across stores."""
    store = Path(store)
    if not store.is_dir():
        raise MlkitError(f"hard-example store not found: {store}")
    out = []
    for side in sorted(store.glob("*.json")):
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise MlkitError(f"{side}: invalid sidecar JSON ({exc.msg})") from None
        image = store / meta.get("image", side.stem + ".jpg")
        if not image.is_file():
            continue  # a sidecar without its image cannot be labelled
        try:
            width, height = int(meta["width"]), int(meta["height"])
        except (KeyError, TypeError, ValueError):
            raise MlkitError(f"{side}: the sidecar needs integer width and height") from None
        out.append(HardExample(prefix + side.stem, image, width, height, meta))
    return out
