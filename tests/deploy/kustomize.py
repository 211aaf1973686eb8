"""Kustomize builds without kustomize: the subset deploy/k8s uses, applied with the `jsonpatch` library.

deploy/k8s keeps to ``resources`` (files and directories with a kustomization) and ``patches`` that are
JSON 6902 operation lists with a ``target`` (group, version, kind, name as an anchored regular expression,
as kustomize's selector matches it). Anything else in a kustomization is refused here, so a transformer
added later (images, namePrefix, generators) fails the tests loudly instead of being silently skipped.
``tests/deploy/test_kubernetes.py`` compares this build with ``kubectl kustomize`` where kubectl exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches"}
TARGET_FIELDS = {"group", "version", "kind", "name"}


def _load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _matches(target: dict[str, str], doc: dict[str, Any]) -> bool:
    unknown = set(target) - TARGET_FIELDS
    if unknown:
        raise ValueError(f"patch target fields {sorted(unknown)} are not supported here")
    group, _, version = doc["apiVersion"].rpartition("/")
    have = {"group": group, "version": version, "kind": doc["kind"], "name": doc["metadata"]["name"]}
    return all(re.fullmatch(pattern, have[field]) for field, pattern in target.items())


def build(folder: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize folder`` prints (order aside)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise ValueError(f"{folder}/kustomization.yaml uses {sorted(unsupported)}, which this builder lacks")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        docs += build(path) if path.is_dir() else _load_documents(path)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path", "target"}:
            raise ValueError(f"{folder}: only `path` + `target` JSON 6902 patches are supported, got {patch}")
        operations = yaml.safe_load((folder / patch["path"]).read_text())
        if not isinstance(operations, list):
            raise ValueError(f"{folder / patch['path']}: not a JSON 6902 operation list")
        hits = [i for i, doc in enumerate(docs) if _matches(patch["target"], doc)]
        if not hits:
            raise ValueError(f"{folder}: patch {patch['path']} matches no resource")
        for i in hits:
            docs[i] = jsonpatch.apply_patch(docs[i], operations)
    return docs


def kubectl_build(folder: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize folder``'s documents, or None where kubectl is absent."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder} failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_identity(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Documents keyed by (kind, namespace, name); a duplicate identity is an error, as in kustomize."""
    keyed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        if key in keyed:
            raise ValueError(f"two resources named {key}")
        keyed[key] = doc
    return keyed
