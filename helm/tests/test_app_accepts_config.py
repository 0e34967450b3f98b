"""The configuration the chart renders is one the application accepts.

For every scenario, the rendered config.toml, mapping files and secrets are
laid out in a temporary directory exactly as the pod would see them (paths
rewritten from /etc/leadbridge, /var/run/secrets/leadbridge and
/var/lib/leadbridge), and the real binary runs `leadbridge check` on them.
This keeps the chart and the Rust config loader from drifting apart.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from conftest import FULLNAME, REPO_ROOT
from test_chart import SCENARIOS

BINARY = Path(os.environ.get("LEADBRIDGE_BIN", REPO_ROOT / "target" / "debug" / "leadbridge"))

# What an existingSecret would hold: the keys the chart's README documents.
EXISTING_SECRET = {
    "admin-token": "admin-token-from-existing-secret",
    "contoso-endpoint-secrets": "existing-endpoint-secret-0123456789\n",
    "contoso-client-secret": "existing-client-secret\n",
}


def lay_out(rendered, root: Path) -> tuple[Path, dict[str, str]]:
    mappings = root / "mappings"
    secrets = root / "secrets"
    var = root / "var"
    for d in (mappings, secrets, var):
        d.mkdir()
    for name, text in rendered.one("ConfigMap", f"{FULLNAME}-mappings")["data"].items():
        (mappings / name).write_text(text)
    secret = rendered.maybe("Secret", FULLNAME)
    data = (
        {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        if secret
        else EXISTING_SECRET
    )
    for key, value in data.items():
        (secrets / key).write_text(value)
    config = (
        rendered.config_text.replace("/etc/leadbridge/mappings", str(mappings))
        .replace("/var/run/secrets/leadbridge", str(secrets))
        .replace("/var/lib/leadbridge", str(var))
    )
    path = root / "config.toml"
    path.write_text(config)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBRIDGE")}
    labels = rendered.pod["metadata"].get("labels", {})
    if labels.get("azure.workload.identity/use") == "true":
        # What the Azure Workload Identity webhook injects into the pod.
        token = root / "azure-identity-token"
        token.write_text("projected-service-account-token")
        sa = rendered.one("ServiceAccount")
        env.update(
            AZURE_CLIENT_ID=sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
            AZURE_TENANT_ID=sa["metadata"]["annotations"].get(
                "azure.workload.identity/tenant-id", "66666666-7777-8888-9999-000000000000"
            ),
            AZURE_FEDERATED_TOKEN_FILE=str(token),
            AZURE_AUTHORITY_HOST="https://login.microsoftonline.com/",
        )
    return path, env


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_leadbridge_check_accepts_the_rendered_config(render, name, tmp_path):
    if not BINARY.exists():
        pytest.skip(f"{BINARY} not built (cargo build, or set LEADBRIDGE_BIN)")
    path, env = lay_out(render(SCENARIOS[name]), tmp_path)
    run = subprocess.run(
        [str(BINARY), "check", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"{name}: {run.stdout}\n{run.stderr}\n--- config ---\n{path.read_text()}"
    assert "contoso" in run.stdout
