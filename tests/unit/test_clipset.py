"""Clip sets for video evaluation: checked specs, rendered clips with labels, a manifest that is read back."""

from __future__ import annotations

import json

import pytest

from mlkit.data.synthetic.clipset import MANIFEST, ClipSetSpec, load_clip_set, parse_seeds, render_clip_set
from mlkit.data.synthetic.video import VideoLabels, labels_path_for
from mlkit.errors import MlkitError

TINY = {"frames": 3, "width": 128, "height": 96}


def test_seeds_parse_from_text_and_bad_items_are_named():
    assert parse_seeds("7001, 7002,") == (7001, 7002)
    assert parse_seeds([1, 2]) == (1, 2)
    with pytest.raises(MlkitError, match="'x7' is not an integer"):
        parse_seeds("7001,x7")


@pytest.mark.parametrize(("kw", "message"), [
    ({"test_seeds": ""}, "at least one test seed"),
    ({"test_seeds": "1,1"}, "repeat a seed"),
    ({"test_seeds": "1,2", "tune_seeds": "2,3"}, r"seeds \[2\] are both test and tuning clips"),
    ({"frames": 0}, "frames must be"),
    ({"width": 100, "height": 97}, "height must be an even integer"),
])
def test_bad_specs_are_refused(kw, message):
    with pytest.raises(MlkitError, match=message):
        ClipSetSpec(**kw)


def test_sites_alternate_within_each_list():
    spec = ClipSetSpec(test_seeds="5,6,7", tune_seeds="8")
    assert spec.clips() == {"test": [("A", 5), ("B", 6), ("A", 7)], "tune": [("A", 8)]}


def test_render_then_load(tmp_path):
    manifest = render_clip_set(tmp_path, ClipSetSpec(test_seeds="11,12", tune_seeds="13", **TINY),
                               show_progress=False)
    test, tune = load_clip_set(tmp_path)
    assert [p.name for p in test] == ["A_11.avi", "B_12.avi"] and [p.name for p in tune] == ["A_13.avi"]
    labels = VideoLabels.load(labels_path_for(test[1]))
    assert (labels.site, labels.seed, len(labels.frames), labels.width) == ("B", 12, 3, 128)
    assert json.loads(manifest.read_text())["spec"]["tune_seeds"] == [13]
    assert not list(tmp_path.rglob(".*tmp*"))  # no temp files left behind


def test_no_tuning_clips_means_tuning_on_the_test_clips(tmp_path):
    render_clip_set(tmp_path, ClipSetSpec(test_seeds="3", tune_seeds="", **TINY), show_progress=False)
    test, tune = load_clip_set(tmp_path)
    assert len(test) == 1 and tune == []


def test_loading_names_what_is_wrong(tmp_path):
    with pytest.raises(MlkitError, match="has no clips.json: it is not a clip set"):
        load_clip_set(tmp_path)
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(MlkitError, match="is not a clip-set manifest"):
        load_clip_set(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"test": [], "tune": []}))
    with pytest.raises(MlkitError, match="lists no test clips"):
        load_clip_set(tmp_path)
    render_clip_set(tmp_path, ClipSetSpec(test_seeds="4", tune_seeds="", **TINY), show_progress=False)
    labels_path_for(tmp_path / "test" / "A_4.avi").unlink()
    with pytest.raises(MlkitError, match=r"lists A_4.avi, but .*A_4.labels.json is missing"):
        load_clip_set(tmp_path)
