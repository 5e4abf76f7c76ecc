"""Bad input at the CLI gets one clear line and exit code 2, never a traceback."""

import pytest
from click.testing import CliRunner

from mlkit.cli import main
from mlkit.data.dataset import Dataset, ImageRecord, write_rgb
from mlkit.data.formats import write_dataset


def run(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_missing_file(tmp_path):
    r = run("data", "convert", str(tmp_path / "nope"), str(tmp_path / "out"), "--to", "coco")
    assert r.exit_code == 2
    assert "does not exist" in r.output


def test_bad_label_line_names_file_and_line(tmp_path):
    import numpy as np

    img = tmp_path / "src" / "images" / "a.jpg"
    write_rgb(img, np.zeros((48, 64, 3), np.uint8))
    ds = Dataset([ImageRecord(img, 64, 48, [[1, 1, 20, 20]], [0])])
    write_dataset(ds, tmp_path / "src", "yolo")
    label = tmp_path / "src" / "labels" / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2\n")
    r = run("data", "convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", "coco")
    assert r.exit_code == 2
    assert "a.txt:2" in r.output


def test_unknown_uri_scheme(tmp_path):
    r = run("data", "download", "ftp://example.org/data", "--out", str(tmp_path / "d"))
    assert r.exit_code == 2
    assert "ftp://" in r.output and "s3://" in r.output


def test_missing_s3_credentials(tmp_path):
    # No server is needed: boto3 refuses to sign the request before any connection is made.
    env = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
           "AWS_PROFILE": None, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    r = run("data", "download", "s3://bucket/datasets", "--out", str(tmp_path / "d"), env=env)
    assert r.exit_code == 2
    assert "credentials" in r.output.lower()


@pytest.mark.parametrize("args", [
    ("train", "--data", "/nonexistent", "--model", "little", "--out", "/tmp/x"),
    ("data", "generate", "--out", "/tmp/x", "--sites", "Z"),
    ("data", "video", "--out", "/tmp/x.avi", "--frames", "0"),
])
def test_bad_options_are_usage_errors(args):
    r = run(*args)
    assert r.exit_code == 2


def test_download_errors_name_the_source_not_the_staging_folder(tmp_path):
    src = tmp_path / "site-data"
    src.mkdir()
    (src / "annotations.json").write_text('{"images": [,]}')
    r = run("data", "download", str(src), "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and f"{src}/annotations.json:1: invalid JSON" in r.output, r.output
    assert "/tmp/tmp" not in r.output.replace(str(tmp_path), "")


def test_a_folder_given_as_an_image_says_so(tmp_path):
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "models" / "little" / "tflite" / "int8"
    if not (model / "model.tflite").is_file():
        pytest.skip("the committed little model is missing")
    r = run("predict", str(model), str(tmp_path))
    assert r.exit_code == 2 and "is a folder, not an image file" in r.output, r.output


def test_export_needs_a_variant(tmp_path):
    r = run("export", str(tmp_path), "--out", str(tmp_path / "o"), "--variants", ",")
    assert r.exit_code == 2 and "name at least one variant" in r.output, r.output


def test_an_unknown_layout_names_the_format_options(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("data", "convert", str(tmp_path / "empty"), str(tmp_path / "out"), "--to", "coco")
    assert r.exit_code == 2 and "--from / --format on the command line" in r.output, r.output
