"""Shared helpers for the leadbridge chart tests.

Rendering uses helm-python-sdk, which is Helm v4's Go SDK in a shared library:
the same template engine, values coalescing and values.schema.json validation
as `helm template`, offline. Kubernetes objects are checked with
kubernetes-validate's strict JSON schemas, which ship in its wheel.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes_validate import utils as kv

HERE = Path(__file__).resolve().parent
CHART_DIR = HERE.parent / "leadbridge"
REPO_ROOT = HERE.parent.parent

RELEASE = "lb"
NAMESPACE = "leads"
FULLNAME = "lb-leadbridge"

# The oldest Kubernetes version the chart supports (Chart.yaml kubeVersion)
# and the newest whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", kv.latest_version())

# Custom resources have no schema in kubernetes-validate; they are checked by
# hand (see check_custom_resource).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# The chart's value scenarios (chart-testing convention: ci/*.yaml), by name.
CI_DIR = CHART_DIR / "ci"
SCENARIOS: dict[str, dict[str, Any]] = {
    path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted(CI_DIR.glob("*.yaml"))
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge like Helm's values coalescing (override wins)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Rendered:
    """One rendering of the chart: objects by (kind, name), NOTES and files."""

    files: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def maybe(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) <= 1, f"several {kind} objects: {found}"
        return found[0] if found else None

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        obj = self.maybe(kind, name)
        assert obj is not None, f"no {kind} {name or ''} rendered; kinds: {self.kinds()}"
        return obj

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment", FULLNAME)

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def config_text(self) -> str:
        return self.one("ConfigMap", f"{FULLNAME}-config")["data"]["config.toml"]

    @property
    def config(self) -> dict[str, Any]:
        return tomllib.loads(self.config_text)

    @property
    def checksum(self) -> str:
        return self.pod["metadata"]["annotations"]["checksum/config"]


class Renderer:
    def __init__(self, chart: helm_python.Chart) -> None:
        self.chart = chart

    def __call__(self, values: dict[str, Any] | None = None) -> Rendered:
        files = self.chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
        out = Rendered(files=files)
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                out.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    out.objects.append(doc)
        return out


@pytest.fixture(scope="session")
def chart() -> helm_python.Chart:
    loaded = helm_python.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Renderer:
    return Renderer(chart)


def check_custom_resource(obj: dict[str, Any]) -> None:
    """Hand-written checks for the CRD kinds the chart renders."""
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    if obj["kind"] == "PrometheusRule":
        check_prometheus_rule(obj)
        return
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert set(obj["spec"]) <= {"endpoints", "selector", "namespaceSelector", "jobLabel"}
    assert obj["spec"]["selector"]["matchLabels"]
    assert obj["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    allowed = {"port", "path", "scheme", "interval", "scrapeTimeout"}
    for endpoint in obj["spec"]["endpoints"]:
        assert set(endpoint) <= allowed, endpoint
        assert isinstance(endpoint["port"], str)


def check_prometheus_rule(obj: dict[str, Any]) -> None:
    assert set(obj["spec"]) == {"groups"}
    for group in obj["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["expr"]
            assert all(isinstance(v, str) for v in rule.get("labels", {}).values())
            assert all(isinstance(v, str) for v in rule.get("annotations", {}).values())
            if "for" in rule:
                assert re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", rule["for"]), rule["for"]
            # Balanced brackets and braces: a template slip shows here first.
            expr = rule["expr"]
            for open_, close in ("()", "{}", "[]"):
                assert expr.count(open_) == expr.count(close), expr


def validate_objects(rendered: Rendered) -> list[str]:
    """Validate every object (strict). Returns the checked "kind/name" list."""
    checked = []
    for obj in rendered.objects:
        name = f'{obj["kind"]}/{obj["metadata"]["name"]}'
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{name} has no namespace"
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            check_custom_resource(obj)
        else:
            for version in KUBE_VERSIONS:
                try:
                    kv.validate(obj, version, strict=True)
                except kv.ValidationError as err:
                    path = ".".join(str(p) for p in err.path)
                    pytest.fail(f"{name} invalid for Kubernetes {version}: {path}: {err.message}")
                except kv.SchemaNotFoundError as err:
                    pytest.fail(f"{name}: {err.message}")
        checked.append(name)
    return checked
