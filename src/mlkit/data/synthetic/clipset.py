"""A set of labelled clips for video evaluation: test clips to report on and tuning clips to choose thresholds on.

Each clip is a pure function of its seed (``VideoSpec``), and the sites alternate A, B, A, ... within each list, so
the default set is the one issue 5's held-out figures were measured on (test seeds 7001-7004, tuning seeds 101
and 202, 300 frames of 512x384 at 15 fps). ``clips.json`` lists the files; it is written last, so a folder with a
manifest is complete.

>>> render_clip_set("clips/", ClipSetSpec(frames=60))           # clips/test/A_7001.avi, ..., clips/clips.json
>>> test, tune = load_clip_set("clips/")                        # paths for mlkit.joint.evaluate_on_video
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from mlkit.errors import MlkitError

MANIFEST = "clips.json"
SITES = ("A", "B")


def parse_seeds(text: str | Sequence[int], what: str = "seeds") -> tuple[int, ...]:
    """``"7001,7002"`` (or a sequence of ints) -> ``(7001, 7002)``; ``MlkitError`` names a bad item."""
    items = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) else list(text)
    seeds = []
    for item in items:
        try:
            seeds.append(int(item))
        except (TypeError, ValueError):
            raise MlkitError(f"{what}: {item!r} is not an integer; give a comma-separated list such as "
                             f"'7001,7002'") from None
    return tuple(seeds)


@dataclasses.dataclass(frozen=True)
class ClipSetSpec:
    test_seeds: tuple[int, ...] = (7001, 7002, 7003, 7004)
    tune_seeds: tuple[int, ...] = (101, 202)  # () = tune on the test clips themselves
    frames: int = 300
    fps: float = 15.0
    width: int = 512
    height: int = 384

    def __post_init__(self) -> None:
        object.__setattr__(self, "test_seeds", parse_seeds(self.test_seeds, "test seeds"))
        object.__setattr__(self, "tune_seeds", parse_seeds(self.tune_seeds, "tuning seeds"))
        if not self.test_seeds:
            raise MlkitError("give at least one test seed (the clips the evaluation reports on)")
        for name in ("test_seeds", "tune_seeds"):
            seeds = getattr(self, name)
            if len(set(seeds)) != len(seeds):
                raise MlkitError(f"{name} repeat a seed: {list(seeds)}; each clip needs its own seed")
        shared = sorted(set(self.test_seeds) & set(self.tune_seeds))
        if shared:
            raise MlkitError(f"seeds {shared} are both test and tuning clips: thresholds would be tuned on the clips "
                             f"they are reported on; pick other tuning seeds")
        self.video_spec(self.test_seeds[0], "A")  # checks frames, fps and size

    def video_spec(self, seed: int, site: str):
        from mlkit.data.synthetic.video import VideoSpec

        return VideoSpec(frames=self.frames, fps=self.fps, width=self.width, height=self.height, site=site,
                         seed=seed)

    def clips(self) -> dict[str, list[tuple[str, int]]]:
        """``{"test": [(site, seed), ...], "tune": [...]}``, sites alternating A, B within each list."""
        return {role: [(SITES[i % len(SITES)], seed) for i, seed in enumerate(seeds)]
                for role, seeds in (("test", self.test_seeds), ("tune", self.tune_seeds))}


def render_clip_set(out_dir: str | Path, spec: ClipSetSpec | None = None, show_progress: bool = True) -> Path:
    """Render every clip of ``spec`` with its labels under ``out_dir``; returns the manifest's path."""
    from tqdm.auto import tqdm

    from mlkit.data.atomic import atomic_write_text
    from mlkit.data.synthetic.video import render_video

    spec = spec or ClipSetSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listed: dict[str, list[str]] = {"test": [], "tune": []}
    todo = [(role, site, seed) for role, items in spec.clips().items() for site, seed in items]
    for role, site, seed in tqdm(todo, desc="render clips", unit="clip", disable=not show_progress):
        rel = f"{role}/{site}_{seed}.avi"
        render_video(out_dir / rel, spec.video_spec(seed, site), show_progress=False)
        listed[role].append(rel)
    manifest = {"spec": dataclasses.asdict(spec), **listed}  # json writes the seed tuples as lists
    return atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def load_clip_set(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(test clips, tuning clips) listed in ``folder/clips.json``; ``MlkitError`` if a file is missing."""
    from mlkit.data.synthetic.video import labels_path_for

    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise MlkitError(f"{folder} has no {MANIFEST}: it is not a clip set; render one with render_clip_set "
                         f"(the generate_video component) or pass labelled videos directly")
    try:
        manifest = json.loads(path.read_text())
        roles = {role: [folder / str(rel) for rel in manifest[role]] for role in ("test", "tune")}
    except (ValueError, KeyError, TypeError) as exc:
        raise MlkitError(f"{path} is not a clip-set manifest ({type(exc).__name__}: {exc}); render the set "
                         f"again") from None
    if not roles["test"]:
        raise MlkitError(f"{path} lists no test clips")
    for clip in roles["test"] + roles["tune"]:
        for needed in (clip, labels_path_for(clip)):
            if not needed.is_file():
                raise MlkitError(f"{path} lists {clip.name}, but {needed} is missing; render the set again")
    return roles["test"], roles["tune"]
