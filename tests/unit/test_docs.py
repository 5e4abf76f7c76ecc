"""The user docs: README.md and docs/*.md.

- README.md stays short, links every docs page, and keeps run-by-run figures out: a `<digit> ms`, `<digit> %` or
  `<digit> FPS/fps` may appear only in the Markdown table under the `## Status` heading and inside ```text blocks
  (program output: the quickstarts' and `make demo`'s). Measurements belong in docs/benchmarks.md.
- Relative links (and their #anchors) in README.md and docs/*.md point at files and headings that exist.
- docs/cli.md is exactly what docs/make_cli_reference.py prints now, so it cannot drift from `--help`.
- The README's quickstarts run: the ```python blocks under `### Python` are executed, and every command of the
  ```bash blocks under `### Command line` is run, each in a temporary working directory that links the repository's
  models/ (the quickstarts run from the root of a clone).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
GENERATOR = DOCS / "make_cli_reference.py"
REFRESH_CLI = "python docs/make_cli_reference.py > docs/cli.md"
MAX_README_LINES = 200
# One page per scenario, the generated CLI reference, and the results/benchmarks/decisions pages.
SCENARIO_PAGES = ("pipelines.md", "serving.md", "video.md", "joint-inference.md", "incremental-learning.md",
                  "ensembles.md")
PAGES = (*SCENARIO_PAGES, "cli.md", "results.md", "benchmarks.md", "decisions.md")
FIGURE = re.compile(r"\d\s*(?:ms\b|%|(?:FPS|fps)\b)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@dataclass
class Line:
    number: int  # 1-based
    text: str
    headings: tuple[str, ...]  # the headings in effect, outermost first, e.g. ("## Quickstart", "### Python")
    fence: str | None  # the info string of the fenced block the line is inside ("" for a bare fence), else None


def parse(text: str) -> list[Line]:
    """Every line of a Markdown file with its headings and fenced block. Fence lines themselves have fence None."""
    lines, headings, fence = [], [], None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip() if fence is None else None
            lines.append(Line(number, raw, tuple(headings), None))
            continue
        if fence is None and (m := re.match(r"^(#{1,6})\s+(.*)$", raw)):
            level = len(m.group(1))
            headings = [h for h in headings if len(h.split(" ", 1)[0]) < level] + [f"{m.group(1)} {m.group(2).strip()}"]
        lines.append(Line(number, raw, tuple(headings), fence))
    return lines


def blocks(lines: list[Line], fence: str, under: tuple[str, ...]) -> list[str]:
    """The bodies of the ```fence blocks right under the headings ``under`` (the innermost ones, in order)."""
    out, current, previous = [], [], None
    for line in [*lines, Line(0, "", (), None)]:
        inside = line.fence == fence and line.headings[-len(under):] == under
        if inside and previous is not None and line.number == previous + 1:
            current.append(line.text)
        elif inside:
            if current:
                out.append("\n".join(current))
            current = [line.text]
        previous = line.number if inside else None
    if current:
        out.append("\n".join(current))
    return out


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading line's title."""
    title = heading.split(" ", 1)[1].lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


@pytest.fixture(scope="module")
def readme() -> list[Line]:
    return parse(README.read_text())


# --------------------------------------------------------------------------- shape and links
def test_readme_is_short():
    count = len(README.read_text().splitlines())
    assert count <= MAX_README_LINES, (f"README.md has {count} lines, at most {MAX_README_LINES}: move details to a "
                                       f"page under docs/ and link it")


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_exists_and_readme_links_it(page):
    assert (DOCS / page).is_file(), f"docs/{page} is missing"
    assert f"](docs/{page})" in README.read_text(), f"README.md does not link docs/{page}"


@pytest.mark.parametrize("page", SCENARIO_PAGES)
def test_scenario_page_shows_python_and_shell(page):
    lines = parse((DOCS / page).read_text())
    fences = {line.fence for line in lines}
    assert "python" in fences and "bash" in fences, f"docs/{page} needs a ```python and a ```bash example"


@pytest.mark.parametrize("path", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for line in parse(path.read_text()):
        if line.fence is not None:
            continue
        for target in LINK.findall(line.text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.name}:{line.number}: {target} (no such file)")
            elif fragment and dest.suffix == ".md":
                anchors = {anchor(x.headings[-1]) for x in parse(dest.read_text()) if x.headings}
                if fragment not in anchors:
                    broken.append(f"{path.name}:{line.number}: {target} (no heading #{fragment} in {dest.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_figures_only_in_status_table_and_output(readme):
    status = [x for x in readme if x.headings[-1:] == ("## Status",) and x.fence is None
              and x.text.lstrip().startswith("|")]
    assert status, "README.md needs a status table (a Markdown table under '## Status')"
    allowed = {x.number for x in status} | {x.number for x in readme if x.fence == "text"}
    stray = [f"README.md:{x.number}: {x.text.strip()}" for x in readme
             if x.number not in allowed and FIGURE.search(x.text)]
    assert not stray, ("figures (ms, %, FPS) belong in the status table, in program output (```text blocks) or in "
                       "docs/benchmarks.md:\n" + "\n".join(stray))


# --------------------------------------------------------------------------- generated CLI reference
def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("make_cli_reference", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    page = (DOCS / "cli.md").read_text()
    expected = generator.render()
    if page != expected:
        first = next((i for i, (a, b) in enumerate(zip(page.splitlines(), expected.splitlines(), strict=False))
                      if a != b), min(len(page.splitlines()), len(expected.splitlines())))
        pytest.fail(f"docs/cli.md is out of date (first difference at line {first + 1}); refresh it with: "
                    f"{REFRESH_CLI}", pytrace=False)


# --------------------------------------------------------------------------- the quickstarts run
@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory with the repository's models/, and a private detached-server state dir."""
    from mlkit.serving import lifecycle

    (tmp_path / "models").symlink_to(ROOT / "models", target_is_directory=True)
    monkeypatch.setenv(lifecycle.STATE_DIR_ENV, str(tmp_path / "server-state"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for state, _ in lifecycle.status():  # only this test's servers: the state dir is private
        lifecycle.stop(state.name)


@pytest.mark.slow
def test_python_quickstart_runs(readme, workdir):
    code = blocks(readme, "python", ("## Quickstart", "### Python"))
    assert code, "README.md: no ```python block under '### Python' in '## Quickstart'"
    for i, source in enumerate(code):
        exec(compile(source, f"README.md (Python quickstart, block {i + 1})", "exec"), {"__name__": "__readme__"})


def _mlkit_launcher() -> str:
    """How to call this environment's mlkit: `python -m mlkit` when the package has a __main__, else the console
    script installed next to this interpreter."""
    if importlib.util.find_spec("mlkit.__main__") is not None:
        return f"{shlex.quote(sys.executable)} -m mlkit"
    script = Path(sys.executable).with_name("mlkit")
    if not script.is_file():
        pytest.fail(f"cannot run mlkit: no mlkit.__main__ and no console script {script}")
    return shlex.quote(str(script))


def _commands(script: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank lines and comment-only lines dropped."""
    out, pending = [], ""
    for raw in script.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


@pytest.mark.slow
def test_cli_quickstart_runs(readme, workdir):
    commands = [c for block in blocks(readme, "bash", ("## Quickstart", "### Command line"))
                for c in _commands(block)]
    assert commands, "README.md: no ```bash block under '### Command line' in '## Quickstart'"
    prelude = f'mlkit() {{ {_mlkit_launcher()} "$@"; }}\n'
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        run = subprocess.run(["bash", "-c", prelude + command], cwd=workdir, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, (f"README.md CLI quickstart: `{command}` exited {run.returncode}\n"
                                     f"stdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-3000:]}")


def test_the_image_entrypoint_answers_h_like_mlkit_serve():
    # The entrypoint runs `serve` without the `mlkit` group: -h must still be its help, and must not change
    # what `mlkit serve -h` shows afterwards (click caches a command's help option).
    from click.testing import CliRunner

    from mlkit.cli import main
    from mlkit.serving.__main__ import parse_args

    parse_args(["--threads", "2"])
    with pytest.raises(SystemExit) as exited:
        parse_args(["-h"])
    assert exited.value.code == 0
    assert "-h, --help" in CliRunner().invoke(main, ["serve", "-h"]).output
