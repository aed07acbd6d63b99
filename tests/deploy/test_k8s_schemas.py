"""The Kubernetes manifests' offline check (scripts/check_k8s.py, run by `make lint`) and
that it bites: a misspelt field, a wrong type or an unknown value in the operators' kinds
as in Kubernetes' own, and a kind no schema describes, each fail it.

Nothing here reaches a network: kustomize, kubeconform and the operators' CRDs are built
into ~/.cache/coupon-service by `make deps`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.k8s import CHECK_K8S, K8S, Objects, one, rendered


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, CHECK_K8S, *paths], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def rendered_ha() -> Objects:
    return rendered(K8S / "ha")


def test_the_manifests_pass():
    ran = check()
    assert ran.returncode == 0, ran.stderr


def misspelt_sync_setting(objects: Objects) -> None:
    one(objects, "Cluster")["spec"]["minSyncReplica"] = 1


def unknown_durability(objects: Objects) -> None:
    one(objects, "Cluster")["spec"]["postgresql"]["synchronous"]["dataDurability"] = "always"


def members_as_text(objects: Objects) -> None:
    one(objects, "MongoDBCommunity")["spec"]["members"] = "3"


def user_without_roles(objects: Objects) -> None:
    del one(objects, "MongoDBCommunity")["spec"]["users"][0]["roles"]


def misspelt_probe(objects: Objects) -> None:
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")


def replicas_as_text(objects: Objects) -> None:
    for found in objects:
        if found["kind"] == "StatefulSet":
            found["spec"]["replicas"] = "three"


def a_kind_without_a_schema(objects: Objects) -> None:
    objects.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@pytest.mark.parametrize(
    ("break_it", "reported"),
    [
        (misspelt_sync_setting, "additional properties 'minSyncReplica' not allowed"),
        (unknown_durability, "/spec/postgresql/synchronous/dataDurability"),
        (members_as_text, "/spec/members"),
        (user_without_roles, "missing property 'roles'"),
        (misspelt_probe, "additional properties 'readinesProbe' not allowed"),
        (replicas_as_text, "/spec/replicas"),
        (a_kind_without_a_schema, "could not find schema for Widget"),
    ],
)
def test_a_broken_manifest_fails(
    rendered_ha: Objects, tmp_path: Path, break_it: Callable[[Objects], None], reported: str
):
    broken = list(yaml.safe_load_all(yaml.safe_dump_all(rendered_ha)))  # a copy to break
    break_it(broken)
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump_all(broken))
    ran = check(manifest)
    assert ran.returncode == 1
    assert reported in ran.stderr
