"""Fetch and publish datasets and models by URI: local paths, ``file://``, ``s3://``, ``https://``.

S3 works with AWS and S3-compatible stores (MinIO on Kubeflow): the endpoint comes from
``AWS_ENDPOINT_URL`` and credentials from the standard boto3 chain. Credentials never
appear in messages or logs; URLs are logged without query strings (pre-signed URLs carry
signatures there) and without user info.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from mlkit.data.atomic import atomic_copy, atomic_path
from mlkit.errors import StorageError

log = logging.getLogger(__name__)

SUPPORTED = "local paths, file://, s3://, https:// (http:// only for localhost)"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_ARCHIVES = (".tar.gz", ".tgz", ".zip")
_NO_CREDENTIALS = ("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                   "(and AWS_ENDPOINT_URL for a non-AWS endpoint)")
WEIGHTS_DIRS = ("pretrained weights", "pretrained_weights", "weights")


# --------------------------------------------------------------------------- URIs
def parse_uri(uri: str | os.PathLike) -> tuple[str, str]:
    """Split a URI into ``(scheme, location)``.

    ``file``: location is a local path (plain paths and ``file:///abs`` alike);
    ``s3``: ``bucket/key-or-prefix``; ``https``/``http``: the full URL.
    """
    uri = os.fspath(uri)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if match is None:  # no scheme: a local path (also Windows "C:\...")
        if not uri:
            raise StorageError("empty URI: pass a local path, file://, s3:// or https:// URI")
        return "file", uri
    scheme = match.group(1).lower()
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise StorageError(f"malformed URI {redact(uri)}; expected e.g. s3://bucket/prefix") from None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file URI {uri!r} names host {parts.netloc!r}; use file:///absolute/path")
        return "file", unquote(parts.path)
    if scheme == "s3":
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket:
            raise StorageError(f"S3 URI {uri!r} has no bucket; use s3://bucket/prefix")
        return "s3", f"{bucket}/{key}" if key else bucket  # a trailing / is kept: it marks a prefix
    if scheme == "https":
        return "https", uri
    if scheme == "http":
        if parts.hostname in _LOCAL_HOSTS:
            return "http", uri
        raise StorageError(f"plain http is only allowed for localhost; use https:// for {redact(uri)}")
    raise StorageError(f"unsupported URI scheme {scheme + '://'!r} in {redact(uri)}; supported: {SUPPORTED}")


def redact(uri: str) -> str:
    """The URI without user info or query string, safe to log."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:  # malformed netloc: show nothing that could hold a secret
        return uri.split("://", 1)[0] + "://<unparseable>"
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def _join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def _safe_relative(rel: str, source: str) -> PurePosixPath:
    """A relative path that cannot escape the destination folder."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if not rel or p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", rel):
        raise StorageError(f"refusing to write {rel!r} from {source}: it would land outside the destination")
    return p


def _progress(total: int | None, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not show)


# --------------------------------------------------------------------------- S3
def _s3_client() -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    # Path-style addressing: MinIO and other S3-compatible endpoints rarely serve virtual hosts.
    config = Config(s3={"addressing_style": "path"} if endpoint else {},
                    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    # A fresh session, not boto3's cached default one: credentials set (or fixed) in the environment
    # after the first call must be picked up, e.g. in a notebook.
    try:  # partial credentials (a key id without its secret) fail already here
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    except (NoCredentialsError, PartialCredentialsError):
        raise StorageError(_NO_CREDENTIALS) from None


@contextlib.contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """Turn botocore errors into StorageErrors that name the URI and never the credentials."""
    from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise StorageError(_NO_CREDENTIALS) from None
    except EndpointConnectionError:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "the AWS default endpoint")
        raise StorageError(f"cannot reach S3 at {redact(endpoint)} for {uri}; check AWS_ENDPOINT_URL "
                           "and the network") from None
    except ClientError as exc:
        raise StorageError(_client_error_message(exc, uri)) from None
    except (S3TransferFailedError, S3UploadFailedError) as exc:
        # boto3 wraps the ClientError of a transfer; its text names bucket and key only.
        cause = exc.__context__
        msg = _client_error_message(cause, uri) if isinstance(cause, ClientError) else f"{uri}: {exc}"
        raise StorageError(msg) from None
    except BotoCoreError as exc:
        raise StorageError(f"S3 request for {uri} failed: {type(exc).__name__}") from None


def _client_error_message(exc: Any, uri: str) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "unknown"))
    if code == "NoSuchBucket":
        return f"the bucket of {uri} does not exist; check the bucket name"
    if code in ("404", "NoSuchKey", "NotFound"):
        return f"{uri} not found; check the key (aws s3 ls {uri})"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access to {uri} denied ({code}); check the credentials and the bucket policy"
    return f"S3 request for {uri} failed ({code})"


def _split_s3(location: str) -> tuple[str, str]:
    bucket, _, key = location.partition("/")
    return bucket, key


def _s3_head(client: Any, bucket: str, key: str) -> int | None:
    """Size of ``key``, or None when there is no such object (it may still be a prefix)."""
    from botocore.exceptions import ClientError

    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _s3_list(client: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """``(key, size)`` of every object under ``prefix``, folder markers excluded."""
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [(o["Key"], int(o["Size"])) for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    return found


def _s3_fetch(client: Any, bucket: str, key: str, target: Path, callback: Any) -> None:
    with atomic_path(target) as tmp:  # a killed download never leaves a truncated file behind
        client.download_file(bucket, key, str(tmp), Callback=callback)


def _download_s3(uri: str, location: str, dest: Path, show_progress: bool) -> Path:
    bucket, key = _split_s3(location)
    client = _s3_client()
    with _s3_errors(uri):
        if key and not key.endswith("/"):
            size = _s3_head(client, bucket, key)
            if size is not None:
                target = dest / PurePosixPath(key).name
                log.info("downloading %s (%d bytes) to %s", uri, size, target)
                with _progress(size, PurePosixPath(key).name, show_progress) as bar:
                    _s3_fetch(client, bucket, key, target, bar.update)
                return target
        prefix = key.rstrip("/") + "/" if key else ""
        objects = _s3_list(client, bucket, prefix)
        if not objects:
            raise StorageError(f"nothing found at {uri}: no object with that key and no objects under that "
                               f"prefix; check the path (aws s3 ls {uri})")
        total = sum(size for _, size in objects)
        log.info("downloading %d objects (%d bytes) from %s to %s", len(objects), total, uri, dest)
        with _progress(total, uri, show_progress) as bar:
            for obj_key, _size in objects:
                rel = _safe_relative(obj_key[len(prefix):], uri)
                _s3_fetch(client, bucket, obj_key, dest / rel, bar.update)
    return dest


def _s3_folders(uri: str, location: str) -> set[str]:
    """Names of the "folders" directly under ``uri`` (S3 common prefixes)."""
    bucket, key = _split_s3(location)
    client = _s3_client()
    prefix = key.rstrip("/") + "/" if key else ""
    found: set[str] = set()
    with _s3_errors(uri):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            found |= {p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])}
    return found


def _upload_s3(src: Path, uri: str, location: str, show_progress: bool) -> str:
    bucket, key = _split_s3(location)
    client = _s3_client()
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file())
        if not files:
            raise StorageError(f"nothing to upload: {src} has no files")
        pairs = [(f, _join(key, f.relative_to(src).as_posix()) if key else f.relative_to(src).as_posix())
                 for f in files]
        dest_uri = uri
    else:
        if not key or key.endswith("/"):
            key = key + src.name
        pairs = [(src, key)]
        dest_uri = f"s3://{bucket}/{key}"
    total = sum(f.stat().st_size for f, _ in pairs)
    log.info("uploading %d files (%d bytes) from %s to %s", len(pairs), total, src, dest_uri)
    with _s3_errors(dest_uri), _progress(total, dest_uri, show_progress) as bar:
        for f, k in pairs:
            client.upload_file(str(f), bucket, k, Callback=bar.update)
    return dest_uri


# --------------------------------------------------------------------------- https
def _download_http(url: str, dest: Path, show_progress: bool, extract: bool) -> Path:
    safe = redact(url)
    name = PurePosixPath(unquote(urlsplit(url).path)).name or "download"
    archive = extract and name.lower().endswith(_ARCHIVES)
    log.info("downloading %s to %s", safe, dest)
    if archive:  # the archive itself is only a temp file: the result is its content
        fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            _http_get(url, Path(tmp_name), name, show_progress)
            _extract(Path(tmp_name), dest, name, safe)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return dest
    with atomic_path(dest / name) as tmp:
        _http_get(url, tmp, name, show_progress)
    return dest / name


def _http_get(url: str, target: Path, name: str, show_progress: bool) -> None:
    import httpx

    safe = redact(url)
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(30.0), follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise StorageError(f"GET {safe} failed: HTTP {resp.status_code} {resp.reason_phrase}; "
                                   "check the URL and that the file is public (or pre-signed)")
            total = int(resp.headers.get("content-length", 0)) or None
            with open(target, "wb") as f, _progress(total, name, show_progress) as bar:
                for chunk in resp.iter_bytes(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        msg = f"GET {safe} failed: {type(exc).__name__}; check the URL and the network"
        raise StorageError(msg) from None


def _extract(archive: Path, dest: Path, name: str, source: str) -> None:
    """Unpack a .zip/.tar.gz, refusing members that would land outside ``dest`` (path traversal)."""
    import tarfile
    import zipfile

    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    _safe_relative(member, source)
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf.getmembers():
                    _safe_relative(member.name, source)
                # The "data" filter also rejects links pointing outside and device files.
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        raise StorageError(f"cannot extract {source}: {exc}") from None
    log.info("extracted %s into %s", source, dest)


# --------------------------------------------------------------------------- public API
def download(uri: str | os.PathLike, dest_dir: Path | str, *, show_progress: bool = True,
             extract: bool = False) -> Path:
    """Copy a file or a whole folder/prefix to ``dest_dir``, keeping relative structure.

    Returns ``dest_dir/<basename>`` for a single file and ``dest_dir`` for a folder or prefix
    (or an archive unpacked with ``extract=True``, https only).
    """
    uri = os.fspath(uri)
    scheme, location = parse_uri(uri)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    if scheme == "file":
        src = Path(location)
        if not src.exists():
            raise StorageError(f"{uri} not found")
        log.info("copying %s to %s", src, dest)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True, copy_function=atomic_copy)
            return dest
        return atomic_copy(src, dest / src.name)
    if scheme == "s3":
        return _download_s3(uri, location, dest, show_progress)
    return _download_http(location, dest, show_progress, extract)


def upload(local_path: Path | str, uri: str | os.PathLike, *, show_progress: bool = False) -> str:
    """Publish a file or folder to a local/``file://``/``s3://`` destination; returns the destination URI.

    A folder lands under the prefix ``uri``; a file lands at ``uri`` (or inside it when ``uri`` ends with /).
    """
    uri = os.fspath(uri)
    scheme, location = parse_uri(uri)
    src = Path(local_path)
    if not src.exists():
        raise StorageError(f"cannot upload {src}: it does not exist")
    if scheme == "s3":
        return _upload_s3(src, uri, location, show_progress)
    if scheme != "file":
        raise StorageError(f"cannot upload to {redact(uri)}: upload supports local paths, file:// and s3://")
    dst = Path(location)
    log.info("copying %s to %s", src, dst)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, copy_function=atomic_copy)
        return uri
    if uri.endswith(("/", os.sep)) or dst.is_dir():
        dst = dst / src.name
    atomic_copy(src, dst)
    return str(dst)


@dataclasses.dataclass
class BucketLayout:
    """Local copy of a Kubeflow object-detection seed bucket."""

    root: Path
    datasets_dir: Path
    cfg_dir: Path | None = None
    weights_dir: Path | None = None


def _folders(uri: str) -> set[str]:
    scheme, location = parse_uri(uri)
    if scheme == "file":
        if not Path(location).is_dir():
            raise StorageError(f"{uri} not found or not a folder")
        return {p.name for p in Path(location).iterdir() if p.is_dir()}
    if scheme == "s3":
        return _s3_folders(uri, location)
    raise StorageError(f"cannot list {redact(uri)}: bucket layouts need a local path, file:// or s3:// URI")


def download_bucket_layout(uri: str | os.PathLike, dest_dir: Path | str, *,
                           show_progress: bool = True) -> BucketLayout:
    """Download a seed bucket's ``datasets/``, ``cfg/`` and ``pretrained weights/`` folders.

    The weights folder may also be called ``pretrained_weights/`` or ``weights/``; absent optional
    folders give None in the result, a missing ``datasets/`` is an error.
    """
    uri = os.fspath(uri)
    dest = Path(dest_dir)
    folders = _folders(uri)
    if "datasets" not in folders:
        raise StorageError(
            f"{redact(uri)} has no datasets/ folder; expected the Kubeflow object-detection layout: "
            "datasets/ (images and labels), cfg/ (model config, optional) and "
            "'pretrained weights/' or pretrained_weights/ or weights/ (optional)"
        )
    datasets_dir = download(_join(uri, "datasets/"), dest / "datasets", show_progress=show_progress)
    cfg_dir = None
    if "cfg" in folders:
        cfg_dir = download(_join(uri, "cfg/"), dest / "cfg", show_progress=show_progress)
    weights_dir = None
    for name in WEIGHTS_DIRS:
        if name in folders:
            weights_dir = download(_join(uri, name + "/"), dest / name, show_progress=show_progress)
            break
    return BucketLayout(dest, datasets_dir, cfg_dir, weights_dir)
