"""generate_video: a set of labelled synthetic clips (test clips and tuning clips) -> Dataset (a clip-set folder)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def generate_video(clips: Output[Dataset], test_seeds: str = "7001,7002,7003,7004", tune_seeds: str = "101,202",
                   frames: int = 300, fps: float = 15.0, width: int = 512, height: int = 384):
    """Render one labelled clip per seed (sites alternating A, B) into ``clips``: ``test/``, ``tune/`` and
    ``clips.json``. ``tune_seeds`` "" tunes on the test clips themselves. A seed in both lists is refused."""
    import dataclasses

    from mlkit.data.synthetic.clipset import ClipSetSpec, render_clip_set

    spec = ClipSetSpec(test_seeds=test_seeds, tune_seeds=tune_seeds, frames=frames, fps=fps, width=width,
                       height=height)  # MlkitError (a ValueError) names a bad seed list or size
    render_clip_set(clips.path, spec, show_progress=False)
    clips.metadata.update(source="synthetic-video", **{k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in dataclasses.asdict(spec).items()})


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``generate_video`` built on ``base_image``."""
    return with_base_image(generate_video, base_image)
