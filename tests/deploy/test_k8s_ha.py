"""deploy/k8s/ha as kustomize renders it: what each store's high availability rests on,
the gateway pointed at each store the way its operator publishes it, and the gateway's
own availability (PDB, spread, probes) kept from deploy/k8s/base.

No cluster runs here: these read the manifests. What the operators and the Redis start
scripts do with them is checked on a real cluster only (docs/OPERATING.md, "Kubernetes
with HA stores").
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import K8S, Objects, one, rendered

# Connections PostgreSQL keeps apart from the gateways' budget: superuser_reserved_
# connections (CloudNativePG's instance manager and an operator's superuser psql), the
# replay tool's, and an operator's psql as the application role.
SUPERUSER_RESERVED, REPLAY_TOOL, OPERATOR = 3, 2, 1
PLACEHOLDER = "change-me"


@pytest.fixture(scope="module")
def ha() -> Objects:
    return rendered(K8S / "ha")


@pytest.fixture(scope="module")
def base() -> Objects:
    return rendered(K8S / "base")


def gateway(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment", "coupon-service")["spec"]["template"]["spec"]


def gateway_env(objects: Objects) -> dict[str, dict[str, Any]]:
    (container,) = gateway(objects)["containers"]
    return {variable["name"]: variable for variable in container.get("env", [])}


def settings(objects: Objects) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "coupon-service")["data"]
    return data


def secret_ref(variable: dict[str, Any]) -> tuple[str, str]:
    ref = variable["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_postgres_is_a_cluster_of_three_with_a_synchronous_standby(ha):
    spec = one(ha, "Cluster")["spec"]
    assert spec["instances"] == 3
    # A commit waits for one of the two standbys, and never goes on without one: the
    # standby a failover promotes holds every commit the gateway was told of.
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    assert spec["bootstrap"]["initdb"]["database"] == "coupons"


def test_the_gateway_reaches_the_postgres_primary_through_the_read_write_service(ha):
    cluster = one(ha, "Cluster")
    # CloudNativePG keeps the owner's URL, to the Service <cluster>-rw, in <cluster>-app.
    owner = cluster["spec"]["bootstrap"]["initdb"]["owner"]
    assert owner == "coupon"
    assert secret_ref(gateway_env(ha)["DATABASE_URL"]) == (
        f"{cluster['metadata']['name']}-app",
        "uri",
    )


def test_postgres_has_room_for_every_gateway_pod(ha):
    limit = int(one(ha, "Cluster")["spec"]["postgresql"]["parameters"]["max_connections"])
    pods = one(ha, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    surge = one(ha, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    budget = int(settings(ha)["PG_MAX_CONNECTIONS"])
    assert (pods + surge) * budget + REPLAY_TOOL + OPERATOR <= limit - SUPERUSER_RESERVED


def test_mongo_is_a_replica_set_of_three_with_the_gateways_user(ha):
    spec = one(ha, "MongoDBCommunity")["spec"]
    assert (spec["type"], spec["members"]) == ("ReplicaSet", 3)
    (user,) = spec["users"]
    assert user["roles"] == [{"name": "readWrite", "db": settings(ha)["MONGO_DB"]}]
    one(ha, "Secret", user["passwordSecretRef"]["name"])
    # The operator writes the user's URL, every member and replicaSet= in it, there.
    assert secret_ref(gateway_env(ha)["MONGO_URL"]) == (
        user["connectionStringSecretName"],
        "connectionString.standard",
    )


def test_redis_is_three_servers_watched_by_three_sentinels(ha):
    servers = one(ha, "StatefulSet", "coupons-redis")["spec"]
    sentinels = one(ha, "StatefulSet", "coupons-redis-sentinel")["spec"]
    assert servers["replicas"] == sentinels["replicas"] == 3
    for statefulset in (servers, sentinels):
        service = one(ha, "Service", statefulset["serviceName"])["spec"]
        # Each pod by name from its start: a replica finds its master before either is ready.
        assert service["clusterIP"] == "None"
        assert service["publishNotReadyAddresses"] is True
    # A saga-log write waits for a replica: never for more than there are.
    assert 1 <= int(settings(ha)["REDIS_WAIT_REPLICAS"]) < servers["replicas"]
    named = settings(ha)["REDIS_SENTINELS"].split(",")
    assert named == [
        f"coupons-redis-sentinel-{n}.{sentinels['serviceName']}:26379" for n in range(3)
    ]


def test_the_sentinels_watch_the_master_the_gateway_asks_for(ha):
    assert settings(ha)["REDIS_SENTINEL_MASTER"]
    for name in ("coupons-redis", "coupons-redis-sentinel"):
        (container,) = one(ha, "StatefulSet", name)["spec"]["template"]["spec"]["containers"]
        env = {variable["name"]: variable for variable in container["env"]}
        master = env["REDIS_SENTINEL_MASTER"]["valueFrom"]["configMapKeyRef"]
        assert master == {"name": "coupon-service", "key": "REDIS_SENTINEL_MASTER"}
        assert secret_ref(env["REDIS_PASSWORD"]) == ("coupons-redis", "password")
    assert gateway_env(ha)["REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@")
    assert secret_ref(gateway_env(ha)["REDIS_PASSWORD"]) == ("coupons-redis", "password")


def test_the_redis_start_scripts_pass_shellcheck(ha, tmp_path: Path):
    for name, script in one(ha, "ConfigMap", "coupons-redis-scripts")["data"].items():
        (tmp_path / name).write_text(script)
    scripts = sorted(path.name for path in tmp_path.iterdir())
    ran = subprocess.run(
        ["shellcheck", "--shell=sh", "--external-sources", *scripts],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stdout


@pytest.mark.parametrize("name", ["coupons-redis", "coupons-redis-sentinel"])
def test_each_redis_pod_on_its_own_node_and_one_down_at_a_time(ha, name):
    statefulset = one(ha, "StatefulSet", name)["spec"]
    labels = statefulset["template"]["metadata"]["labels"]
    affinity = statefulset["template"]["spec"]["affinity"]["podAntiAffinity"]
    (rule,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert (rule["topologyKey"], rule["labelSelector"]["matchLabels"]) == (
        "kubernetes.io/hostname",
        labels,
    )
    budget = one(ha, "PodDisruptionBudget", name)["spec"]
    assert (budget["maxUnavailable"], budget["selector"]["matchLabels"]) == (1, labels)


def test_each_mongo_member_on_its_own_node_and_one_down_at_a_time(ha):
    template = one(ha, "MongoDBCommunity")["spec"]["statefulSet"]["spec"]["template"]
    labels = template["metadata"]["labels"]
    (rule,) = template["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert rule["labelSelector"]["matchLabels"] == labels
    budget = one(ha, "PodDisruptionBudget", "coupons-mongo")["spec"]
    assert (budget["maxUnavailable"], budget["selector"]["matchLabels"]) == (1, labels)


def test_each_postgres_instance_on_its_own_node(ha):
    affinity = one(ha, "Cluster")["spec"]["affinity"]
    assert affinity["enablePodAntiAffinity"] is True
    assert affinity["podAntiAffinityType"] == "required"
    assert affinity["topologyKey"] == "kubernetes.io/hostname"


def test_the_gateway_keeps_its_disruption_budget_spread_probes_and_scaling(ha, base):
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "Service"):
        assert one(ha, kind, "coupon-service") == one(base, kind, "coupon-service")
    ha_pod, base_pod = copy.deepcopy(gateway(ha)), copy.deepcopy(gateway(base))
    assert ha_pod["topologySpreadConstraints"] == base_pod["topologySpreadConstraints"]
    (ha_container,) = ha_pod["containers"]
    (base_container,) = base_pod["containers"]
    # Only where the settings come from differs.
    for key in ("env", "envFrom"):
        ha_container.pop(key, None)
        base_container.pop(key, None)
    assert ha_pod == base_pod


def test_the_gateway_reads_no_hand_filled_store_urls(ha):
    (container,) = gateway(ha)["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "coupon-service"}}]
    assert [
        o for o in ha if o["kind"] == "Secret" and o["metadata"]["name"] == "coupon-service"
    ] == []


@pytest.mark.parametrize("folder", ["base", "ha"])
def test_no_secret_holds_a_real_password(folder):
    for secret in [o for o in rendered(K8S / folder) if o["kind"] == "Secret"]:
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER in value, (secret["metadata"]["name"], key)
