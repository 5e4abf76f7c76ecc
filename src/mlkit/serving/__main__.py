"""Image entrypoint: ``python -m mlkit.serving --model-dir /mnt/models`` is ``mlkit serve`` with a container's
defaults (bind 0.0.0.0; models in /mnt/models unless only a --graph-config is given). One command, one set of
options: ``mlkit serve --help`` lists them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

PROG = "python -m mlkit.serving"


def _defaults(argv: list[str]) -> dict:
    graph_only = any(a == "--graph-config" or a.startswith("--graph-config=") for a in argv) and not any(
        a == "--model-dir" or a.startswith("--model-dir=") for a in argv)
    return {"host": "0.0.0.0"} if graph_only else {"host": "0.0.0.0", "model_dir": "/mnt/models"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options ``argv`` gives the server (as ``mlkit serve`` parses them, with the container's defaults)."""
    import click

    from mlkit.cli.serve import serve

    argv = list(argv)
    try:
        with serve.make_context(PROG, argv, default_map=_defaults(argv)) as ctx:
            params = {k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()}
    except click.ClickException as exc:  # as the command line would: the message, exit code 2
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:  # --help was shown
        raise SystemExit(exc.exit_code) from None
    return argparse.Namespace(**params)


def main(argv: list[str] | None = None) -> int:
    from mlkit.cli.serve import serve

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve.main(args=argv, prog_name=PROG, default_map=_defaults(argv), standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
