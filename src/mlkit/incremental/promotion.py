"""Atomic promotion of a new model version into the serving repository (``mlkit.serving.repository``).

Steps: copy ``model.tflite`` and ``metadata.json`` into ``<repo>/<name>/<v>.tmp/``, write the ``READY``
marker and ``promotion.json``, fsync, then rename ``<v>.tmp`` to ``<v>`` and fsync the parent. The
repository ignores non-numeric folders, so until the rename the server keeps serving the previous
version; the rename is atomic, so afterwards it sees a complete version and hot-reloads it (requests
already running finish on the old interpreter). A crash at any step leaves the deployed version
intact and at worst a stale ``<v>.tmp`` that the next promotion removes. Promoting a version that
already exists complete is a no-op (a controller that died after the rename finishes its bookkeeping).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mlkit.data.atomic import fsync_dir
from mlkit.errors import MlkitError

STEPS = ("prepare", "copy_model", "copy_metadata", "mark_ready", "rename", "sync")
MODEL_FILE, METADATA_FILE, READY = "model.tflite", "metadata.json", "READY"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def versions(repo: str | Path, name: str) -> list[int]:
    """Complete versions of ``name`` in the repository (folders named by an integer), sorted."""
    base = Path(repo) / name
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()
                  and (p / MODEL_FILE).is_file() and (p / METADATA_FILE).is_file())


def deployed_version(repo: str | Path, name: str) -> int | None:
    """The version the server serves: the newest complete one."""
    found = versions(repo, name)
    return found[-1] if found else None


def next_version(repo: str | Path, name: str) -> int:
    """One above every version folder, complete or stale (``<v>.tmp`` included), so a name is never reused."""
    base = Path(repo) / name
    taken = [0]
    if base.is_dir():
        for p in base.iterdir():
            stem = p.name.removesuffix(".tmp")
            if stem.isdigit():
                taken.append(int(stem))
    return max(taken) + 1


def promote(repo: str | Path, name: str, version: int, tflite_dir: str | Path, provenance: dict | None = None,
            fault: Callable[[str], None] | None = None) -> Path:
    """Publish ``tflite_dir`` (model.tflite + metadata.json) as ``<repo>/<name>/<version>``; returns the folder.

    ``fault(step)`` is called before each step in ``STEPS`` (tests raise there to simulate a crash).
    """
    src = Path(tflite_dir)
    for f in (MODEL_FILE, METADATA_FILE):
        if not (src / f).is_file():
            raise MlkitError(f"cannot promote {src}: {f} is missing")
    base = Path(repo) / name
    final = base / str(version)
    if final.exists():
        if version in versions(repo, name):
            return final  # done by an earlier, interrupted run
        raise MlkitError(f"{final} exists but is not a complete model version; remove it or pick another version")
    step = fault or (lambda s: None)
    step("prepare")
    tmp = base / f"{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a crashed promotion
    tmp.mkdir(parents=True)
    step("copy_model")
    shutil.copyfile(src / MODEL_FILE, tmp / MODEL_FILE)
    _fsync_file(tmp / MODEL_FILE)
    step("copy_metadata")
    shutil.copyfile(src / METADATA_FILE, tmp / METADATA_FILE)
    _fsync_file(tmp / METADATA_FILE)
    step("mark_ready")
    (tmp / "promotion.json").write_text(json.dumps({"version": version, **(provenance or {})}, indent=2))
    (tmp / READY).write_text("")
    fsync_dir(tmp)
    step("rename")
    os.rename(tmp, final)
    step("sync")
    fsync_dir(base)
    return final
