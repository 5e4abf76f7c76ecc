"""Read the hard-example store (HE_SAVED_URL) that the deploy worker writes (``mlkit.joint.outputs``).

A store holds clean frames ``frame_000123.jpg`` (no boxes drawn, unlike Sedna's) and a sidecar
``frame_000123.json`` with ``width``, ``height``, ``class_names`` and the edge (and cloud) predictions.
The sidecar is written after its image, so a frame counts only once its sidecar exists.

The worker also keeps its latest edge/cloud agreement there (``agreement.json``, ``mlkit.joint.agreement``), which
an ``agreement`` train trigger reads (``read_agreement``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from mlkit.errors import MlkitError
from mlkit.joint.agreement import AGREEMENT_FILE

log = logging.getLogger(__name__)
AGREEMENT_METRICS = {"agreement": "audit", "agreement_hard": "hard"}  # train-trigger metric -> monitor stream


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
        if side.name == AGREEMENT_FILE:
            continue
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


def _time(value: object) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def read_agreement(store: str | Path, class_names: Sequence[str], after: str | None = None
                   ) -> tuple[dict[str, list[float | None]], str]:
    """The worker's latest edge/cloud agreement in ``store``, as train-trigger metrics, and a note saying what it is.

    Returns ``({"agreement": [per class], "agreement_hard": [...]}, note)``; a list reduces to the overall value
    (its mean over the classes the cloud saw) unless the condition indexes a class. A stream is left out while its
    window holds fewer frames than the monitor trusts, or when its window began before ``after`` (an ISO time: the
    end of the last round, so a round is not started again on the agreement that started the previous one). No
    file, or an unreadable one, gives ``{}`` and the reason.
    """
    path = Path(store) / AGREEMENT_FILE
    if not path.is_file():
        return {}, f"no {AGREEMENT_FILE} in {store} yet (the edge worker writes it as the cloud answers audited frames)"
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); the agreement trigger waits for the next one", path, exc)
        return {}, f"{path} is unreadable ({exc})"
    cutoff = _time(after) if after else None
    metrics, notes = {}, []
    for metric, stream in AGREEMENT_METRICS.items():
        per, frames = data.get(f"{metric}_per_class"), data.get(f"{stream}_frames")
        need = data.get(f"{stream}_min_frames")
        since = _time(data.get(f"{stream}_since"))
        if not isinstance(per, dict) or not isinstance(data.get(metric), int | float):
            notes.append(f"{metric}: not measured yet")
        elif not isinstance(frames, int) or frames < (need if isinstance(need, int) else 1):
            notes.append(f"{metric}: only {frames} {stream} frames so far")
        elif cutoff is not None and (since is None or since <= cutoff):
            notes.append(f"{metric}: its window began before the last round ended; waiting for a fresh one")
        else:
            metrics[metric] = [v if isinstance(v, int | float) else None for v in (per.get(c) for c in class_names)]
            notes.append(f"{metric} {data[metric]:.3f} over {frames} {stream} frames")
    written = data.get("written")
    return metrics, "; ".join(notes) + (f" (written {written})" if written else "")
