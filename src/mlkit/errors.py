"""Errors that carry a message meant for the user.

Every error that a user can cause with bad input derives from ``MlkitError`` (a
``ValueError``), so the CLI can print it without a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


class MlkitError(ValueError):
    """A problem the user can fix; the message says what was wrong and how to fix it."""


class DataFormatError(MlkitError):
    """A label or annotation file is malformed. Names the file and, when known, the line."""

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class StorageError(MlkitError):
    """A storage URI could not be read or written (bad scheme, missing object, credentials)."""


@contextlib.contextmanager
def paths_named_as(replacements: Mapping[str, str]) -> Iterator[None]:
    """An ``MlkitError`` raised inside names the user's paths, not the temporary folders they were staged in."""
    try:
        yield
    except MlkitError as exc:
        message = str(exc)
        for staged, real in replacements.items():
            message = message.replace(str(staged), str(real))
        exc.args = (message,)  # same type and attributes: callers still catch DataFormatError
        raise
