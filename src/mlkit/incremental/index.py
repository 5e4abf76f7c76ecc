"""The job's dataset index: ``<dataset>/index.jsonl`` (one labelled sample a line) + ``<dataset>/images/``.

Each line: ``{"seq", "id", "image", "width", "height", "boxes", "labels", "split", "source", "pseudo",
"scores", "added"}`` - ``boxes`` in pixels ``[xmin, ymin, xmax, ymax]``, ``labels`` class ids of the
index's ``class_names`` (``<dataset>/classes.txt``), ``split`` ``train`` or ``eval`` (drawn once with
``trainProb`` when the sample is added, and kept when it is relabelled), ``pseudo`` true for
auto-labels a person has not reviewed, ``scores`` the auto-labeller's box scores. ``seq`` grows by one
per added or relabelled sample: ``num_of_samples`` is the number of samples with ``seq`` above the last
round's cut. Samples with source ``initial`` (the data the first model saw) are never new; they feed
replay and evaluation.

Every change rewrites the file atomically under a lock, so readers never see half a line and two
labelling commands cannot lose each other's samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError
from mlkit.jsonl import read_jsonl

INDEX = "index.jsonl"
CLASSES = "classes.txt"
SPLITS = ("train", "eval")


def draw_split(sample_id: str, train_prob: float, seed: int = 0) -> str:
    """``train`` with probability ``train_prob``, decided by a hash of the id: stable across re-imports."""
    h = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return "train" if u < train_prob else "eval"


class DatasetIndex:
    def __init__(self, root: str | Path, class_names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        stored = self._stored_classes()
        if class_names is not None:
            class_names = tuple(class_names)
            if stored is not None and stored != class_names:
                raise MlkitError(f"{self.root / CLASSES} lists classes {list(stored)}, not {list(class_names)}")
        self.class_names: tuple[str, ...] | None = class_names or stored

    def _stored_classes(self) -> tuple[str, ...] | None:
        path = self.root / CLASSES
        if not path.is_file():
            return None
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())

    @property
    def path(self) -> Path:
        return self.root / INDEX

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def create(self) -> DatasetIndex:
        if self.class_names is None:
            raise MlkitError(f"the dataset index {self.root} does not exist yet and no class names were given to "
                             f"create it; import labels into it first (mlkit label import) or give the class names")
        self.root.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(exist_ok=True)
        if not (self.root / CLASSES).is_file():
            atomic_write_text(self.root / CLASSES, "\n".join(self.class_names) + "\n")
        if not self.path.is_file():
            atomic_write_text(self.path, "")
        return self

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            raise MlkitError(f"dataset index not found: {self.path} (create it with `mlkit label import` or "
                             "`mlkit incremental demo`)")
        return read_jsonl(self.path, partial_tail=False)  # written atomically: a bad last line is corruption

    def max_seq(self) -> int:
        return max((e["seq"] for e in self.entries()), default=0)

    def new_since(self, cut: int) -> list[dict]:
        return [e for e in self.entries() if e["seq"] > cut and e.get("source") != "initial"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".index.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, samples: Iterable[dict], replace: bool = True) -> tuple[int, int]:
        """Append samples (or replace those with the same ``id`` when ``replace``); returns (added, replaced).

        A replaced sample keeps its split (eval stays eval) and gets a new ``seq`` (it is new labelling);
        a sample whose boxes, labels and pseudo flag are unchanged is left alone (re-importing the same
        labels must not make old samples count as new).
        """
        if self.class_names is None:
            raise MlkitError(f"{self.root} has no {CLASSES}: create the index first")
        added = replaced = 0
        with self._locked():
            entries = self.entries() if self.path.is_file() else []
            by_id = {e["id"]: i for i, e in enumerate(entries)}
            seq = max((e["seq"] for e in entries), default=0)
            for s in samples:
                self._validate(s)
                seq += 1
                s = {**s, "seq": seq}
                if s["id"] in by_id:
                    if not replace:
                        seq -= 1
                        continue
                    old = entries[by_id[s["id"]]]
                    if _same_labels(old, s):
                        seq -= 1
                        continue
                    s["split"] = old["split"]
                    entries[by_id[s["id"]]] = s
                    replaced += 1
                else:
                    by_id[s["id"]] = len(entries)
                    entries.append(s)
                    added += 1
            atomic_write_text(self.path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
        return added, replaced

    def _validate(self, s: dict) -> None:
        for key in ("id", "image", "width", "height", "boxes", "labels", "split", "source"):
            if key not in s:
                raise MlkitError(f"sample {s.get('id', '?')}: missing {key!r}")
        if s["split"] not in SPLITS:
            raise MlkitError(f"sample {s['id']}: split must be one of {SPLITS}, got {s['split']!r}")
        if len(s["boxes"]) != len(s["labels"]):
            raise MlkitError(f"sample {s['id']}: {len(s['boxes'])} boxes but {len(s['labels'])} labels")
        n = len(self.class_names)
        if any(not 0 <= int(c) < n for c in s["labels"]):
            raise MlkitError(f"sample {s['id']}: class id outside 0..{n - 1} ({list(self.class_names)})")

    def image_path(self, entry: dict) -> Path:
        p = Path(entry["image"])
        return p if p.is_absolute() else self.root / p

    def to_dataset(self, entries: Sequence[dict], name: str = "dataset"):
        from mlkit.data.dataset import Dataset, ImageRecord

        records = [ImageRecord(self.image_path(e), int(e["width"]), int(e["height"]),
                               np.asarray(e["boxes"], np.float32).reshape(-1, 4), np.asarray(e["labels"], np.int64),
                               {"id": e["id"], "source": e["source"], "pseudo": bool(e.get("pseudo"))})
                   for e in entries]
        return Dataset(records, self.class_names, name)


def _same_labels(a: dict, b: dict) -> bool:
    return (a["labels"] == b["labels"] and bool(a.get("pseudo")) == bool(b.get("pseudo"))
            and np.allclose(np.asarray(a["boxes"], np.float32).reshape(-1, 4),
                            np.asarray(b["boxes"], np.float32).reshape(-1, 4), atol=0.01))


def sample(sample_id: str, image: str, width: int, height: int, boxes, labels, split: str, source: str,
           pseudo: bool = False, scores: Sequence[float] | None = None, **extra) -> dict:
    """One index line (``seq`` is set by ``DatasetIndex.add``)."""
    import datetime as dt

    out = {"id": sample_id, "image": image, "width": int(width), "height": int(height),
           "boxes": [[round(float(v), 2) for v in b] for b in np.asarray(boxes, np.float32).reshape(-1, 4)],
           "labels": [int(c) for c in labels], "split": split, "source": source, "pseudo": bool(pseudo),
           "added": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **extra}
    if scores is not None:
        out["scores"] = [round(float(s), 4) for s in scores]
    return out
