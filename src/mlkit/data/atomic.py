"""Crash-safe file writes and collision-free output names for dataset writers.

Every writer goes through a temp file in the destination folder followed by
``os.replace``: a reader (or a killed notebook kernel) never sees half a file,
because a rename within one file system is atomic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def fsync_dir(path: Path | str) -> None:
    """Make a folder's entries (a rename, a new or removed file) durable, as a file's fsync does for its bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_copy(src: Path | str, dst: Path | str) -> Path:
    """Copy ``src`` to ``dst`` atomically; a no-op when both name the same file (writing in place)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and os.path.samefile(src, dst):
        return dst
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
    return dst


def unique_names(paths: Sequence[Path | str]) -> list[str]:
    """File names for ``paths`` that are unique, also by stem (label files are named by stem).

    The first file keeps its name; a later file whose stem is taken gets its index as a prefix
    (``7_img.jpg``), so ``a/img.jpg`` and ``b/img.jpg`` can live in one ``images/`` folder.
    """
    taken: set[str] = set()
    names: list[str] = []
    for index, p in enumerate(paths):
        name = Path(p).name
        candidate, n = name, 0
        while Path(candidate).stem.lower() in taken:
            n += 1
            candidate = f"{index}_{name}" if n == 1 else f"{index}_{n}_{name}"
        taken.add(Path(candidate).stem.lower())
        names.append(candidate)
    return names
