"""The chart's store: SQLite on a volume (one pod) or PostgreSQL (several)."""

from __future__ import annotations

import helm_python
import pytest

from conftest import FULLNAME, SCENARIOS, validate_objects
from test_chart import PG_URL, SQLITE_MESSAGE, contoso, env_by_name, secret_data


@pytest.fixture(scope="module")
def scenario(render):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = render(SCENARIOS[name])
        return cache[name]

    return get


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_ha(scenario):
    r = scenario("postgres-ha")
    spec = r.deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert r.maybe("HorizontalPodAutoscaler") is None
    pdb = r.one("PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert r.maybe("PersistentVolumeClaim") is None
    assert "/var/lib/leadbridge" not in {m["mountPath"] for m in r.container["volumeMounts"]}
    env = env_by_name(r.container)
    assert env["LEADBRIDGE__STORE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "leadbridge-postgres", "key": "url"}
    assert "store-url" not in secret_data(r)
    assert "url" not in r.config["store"]


def test_postgres_with_hpa(render):
    r = render({**contoso(), "store": {"postgresUrl": PG_URL},
                "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8},
                "podDisruptionBudget": {"minAvailable": 2}})
    spec = r.deployment["spec"]
    assert "replicas" not in spec  # the HPA owns it
    hpa = r.one("HorizontalPodAutoscaler", FULLNAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 2
    env = env_by_name(r.container)
    assert env["LEADBRIDGE__STORE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": FULLNAME, "key": "store-url"}
    assert secret_data(r)["store-url"] == PG_URL
    assert PG_URL not in r.config_text
    validate_objects(r)


def test_postgres_replicas_without_hpa(render):
    r = render({**contoso(), "replicaCount": 3, "store": {"postgresUrl": PG_URL}})
    assert r.deployment["spec"]["replicas"] == 3
    assert r.maybe("HorizontalPodAutoscaler") is None
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_pdb_not_automatic_when_one_pod_may_run(render):
    r = render({**contoso(), "store": {"postgresUrl": PG_URL},
                "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}})
    assert r.maybe("PodDisruptionBudget") is None
    assert r.one("HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1


def test_pdb_off_by_default_for_one_replica(scenario, render):
    assert scenario("defaults").maybe("PodDisruptionBudget") is None
    forced = render({**contoso(), "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}})
    assert forced.one("PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": forced.deployment["spec"]["selector"]["matchLabels"]},
    }


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"autoscaling": {"enabled": True}},
        {"replicaCount": 3, "persistence": {"enabled": False}},
    ],
)
def test_sqlite_refuses_more_than_one_replica(render, values):
    with pytest.raises(helm_python.HelmRenderError) as err:
        render({**contoso(), **values})
    message = str(err.value)
    assert SQLITE_MESSAGE in message
    assert "the embedded SQLite store supports exactly one replica" in message


def test_store_existing_secret(render):
    r = render({
        **contoso(),
        "replicaCount": 2,
        "existingSecret": "leadbridge-secrets",
        "store": {"existingSecret": "pg-conn", "existingSecretKey": "uri"},
    })
    env = env_by_name(r.container)
    assert env["LEADBRIDGE__STORE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg-conn", "key": "uri"}
    assert r.maybe("Secret") is None
    egress_ports = {
        (p["port"], p["protocol"])
        for rule in r.one("NetworkPolicy")["spec"]["egress"]
        for p in rule["ports"]
    }
    assert (5432, "TCP") in egress_ports
    validate_objects(r)
