"""Storage URIs against real files and a real local HTTP server (no mocks)."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkit.data.storage import download, download_bucket_layout, parse_uri, redact, upload
from mlkit.errors import StorageError


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data/x", ("file", "data/x")),
        ("/abs/x", ("file", "/abs/x")),
        ("file:///abs/my%20dir", ("file", "/abs/my dir")),
        ("s3://bucket/pre/fix/", ("s3", "bucket/pre/fix/")),
        ("s3://bucket", ("s3", "bucket")),
        ("https://example.com/a.zip?sig=1", ("https", "https://example.com/a.zip?sig=1")),
        ("http://127.0.0.1:8000/a", ("http", "http://127.0.0.1:8000/a")),
        ("http://localhost/a", ("http", "http://localhost/a")),
    ],
)
def test_parse_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize("uri", ["gs://bucket/x", "ftp://host/x", "foo://bar"])
def test_unknown_scheme_lists_supported(uri: str) -> None:
    with pytest.raises(StorageError, match=r"unsupported URI scheme .*supported: local paths, file://, s3://"):
        parse_uri(uri)


def test_rejected_uris() -> None:
    with pytest.raises(StorageError, match="only allowed for localhost"):
        parse_uri("http://example.com/a")
    with pytest.raises(StorageError, match="no bucket"):
        parse_uri("s3:///key")
    assert redact("https://user:pw@host:8443/p?X-Amz-Signature=abc") == "https://host:8443/p?..."


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    return src


def test_local_and_file_uri_download(tree: Path, tmp_path: Path) -> None:
    got = download(tree / "a.txt", tmp_path / "d1", show_progress=False)
    assert got == tmp_path / "d1" / "a.txt" and got.read_text() == "A"
    got = download(tree.as_uri(), tmp_path / "d2", show_progress=False)
    assert got == tmp_path / "d2" and (got / "sub" / "b.txt").read_text() == "B"
    with pytest.raises(StorageError, match="not found"):
        download(tmp_path / "missing", tmp_path / "d3")


def test_local_upload(tree: Path, tmp_path: Path) -> None:
    upload(tree, tmp_path / "pub")
    assert (tmp_path / "pub" / "sub" / "b.txt").read_text() == "B"
    assert upload(tree / "a.txt", str(tmp_path / "pub2") + "/") == str(tmp_path / "pub2" / "a.txt")
    with pytest.raises(StorageError, match="upload supports"):
        upload(tree / "a.txt", "https://example.com/x")


def test_bucket_layout_from_local_folder(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "datasets" / "helmet").mkdir(parents=True)
    (seed / "datasets" / "helmet" / "data.txt").write_text("images/a.jpg\n")
    (seed / "weights").mkdir()
    (seed / "weights" / "w.bin").write_bytes(b"\0")
    layout = download_bucket_layout(seed, tmp_path / "out", show_progress=False)
    assert layout.cfg_dir is None and layout.weights_dir == tmp_path / "out" / "weights"
    assert (layout.datasets_dir / "helmet" / "data.txt").is_file()
    with pytest.raises(StorageError, match="no datasets/ folder; expected"):
        download_bucket_layout(seed / "weights", tmp_path / "out2")


# --------------------------------------------------------------------------- http
def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("www")
    (root / "model.bin").write_bytes(b"x" * 5000)
    (root / "data.tar.gz").write_bytes(_tar_gz({"ds/a.txt": b"A", "ds/sub/b.txt": b"B"}))
    (root / "evil.tar.gz").write_bytes(_tar_gz({"../evil.txt": b"pwned"}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("z/c.txt", "C")
    (root / "data.zip").write_bytes(buf.getvalue())
    handler = functools.partial(_QuietHandler, directory=root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    thread.join()


def test_http_download_file(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    got = download(f"{base}/model.bin", tmp_path, show_progress=True)
    assert got == tmp_path / "model.bin" and got.stat().st_size == 5000
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no temp file left behind


def test_http_404_is_storage_error_without_query(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    with pytest.raises(StorageError, match="HTTP 404") as info:
        download(f"{base}/nope.bin?X-Amz-Signature=topsecret", tmp_path, show_progress=False)
    assert "topsecret" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_http_extract_archives(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    assert download(f"{base}/data.tar.gz", tmp_path, extract=True, show_progress=False) == tmp_path
    assert (tmp_path / "ds" / "sub" / "b.txt").read_text() == "B"
    download(f"{base}/data.zip", tmp_path, extract=True, show_progress=False)
    assert (tmp_path / "z" / "c.txt").read_text() == "C"
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob(".*"))


def test_http_extract_rejects_path_traversal(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    dest = tmp_path / "dest"
    with pytest.raises(StorageError, match="outside the destination"):
        download(f"{base}/evil.tar.gz", dest, extract=True, show_progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_http_connection_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError, match="ConnectError"):
        download(f"http://127.0.0.1:{port}/x", tmp_path, show_progress=False)
