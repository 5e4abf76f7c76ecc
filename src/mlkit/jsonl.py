"""JSON-lines files: one JSON object a line (results, dataset indexes)."""

from __future__ import annotations

import json
from pathlib import Path

from mlkit.errors import MlkitError


def read_jsonl(path: str | Path, partial_tail: bool = True) -> list[dict]:
    """Records of a JSON-lines file; any bad line is an error naming its line number.

    ``partial_tail``: a last line cut short (a run stopped mid-write, no final newline) is left out
    instead of refused. Files written atomically pass ``False``: a bad last line there is corruption.
    """
    path = Path(path)
    if not path.is_file():
        raise MlkitError(f"JSON-lines file not found: {path}")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if partial_tail and n == len(lines) and not text.endswith("\n"):
                break
            raise MlkitError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise MlkitError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records
