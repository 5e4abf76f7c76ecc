"""generate_video component: python_func writes a clip set that load_clip_set reads back."""

import pytest
from kfp import dsl

from mlkit.components.generate_video.component import generate_video
from mlkit.data.synthetic.clipset import load_clip_set


def test_writes_a_clip_set_with_metadata(tmp_path):
    clips = dsl.Dataset(uri=str(tmp_path / "clips"))
    generate_video.python_func(clips=clips, test_seeds="21,22", tune_seeds="23", frames=2, width=96, height=64)
    test, tune = load_clip_set(clips.path)
    assert [p.name for p in test] == ["A_21.avi", "B_22.avi"] and [p.name for p in tune] == ["A_23.avi"]
    assert clips.metadata["source"] == "synthetic-video" and clips.metadata["test_seeds"] == [21, 22]


def test_a_seed_in_both_lists_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="both test and tuning clips"):
        generate_video.python_func(clips=dsl.Dataset(uri=str(tmp_path / "c")), test_seeds="1", tune_seeds="1")
    assert not (tmp_path / "c").exists()
