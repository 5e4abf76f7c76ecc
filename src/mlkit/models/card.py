"""Model cards: a JSON record of how a model was made and how well it does."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

import mlkit
from mlkit.data.atomic import atomic_write_text

CARD = "model_card.json"


def write_card(model_dir: Path, **fields) -> Path:
    """Merge ``fields`` into ``model_dir/model_card.json`` (created if absent)."""
    path = Path(model_dir) / CARD
    card = json.loads(path.read_text()) if path.is_file() else {}
    card.update(fields)
    card.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    card["mlkit_version"] = mlkit.__version__
    card["machine"] = {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count()}
    atomic_write_text(path, json.dumps(card, indent=2, default=str))
    return path


def read_card(model_dir: Path) -> dict:
    path = Path(model_dir) / CARD
    return json.loads(path.read_text()) if path.is_file() else {}
