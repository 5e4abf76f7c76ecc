"""environment.yml must pin exactly what pyproject.toml pins (runtime + dev), or conda users drift."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _pyproject_pins() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | set(extras["full"]) | set(extras["dev"])


def _environment_pins() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {p for p in pip if not p.startswith("-e")}


def test_environment_mirrors_pyproject():
    py, env = _pyproject_pins(), _environment_pins()
    assert py - env == set(), f"in pyproject.toml but not environment.yml: {sorted(py - env)}"
    assert env - py == set(), f"in environment.yml but not pyproject.toml: {sorted(env - py)}"


def test_every_dependency_is_pinned():
    unpinned = [p for p in _pyproject_pins() if "==" not in p]
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_edge_install_has_no_heavy_frameworks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = project["dependencies"] + project["optional-dependencies"]["edge"]
    names = {p.split("==")[0].split("[")[0].lower() for p in edge}
    assert not names & {"tensorflow-cpu", "tensorflow", "kfp", "kserve", "keras"}
