"""The leadbridge pod as Kubernetes would run it, from a rendering of the chart.

`PodView` holds what the container sees: the files of every volume at its
mount path (ConfigMaps, Secrets, the writable data volume and /tmp), the
environment (values, secretKeyRef, configMapKeyRef, envFrom) and what the
Azure Workload Identity webhook would inject. Secrets the chart only refers
to (existingSecret, store.existingSecret, certificate Secrets) come from
`EXTERNAL_SECRETS`, with the keys the chart's README documents.

Two runners use it: the host runner (test_app_accepts_config.py) writes the
files under a temporary directory and rewrites the mount paths in
config.toml; the image runner (test_image.py) bind-mounts them at their real
paths in a chroot of the image's filesystem.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT, Rendered

FIXTURES = REPO_ROOT / "tests" / "fixtures"

# What the Azure Workload Identity webhook injects into a labelled pod.
AZURE_TOKEN_DIR = "/var/run/secrets/azure/tokens"
AZURE_TOKEN_FILE = f"{AZURE_TOKEN_DIR}/azure-identity-token"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def external_secret(name: str, values: dict[str, Any]) -> dict[str, str]:
    """Content of a Secret the chart refers to but does not create."""
    if name == values.get("existingSecret"):
        data = {"admin-token": "admin-token-from-an-existing-secret-0123"}
        for org in values.get("organizations") or {}:
            data[f"{org}-endpoint-secrets"] = f"{org}-endpoint-secret-from-existing-0123\n"
            data[f"{org}-client-secret"] = "client-secret-from-an-existing-secret\n"
            data[f"{org}-certificate"] = _fixture("client-combined.pem")
            data[f"{org}-smtp-password"] = "smtp-password-from-an-existing-secret\n"
        return data
    if name == (values.get("store") or {}).get("existingSecret"):
        key = values["store"].get("existingSecretKey") or "store-url"
        return {key: "postgres://leadbridge:pw@postgres.db.svc:5432/leadbridge"}
    for spec in (values.get("organizations") or {}).values():
        cert = ((spec or {}).get("auth") or {}).get("certificate") or {}
        if cert.get("existingSecret") and name == cert["existingSecret"]:
            return {
                cert.get("certificateKey") or "tls.crt": _fixture("client-cert.pem"),
                cert.get("privateKeyKey") or "tls.key": _fixture("client-key.pem"),
            }
    raise KeyError(f"the pod refers to Secret {name!r}, which the test does not know")


@dataclass
class Volume:
    """One mounted volume: files relative to its mount path."""

    mount_path: str
    read_only: bool
    writable: bool = False  # emptyDir or a PVC (the pod may write to it)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (text, mode)
    secret: bool = False


@dataclass
class PodView:
    volumes: list[Volume]
    env: dict[str, str]
    args: list[str]
    run_as: tuple[int, int]
    fs_group: int

    def volume(self, mount_path: str) -> Volume:
        (found,) = [v for v in self.volumes if v.mount_path == mount_path]
        return found


def _secret_data(rendered: Rendered, values: dict[str, Any], name: str) -> dict[str, str]:
    secret = rendered.maybe("Secret", name)
    if secret is not None:
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return external_secret(name, values)


def _configmap_data(rendered: Rendered, name: str, optional: bool = False) -> dict[str, str]:
    found = rendered.maybe("ConfigMap", name)
    if found is None and optional:
        return {}  # an optional ConfigMap that does not exist: nothing
    assert found is not None, f"the pod refers to ConfigMap {name!r}, which is not rendered"
    return dict(found.get("data") or {})


def pod_view(rendered: Rendered, values: dict[str, Any]) -> PodView:
    pod = rendered.pod
    spec = pod["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounted = []
    for mount in container.get("volumeMounts", []):
        assert "subPath" not in mount, mount
        source = volumes[mount["name"]]
        vol = Volume(mount_path=mount["mountPath"], read_only=bool(mount.get("readOnly")))
        if "configMap" in source:
            mode = source["configMap"].get("defaultMode", 0o644)
            ref = source["configMap"]
            for key, text in _configmap_data(rendered, ref["name"], ref.get("optional", False)).items():
                vol.files[key] = (text, mode)
        elif "secret" in source:
            vol.secret = True
            mode = source["secret"].get("defaultMode", 0o644)
            for key, text in _secret_data(rendered, values, source["secret"]["secretName"]).items():
                vol.files[key] = (text, mode)
        elif "emptyDir" in source or "persistentVolumeClaim" in source:
            vol.writable = True
        else:
            raise AssertionError(f"volume kind not simulated: {source}")
        mounted.append(vol)

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            env.update(_secret_data(rendered, values, source["secretRef"]["name"]))
        elif "configMapRef" in source:
            ref = source["configMapRef"]
            env.update(_configmap_data(rendered, ref["name"], ref.get("optional", False)))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = _secret_data(rendered, values, ref["name"])[ref["key"]]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = _configmap_data(rendered, ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"env source not simulated: {var}")

    if pod["metadata"].get("labels", {}).get("azure.workload.identity/use") == "true":
        annotations = rendered.one("ServiceAccount")["metadata"].get("annotations", {})
        env.update(
            AZURE_CLIENT_ID=annotations["azure.workload.identity/client-id"],
            AZURE_TENANT_ID=annotations.get(
                "azure.workload.identity/tenant-id", "66666666-7777-8888-9999-000000000000"
            ),
            AZURE_FEDERATED_TOKEN_FILE=AZURE_TOKEN_FILE,
            AZURE_AUTHORITY_HOST="https://login.microsoftonline.com/",
        )
        mounted.append(
            Volume(
                mount_path=AZURE_TOKEN_DIR,
                read_only=True,
                files={"azure-identity-token": ("projected-service-account-token", 0o644)},
            )
        )

    pod_sc = spec.get("securityContext", {})
    sc = container.get("securityContext", {})
    run_as = (
        sc.get("runAsUser", pod_sc.get("runAsUser")),
        sc.get("runAsGroup", pod_sc.get("runAsGroup")),
    )
    return PodView(
        volumes=mounted,
        env=env,
        args=list(container.get("args", [])),
        run_as=run_as,
        fs_group=pod_sc.get("fsGroup", run_as[1]),
    )


def write_volume(vol: Volume, target: Path, owner: tuple[int, int] | None = None) -> None:
    """Writes a volume's files into `target` (an existing directory).

    With `owner` (uid, gid of fsGroup), files get it as Kubernetes gives a
    volume fsGroup: Secret files readable by the group only, writable volumes
    owned by the pod's user.
    """
    import os

    for name, (text, mode) in vol.files.items():
        path = target / name
        path.write_text(text)
        path.chmod(mode)
        if owner is not None:
            os.chown(path, 0, owner[1])
    if owner is not None and vol.writable:
        os.chown(target, owner[0], owner[1])
        target.chmod(0o770 if vol.mount_path != "/tmp" else 0o1777)
