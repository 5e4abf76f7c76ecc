"""The synthetic helmet scenes: deterministic, every class present, honestly hard, two distinct sites."""

import numpy as np
import pytest

from mlkit.data.dataset import HELMET_CLASSES
from mlkit.data.layout import load_split
from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
from mlkit.data.synthetic.scene import HELMET_OFF, HELMET_ON, PERSON, render_scene
from mlkit.data.synthetic.sites import SITES, get_site
from mlkit.errors import MlkitError


def scenes(n, site="A", seed=0):
    return [render_scene(np.random.default_rng([seed, i]), SITES[site]) for i in range(n)]


def test_same_seed_same_scene_different_seed_different_scene():
    a = render_scene(np.random.default_rng([1, 5]), SITES["A"])
    b = render_scene(np.random.default_rng([1, 5]), SITES["A"])
    c = render_scene(np.random.default_rng([2, 5]), SITES["A"])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_boxes_are_inside_the_image_and_classes_valid():
    for img, boxes, labels in scenes(20):
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape == (384, 512, 3)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert set(labels.tolist()) <= set(range(len(HELMET_CLASSES)))


def test_every_class_appears_and_small_heads_exist():
    all_labels, head_heights = [], []
    for _, boxes, labels in scenes(60):
        all_labels += labels.tolist()
        heads = np.isin(labels, [HELMET_ON, HELMET_OFF])
        head_heights += (boxes[heads, 3] - boxes[heads, 1]).tolist()
    counts = np.bincount(all_labels, minlength=4)
    assert (counts > 0).all(), counts
    assert counts[PERSON] > 100
    # far-away workers: heads down to about 12 px
    assert min(head_heights) <= 14
    assert np.mean(np.array(head_heights) < 20) > 0.15


def test_heads_sit_inside_their_person_and_crowds_overlap():
    overlaps = 0
    for _, boxes, labels in scenes(40):
        persons = boxes[labels == PERSON]
        for i in range(len(persons)):
            for j in range(i + 1, len(persons)):
                a, b = persons[i], persons[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    overlaps += 1
    assert overlaps > 5  # crowding and occlusion happen


def test_sites_look_different():
    a = np.mean([img.mean(axis=(0, 1)) for img, _, _ in scenes(10, "A")], axis=0)
    b = np.mean([img.mean(axis=(0, 1)) for img, _, _ in scenes(10, "B")], axis=0)
    assert np.abs(a - b).max() > 25
    assert set(SITES["A"].helmet_colors) != set(SITES["B"].helmet_colors)
    # site B's caps wear site A's helmet colours: the confusion the incremental demo relies on
    assert set(SITES["B"].cap_colors) & set(SITES["A"].helmet_colors)


def test_generate_dataset_is_deterministic(tmp_path):
    spec = SyntheticSpec(train=6, val=2, test=3, seed=3)
    generate_dataset(tmp_path / "a", spec, workers=1, show_progress=False)
    generate_dataset(tmp_path / "b", spec, workers=1, show_progress=False)
    for split in ("train", "val", "test"):
        da, db = load_split(tmp_path / "a", split), load_split(tmp_path / "b", split)
        assert len(da) == getattr(spec, split)
        for ra, rb in zip(da, db, strict=True):
            np.testing.assert_allclose(ra.boxes, rb.boxes)
            assert ra.path.read_bytes() == rb.path.read_bytes()
    train, test = load_split(tmp_path / "a", "train"), load_split(tmp_path / "a", "test")
    assert {r.meta["site"] for r in train} == {"A", "B"}
    assert not {r.path.name for r in train} & {r.path.name for r in test}


@pytest.mark.parametrize("kwargs", [dict(train=-1), dict(train=0, val=0, test=0), dict(sites=("Q",)), dict(width=10)])
def test_bad_spec(kwargs):
    with pytest.raises(MlkitError):
        SyntheticSpec(**kwargs)


def test_unknown_site():
    with pytest.raises(MlkitError, match="unknown site"):
        get_site("Z")
