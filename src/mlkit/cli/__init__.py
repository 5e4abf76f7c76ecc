"""mlkit's command line, one module per command group: ``app`` (``mlkit`` itself, and ``data``, ``train``, ``demo``),
``serve``, ``stream``, ``pipeline``, ``joint``, ``graph``, ``incremental``, ``models``; ``tools`` holds what
they share.

Only the command line imports these modules; the library never does.
"""


def __getattr__(name: str):
    # ``mlkit.cli:main`` (the console script) without loading every command group when one module is imported
    if name == "main":
        from mlkit.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
