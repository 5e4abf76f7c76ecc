"""A folder of versioned TFLite models, served by KServe, with hot reload.

Layout: ``<models_dir>/<name>/<version>/model.tflite`` + ``metadata.json`` (version = integer folder name).
The newest loadable version is served as ``<name>``; every loaded version is also reachable as
``<name>@<version>`` (what ``/v2/models/<name>/versions/<version>/infer`` and gRPC
``model_version`` resolve to). ``watch()`` polls the folder and swaps in new versions atomically:
the registry entry is replaced in one step on the event loop, requests already running finish on
the old interpreter, and the old version stays loaded for versioned requests.

A version folder counts as complete when it holds a ``READY`` marker file, or else when
``metadata.json`` parses, ``model.tflite`` carries the TFLite flatbuffer identifier, and both files
were unchanged since the previous poll (so a copy in progress is never loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from kserve.errors import InvalidInput, ModelNotFound
from kserve.model_repository import ModelRepository

from mlkit.errors import MlkitError
from mlkit.serving.classifier import TFLiteClassifierModel
from mlkit.serving.graph.tensor_model import TFLiteTensorModel
from mlkit.serving.overload import DEFAULT_KEEP_VERSIONS
from mlkit.serving.predictor import METADATA_FILE, MODEL_FILE, TFLiteDetectorModel, TFLiteModel, read_metadata

log = logging.getLogger(__name__)

READY_MARKER = "READY"
VERSION_SEP = "@"


VERSION_HELP = "a model version is the name of a version folder, a positive integer such as 1 or 12"


def versioned(name: str, version: int | str) -> str:
    return f"{name}{VERSION_SEP}{version}"


def is_version_name(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '³', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def parse_version(text: int | str) -> int:
    """A requested version as an integer; InvalidInput (400) when it cannot be a version folder's name."""
    text = str(text)
    if not is_version_name(text):
        raise InvalidInput(f"model version {text!r} is malformed: {VERSION_HELP}")
    return int(text)


def unknown_version(name: str, version: int, known: list[int]) -> ModelNotFound:
    """404 naming the versions there are, so the client can pick one."""
    exc = ModelNotFound(name)
    exc.reason = (f"model {name} has no version {version}; its versions: {', '.join(map(str, known))}" if known
                  else f"model {name} has no version {version}: it is not served from version folders")
    return exc


def open_model(name: str, model_dir: str | Path, **kw) -> TFLiteModel:
    """The right predictor for a version folder, chosen by ``metadata.json`` "task" (not yet loaded).

    An unreadable metadata file gives a ``TFLiteDetectorModel`` whose ``load()`` reports it.
    """
    try:
        task = read_metadata(Path(model_dir)).get("task", "detection")
    except MlkitError:
        task = "detection"
    if task == "tensor":  # named tensors in and out, e.g. a pipeline's combiner (mlkit.serving.graph)
        return TFLiteTensorModel(name, model_dir, **kw)
    cls = TFLiteClassifierModel if task == "classification" else TFLiteDetectorModel
    return cls(name, model_dir, **kw)


def _signature(d: Path) -> tuple | None:
    try:
        a, b = (d / MODEL_FILE).stat(), (d / METADATA_FILE).stat()
    except OSError:
        return None
    return a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns


def looks_complete(d: Path) -> bool:
    """READY marker, or parseable metadata.json and a model.tflite with the TFL3 identifier."""
    return (d / READY_MARKER).is_file() or incomplete_reason(d) is None


def incomplete_reason(d: Path) -> str | None:
    """Why ``d`` is not (yet) a loadable version folder; None if it looks complete."""
    try:
        json.loads((d / METADATA_FILE).read_text())
    except FileNotFoundError:
        return f"no {METADATA_FILE}"
    except (OSError, ValueError) as exc:
        return f"{METADATA_FILE} is not valid JSON ({exc})"
    try:
        with open(d / MODEL_FILE, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        return f"no {MODEL_FILE}"
    except OSError as exc:
        return f"{MODEL_FILE} cannot be read ({exc})"
    return None if len(head) == 8 and head[4:8] == b"TFL3" else f"{MODEL_FILE} is not a TFLite model (no TFL3 header)"


def scan_versions(models_dir: Path) -> dict[str, dict[int, Path]]:
    """``{name: {version: folder}}`` for every ``<name>/<int>/`` folder (complete or not)."""
    out: dict[str, dict[int, Path]] = {}
    if not models_dir.is_dir():
        return out
    for model in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {int(v.name): v for v in model.iterdir() if v.is_dir() and is_version_name(v.name)}
        out[model.name] = versions
    return out


class TFLiteModelRepository(ModelRepository):
    """KServe model repository over a folder of versioned mlkit TFLite models.

    ``model_kw``: what every model version is opened with (``TFLiteModel``'s keywords: threads, batching, queue).
    """

    def __init__(self, models_dir: str | Path | None, *, poll_seconds: float = 2.0,
                 keep_versions: int = DEFAULT_KEEP_VERSIONS, **model_kw) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
        super().__init__(str(models_dir))
        self.root = Path(models_dir) if models_dir is not None else None  # None: only add_model_path() models
        self.model_paths: dict[str, Path] = {}  # name -> folder of version folders (pipeline configs)
        self.reserved: set[str] = set()  # names taken by pipelines: never loaded as models
        self.model_kw = model_kw
        self.poll_seconds = poll_seconds
        self.keep_versions = keep_versions
        self._retiring: set[asyncio.Task] = set()
        self.versions: dict[str, dict[int, TFLiteModel]] = {}
        self._failed: dict[Path, tuple | None] = {}  # folder -> file signature when loading failed
        self._seen: dict[Path, tuple | None] = {}  # folder -> signature at the previous poll
        self._told: dict[Path, tuple] = {}  # folder -> (signature, reason) last warned about
        self._unloaded: set[str] = set()  # names unloaded through the API: not reloaded by the watcher
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    # --- lookups ---------------------------------------------------------------------------------
    def get_model(self, name: str):
        model = self.models.get(name)
        if model is None and VERSION_SEP in name:
            base, _, v = name.rpartition(VERSION_SEP)
            if is_version_name(v):
                model = self.versions.get(base, {}).get(int(v))
        return model

    def version_key(self, name: str, version: int | str) -> str:
        """``name@version`` of a loaded version. Raises InvalidInput for a malformed version, ModelNotFound for
        an unknown model, or for an unknown version naming the versions there are."""
        number = parse_version(version)
        if name not in self.models and name not in self.versions:
            raise ModelNotFound(name)
        known = sorted(self.versions.get(name, {}))
        if number not in known:
            raise unknown_version(name, number, known)
        return versioned(name, number)

    def served_version(self, name: str) -> int | None:
        model = self.models.get(name)
        return getattr(model, "version", None)

    # --- loading ---------------------------------------------------------------------------------
    def add_model_path(self, name: str, base_path: Path) -> None:
        """Serve ``base_path/<version>/`` as model ``name`` too (a pipeline config's model_config_list)."""
        self.model_paths[name] = Path(base_path)

    def _scan(self) -> dict[str, dict[int, Path]]:
        """The newest ``keep_versions`` version folders of every model."""
        found = scan_versions(self.root) if self.root is not None else {}
        for name, base in self.model_paths.items():
            found[name] = {int(v.name): v for v in base.iterdir() if v.is_dir() and is_version_name(v.name)} \
                if base.is_dir() else {}
        return {n: {v: versions[v] for v in sorted(versions)[-self.keep_versions:]}
                for n, versions in found.items() if n not in self.reserved}

    def _retire_old(self, name: str) -> None:
        """Unload the loaded versions of ``name`` older than the newest ``keep_versions``, once their requests end."""
        loaded = self.versions.get(name, {})
        served = self.models.get(name)
        for version in sorted(loaded)[:-self.keep_versions]:
            if loaded[version] is served:
                continue
            model = loaded.pop(version)
            log.info("unloading %s version %s (keeping the newest %d)", name, version, self.keep_versions)
            task = asyncio.get_running_loop().create_task(model.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _open(self, name: str, version: int, folder: Path) -> TFLiteModel:
        model = open_model(name, folder, version=version, **self.model_kw)
        if not model.load():
            self._failed[folder] = _signature(folder)
        else:
            self._failed.pop(folder, None)
        return model

    def _register(self, name: str, model: TFLiteModel) -> None:
        """Add a loaded version; it becomes the served one when it is the newest ready version."""
        self.versions.setdefault(name, {})[model.version] = model
        current = self.models.get(name)
        if current is None or not current.ready or (model.ready and model.version > (current.version or -1)):
            self.models[name] = model  # one dict assignment: new requests go to the new version
            if model.ready:
                log.info("serving %s version %s", name, model.version)

    def load_model(self, name: str) -> bool:
        """Load every complete version of ``name`` not loaded yet (blocking); True if one is ready."""
        found = self._scan().get(name)
        if not found:
            log.error("model %s: no version folders under %s (expected %s/<version>/%s)",
                      name, self.model_paths.get(name, (self.root or Path()) / name), name, MODEL_FILE)
            return False
        self._unloaded.discard(name)
        loaded = self.versions.get(name, {})
        for version in sorted(found):
            if version in loaded and loaded[version].ready:
                continue
            model = self._open(name, version, found[version])
            self._register(name, model)
        return bool(self.models.get(name) and self.models[name].ready)

    def load_models(self) -> None:
        for name in self._scan():
            self.load_model(name)

    async def load(self, name: str) -> bool:
        """KServe ``/v2/repository/models/{name}/load``: (re)load from disk."""
        async with self._lock:
            if name not in self._scan():
                raise ModelNotFound(name)
            return await asyncio.to_thread(self.load_model, name)

    def unload(self, name: str) -> None:
        """KServe ``/v2/repository/models/{name}/unload``: drop every version of ``name``."""
        if name not in self.models and name not in self.versions:
            raise KeyError(f"model with name {name} does not exist")
        self._unloaded.add(name)
        self.models.pop(name, None)
        for model in self.versions.pop(name, {}).values():
            model.stop()
        log.info("unloaded model %s", name)

    def stop_all(self) -> None:
        for name in list(self.versions):
            self.unload(name)

    # --- hot reload ------------------------------------------------------------------------------
    def _pending(self) -> list[tuple[str, int, Path]]:
        """Complete, stable version folders that are not loaded (nor failed with the same files)."""
        todo = []
        for name, found in self._scan().items():
            if name in self._unloaded:
                continue
            for version, folder in found.items():
                known = self.versions.get(name, {}).get(version)
                if known is not None and known.ready:
                    continue
                sig = _signature(folder)
                if folder in self._failed and self._failed[folder] == sig:
                    continue
                stable = folder in self._seen and self._seen[folder] == sig
                self._seen[folder] = sig
                if (folder / READY_MARKER).is_file():
                    todo.append((name, version, folder))
                    continue
                if not stable:  # still being written, perhaps: look inside at the next poll
                    continue
                why = incomplete_reason(folder)
                if why is None and sig is not None:
                    todo.append((name, version, folder))
                elif why is not None and self._told.get(folder) != (sig, why):
                    # Unchanged since the last poll and still not loadable: probably not an upload in progress.
                    self._told[folder] = (sig, why)
                    log.warning("model %s version %d (%s) is not loaded: %s; fix the folder (or write %s when "
                                "it is complete)", name, version, folder, why, READY_MARKER)
        return todo

    async def poll_once(self) -> list[str]:
        """Load new complete versions; returns the ``name@version`` keys that were added."""
        added = []
        async with self._lock:
            for name, version, folder in await asyncio.to_thread(self._pending):
                model = await asyncio.to_thread(self._open, name, version, folder)
                if model.ready:
                    self._register(name, model)
                    self._retire_old(name)
                    added.append(versioned(name, version))
        return added

    async def watch(self) -> None:
        """Poll every ``poll_seconds`` until ``stop_watching()``."""
        self._stop = asyncio.Event()
        log.info("watching %s for new model versions every %gs", self.root, self.poll_seconds)
        while not self._stop.is_set():
            try:
                await self.poll_once()
            except Exception:  # a bad folder must not stop the watcher
                log.exception("model repository poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_seconds)

    def stop_watching(self) -> None:
        if self._stop is not None:
            self._stop.set()
