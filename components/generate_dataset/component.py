"""generate_dataset: synthetic helmet scenes sized by a profile -> Dataset (an mlkit dataset folder)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def generate_dataset(dataset: Output[Dataset], profile: str = "test") -> str:
    """Write the profile's synthetic train/val/test splits to ``dataset`` (dataset.json + COCO splits).

    Returns the artifact's URI: the pipeline selects between this branch and the download branch
    with ``dsl.OneOf`` over that string (kfp.local 2.17 cannot select artifacts with dsl.OneOf).
    """
    import dataclasses
    import logging
    import os

    from mlkit.data.synthetic.generate import generate_dataset as generate
    from mlkit.profiles import get_profile

    spec = get_profile(profile).data  # MlkitError (a ValueError) names the known profiles
    os.makedirs(dataset.path, exist_ok=True)
    generate(dataset.path, spec, show_progress=False)
    logging.getLogger("mlkit.components").info("generated %s images for profile %s in %s",
                                               spec.train + spec.val + spec.test, profile, dataset.path)
    dataset.metadata.update(source="synthetic", profile=profile, generator=dataclasses.asdict(spec),
                            counts={"train": spec.train, "val": spec.val, "test": spec.test})
    return dataset.uri


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``generate_dataset`` built on ``base_image``."""
    return with_base_image(generate_dataset, base_image)
