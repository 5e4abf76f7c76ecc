"""Check KServe manifests offline against the CRDs' OpenAPI schemas (what the API server would refuse).

``CrdSchemas(folder)`` reads every ``CustomResourceDefinition`` YAML in ``folder`` (for example KServe's
``config/crd/full``); ``errors(doc)`` lists what is wrong with one manifest. Needs ``jsonschema``
(installed with mlkit's ``dev`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlkit.errors import MlkitError


def to_json_schema(node: Any) -> Any:
    """An openAPIV3Schema as a JSON schema: ``x-kubernetes-*`` keys dropped, int-or-string accepted as either.

    Unknown fields are refused where the CRD lists ``properties`` (the API server would silently prune
    them: a typo in a field name is a bug either way), unless ``x-kubernetes-preserve-unknown-fields``.
    """
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


class CrdSchemas:
    """The served (storage) version's schema of every CRD found in a folder, by kind."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MlkitError(f"CRD folder {self.folder} not found: point it at KServe's config/crd/full")
        self._crds: dict[str, dict] = {}
        self._validators: dict[str, object] = {}
        for path in sorted(self.folder.glob("*.y*ml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    self._crds[doc["spec"]["names"]["kind"]] = doc
        if not self._crds:
            raise MlkitError(f"no CustomResourceDefinition YAML in {self.folder}")

    @property
    def kinds(self) -> list[str]:
        return sorted(self._crds)

    def _validator(self, kind: str):
        if kind in self._validators:
            return self._validators[kind]
        try:
            import jsonschema
        except ImportError:
            raise MlkitError("checking manifests against CRDs needs jsonschema: pip install jsonschema") from None
        crd = self._crds[kind]
        version = next(v for v in crd["spec"]["versions"] if v.get("storage", v.get("served")))
        schema = to_json_schema(version["schema"]["openAPIV3Schema"])
        jsonschema.Draft7Validator.check_schema(schema)
        self._validators[kind] = jsonschema.Draft7Validator(schema)
        return self._validators[kind]

    def errors(self, doc: dict) -> list[str]:
        """Every schema violation in ``doc`` as ``path: message``; empty when valid."""
        kind = doc.get("kind")
        if kind not in self._crds:
            raise MlkitError(f"no CRD for kind {kind!r} in {self.folder}; found: {', '.join(self.kinds)}")
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self._validator(kind).iter_errors(doc)]
