"""The Kubernetes manifests as kustomize renders them (what `kubectl apply -k` applies),
with the kustomize scripts/check_k8s.py uses."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CHECK_K8S = ROOT / "scripts" / "check_k8s.py"

Objects = list[dict[str, Any]]


def check_k8s() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_k8s", CHECK_K8S)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rendered(folder: Path) -> Objects:
    kustomize = check_k8s().KUSTOMIZE.binary
    built = subprocess.run([kustomize, "build", folder], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return list(yaml.safe_load_all(built.stdout))


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (named `name`, if given)."""
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found
