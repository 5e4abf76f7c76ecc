"""Shared by every click command group: turn user errors into one-line usage errors."""

from __future__ import annotations

import functools

import click

from mlkit.errors import MlkitError

# The names of mlkit.profiles.PROFILES (not imported: it would pull numpy into every CLI start; a test keeps
# them equal).
PROFILE_NAMES = ("test", "demo", "demo-scratch", "full")


def friendly(fn):
    """``MlkitError`` and file-system errors (a missing file, a folder where a file goes, no permission) become a click
    usage error: a message and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlkitError as exc:
            raise click.UsageError(str(exc)) from None
        except FileNotFoundError as exc:
            raise click.UsageError(f"file not found: {exc.filename or exc}") from None
        except (IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as exc:
            path = f"{exc.filename}: " if exc.filename else ""
            raise click.UsageError(f"{path}{exc.strerror or exc}; check the paths in your options or spec") from None

    return wrapper


# Every command answers -h as well as --help: also the ones the image entrypoint runs without the `mlkit` group.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
