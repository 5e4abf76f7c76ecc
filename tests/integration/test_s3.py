"""s3:// URIs against a real (moto) S3 server on 127.0.0.1: no boto3 patching."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkit.data.storage import download, download_bucket_layout, upload
from mlkit.errors import StorageError

pytestmark = pytest.mark.s3

SECRET = "wJalrXUtnFEMI-test-secret-K7MDENG"
BUCKET = "seed"
SEED = {
    "cfg/yolo.cfg": b"[net]\nwidth=416\n",
    "datasets/helmet/data.txt": b"images/a.jpg\n",
    "datasets/helmet/images/a.jpg": b"\xff\xd8jpeg",
    "datasets/helmet/labels/a.txt": b"0 0.5 0.5 0.2 0.2\n",
    "pretrained weights/w.txt": b"weights",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free port
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """Environment for a fresh bucket holding a seed-like layout; returns a boto3 client."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never wait on an instance metadata lookup
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=endpoint)
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
        for key, data in SEED.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
    return client


def test_download_single_object_and_prefix(s3: object, tmp_path: Path) -> None:
    got = download(f"s3://{BUCKET}/cfg/yolo.cfg", tmp_path / "one", show_progress=False)
    assert got == tmp_path / "one" / "yolo.cfg" and got.read_bytes() == SEED["cfg/yolo.cfg"]
    got = download(f"s3://{BUCKET}/datasets/helmet", tmp_path / "many", show_progress=True)
    assert got == tmp_path / "many"
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == [
        "data.txt", "images/a.jpg", "labels/a.txt"]
    whole = download(f"s3://{BUCKET}", tmp_path / "all", show_progress=False)
    assert (whole / "pretrained weights" / "w.txt").read_bytes() == b"weights"


def test_download_bucket_layout(s3: object, tmp_path: Path) -> None:
    layout = download_bucket_layout(f"s3://{BUCKET}/", tmp_path, show_progress=False)
    assert layout.cfg_dir == tmp_path / "cfg" and (layout.cfg_dir / "yolo.cfg").is_file()
    assert layout.weights_dir == tmp_path / "pretrained weights"
    assert (layout.datasets_dir / "helmet" / "labels" / "a.txt").is_file()
    with pytest.raises(StorageError, match="no datasets/ folder; expected the Kubeflow"):
        download_bucket_layout(f"s3://{BUCKET}/cfg", tmp_path / "bad", show_progress=False)


def test_upload_file_and_folder(s3, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "1").mkdir(parents=True)
    (model / "1" / "saved.pb").write_bytes(b"pb")
    (model / "labels.txt").write_text("person\n")
    assert upload(model, f"s3://{BUCKET}/models/helmet") == f"s3://{BUCKET}/models/helmet"
    assert upload(model / "labels.txt", f"s3://{BUCKET}/single/") == f"s3://{BUCKET}/single/labels.txt"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"])
    assert keys == ["models/helmet/1/saved.pb", "models/helmet/labels.txt"]
    back = download(f"s3://{BUCKET}/models/helmet/", tmp_path / "back", show_progress=False)
    assert (back / "1" / "saved.pb").read_bytes() == b"pb"


def test_missing_key_bucket_and_prefix(s3: object, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=f"nothing found at s3://{BUCKET}/nope.bin"):
        download(f"s3://{BUCKET}/nope.bin", tmp_path, show_progress=False)
    with pytest.raises(StorageError, match="s3://no-such-bucket/x.*does not exist"):
        download("s3://no-such-bucket/x", tmp_path, show_progress=False)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(StorageError, match="does not exist"):
        upload(tmp_path, "s3://no-such-bucket/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="nothing to upload"):
        upload(tmp_path / "empty", f"s3://{BUCKET}/x")


def test_secret_never_logged_or_raised(s3: object, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: botocore's debug logs too
    download(f"s3://{BUCKET}/cfg/", tmp_path, show_progress=False)
    with pytest.raises(StorageError) as info:
        download(f"s3://{BUCKET}/missing/", tmp_path, show_progress=False)
    assert "mlkit.data.storage" in caplog.text
    assert SECRET not in caplog.text and SECRET not in str(info.value)


@pytest.mark.parametrize("partial", [False, True])
def test_missing_credentials(
    s3: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    partial: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    if partial:  # a key id without its secret
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
    with pytest.raises(StorageError) as info:
        download(f"s3://{BUCKET}/cfg/yolo.cfg", tmp_path, show_progress=False)
    assert str(info.value) == ("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                               "(and AWS_ENDPOINT_URL for a non-AWS endpoint)")
    assert SECRET not in caplog.text
