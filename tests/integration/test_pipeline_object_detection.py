"""The object-detection pipeline's download branch (the nested dataset-source pipeline) through kfp.local.

The whole pipeline's real run (test profile) is in test_wheel.py: it runs once, from the installed wheel,
through `mlkit demo`, and the tests there read its task outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkit.data.layout import load_split


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*non-Python base image:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:.*have no effect in the current local runner:UserWarning")
def test_download_branch_of_the_dataset_source(tmp_path):
    """The nested dataset-source pipeline (If/Else + OneOf + importer) with a local COCO folder."""
    from kfp import local

    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.pipelines.object_detection import build_dataset_source

    generate_dataset(tmp_path / "src", SyntheticSpec(train=10, val=0, test=0, seed=5), show_progress=False)
    coco = tmp_path / "src" / "train"  # annotations.json + images/: a plain COCO folder, no dataset.json
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = build_dataset_source()(dataset_uri=f"file://{coco}", profile="test")

    dataset = Path(task.output.path)
    assert dataset.parent.name == "download"
    assert sum(len(load_split(dataset, s)) for s in ("train", "val", "test")) == 10
    assert len(load_split(dataset, "test")) == 2  # the download component's default 20 % test split
    (run_dir,) = (tmp_path / "root").glob("dataset-source-*")
    assert not (run_dir / "generate-dataset").exists()  # the If branch did not run
