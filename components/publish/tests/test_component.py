"""publish component: python_func on converted-model folders (the TFLite bytes are stand-ins: only copied)."""

import json

import pytest
from kfp import dsl

from mlkit.components.publish.component import publish
from mlkit.models.predict import DetectorMeta
from mlkit.profiles import PROFILES


def _converted(root, cfg, variants=("int8", "fp32")):
    for v in variants:
        (root / v).mkdir(parents=True)
        (root / v / "model.tflite").write_bytes(f"{cfg.name}-{v}".encode())
        meta = {**DetectorMeta.from_config(cfg).to_dict(), "variant": v}
        (root / v / "metadata.json").write_text(json.dumps(meta))
    return dsl.Model(uri=str(root))


def test_repository_layout(tmp_path):
    p = PROFILES["test"]
    repo = dsl.Model(uri=str(tmp_path / "repo"))
    publish.python_func(little=_converted(tmp_path / "little", p.little),
                        big=_converted(tmp_path / "big", p.big), repository=repo, variant="int8", version=3)

    for name in ("little", "big"):
        folder = tmp_path / "repo" / name / "3"
        assert (folder / "model.tflite").read_bytes() == f"{name}-int8".encode()
        assert DetectorMeta.load(folder / "metadata.json").name == name
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["big", "little"]
    assert repo.metadata["models"] == {"little": "little/3", "big": "big/3"}


def test_errors(tmp_path):
    p = PROFILES["test"]
    little = _converted(tmp_path / "l", p.little, ("fp32",))
    big = _converted(tmp_path / "b", p.big, ("fp32",))
    with pytest.raises(ValueError, match="no TFLite variant 'int8'"):
        publish.python_func(little=little, big=big, repository=dsl.Model(uri=str(tmp_path / "r1")))
    with pytest.raises(ValueError, match="distinct names"):
        publish.python_func(little=little, big=little, repository=dsl.Model(uri=str(tmp_path / "r2")),
                            variant="fp32")
    with pytest.raises(ValueError, match="version"):
        publish.python_func(little=little, big=big, repository=dsl.Model(uri=str(tmp_path / "r3")), version=0)
