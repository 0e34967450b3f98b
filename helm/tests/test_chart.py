"""Tests of the leadbridge Helm chart (helm/leadbridge)."""

from __future__ import annotations

import base64
import tomllib
import urllib.parse

import helm_python
import pytest
import yaml
from kubernetes_validate import utils as kv

from conftest import (
    CHART_DIR,
    FULLNAME,
    KUBE_VERSIONS,
    NAMESPACE,
    REPO_ROOT,
    SCENARIOS,
    Rendered,
    merge,
    validate_objects,
)

SECRETS_DIR = "/var/run/secrets/leadbridge"
CODE = "s3cret-code-0123456789abcdef"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"
PG_URL = "postgres://leadbridge:pw@postgres.db.svc:5432/leadbridge"
SQLITE_MESSAGE = (
    "leadbridge: replicaCount > 1 (or autoscaling) needs store.postgresUrl"
)
DEFAULTS_CODE = SCENARIOS["defaults"]["organizations"]["contoso"]["endpointSecrets"][0]


def contoso(**spec) -> dict:
    """Values with the one organization `contoso` (dry run unless told)."""
    base = {"url": "https://contoso.crm4.dynamics.com", "dryRun": True, "endpointSecrets": [CODE]}
    return {"organizations": {"contoso": merge(base, spec)}}


@pytest.fixture(scope="module")
def scenario(render):
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            cache[name] = render(SCENARIOS[name])
        return cache[name]

    return get


def secret_data(rendered: Rendered) -> dict[str, str]:
    secret = rendered.one("Secret", FULLNAME)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def env_by_name(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --------------------------------------------------------------- lint, schemas


def test_lint_has_no_errors_or_warnings():
    report = helm_python.lint(CHART_DIR, SCENARIOS["defaults"], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_the_chart_defaults_name_no_organization(render):
    # No example organization with a placeholder secret in a real install:
    # the chart asks for one instead.
    with pytest.raises(helm_python.HelmRenderError, match="no organization configured") as err:
        render({})
    assert "organizations.contoso.endpointSecrets[0]=" in str(err.value)


def test_schemas_cover_the_kubernetes_versions_the_chart_declares():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    oldest, newest = KUBE_VERSIONS
    assert chart["kubeVersion"] == f">={oldest}-0"
    assert oldest in kv.all_versions() and newest == kv.latest_version()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lint_with_scenario_values(name):
    report = helm_python.lint(CHART_DIR, SCENARIOS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_is_valid_kubernetes(scenario, name):
    rendered = scenario(name)
    checked = validate_objects(rendered)
    assert f"Deployment/{FULLNAME}" in checked
    # config.toml is valid TOML in every scenario.
    assert rendered.config["server"]["listen"] == "0.0.0.0:8080"


# -------------------------------------------------------------------- defaults


def test_defaults_objects(scenario):
    r = scenario("defaults")
    assert r.kinds() == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim",
         "Pod", "Secret", "Service", "ServiceAccount"]
    )
    assert r.deployment["spec"]["replicas"] == 1
    assert r.deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert r.container["image"] == "ghcr.io/leadbridge/leadbridge:0.1.0"


def test_defaults_config_toml(scenario):
    cfg = scenario("defaults").config
    assert cfg["server"] == {"listen": "0.0.0.0:8080", "max_body_bytes": 65536}
    assert isinstance(cfg["server"]["max_body_bytes"], int)
    assert cfg["admin"] == {
        "listen": "0.0.0.0:9090",
        "token_file": f"{SECRETS_DIR}/admin-token",
    }
    assert cfg["store"] == {"url": "sqlite:///var/lib/leadbridge/leadbridge.db"}
    assert cfg["log"] == {"format": "json", "pii": False, "level": "info"}
    assert "delivery" not in cfg
    assert cfg["organizations"] == {
        "contoso": {
            "url": "https://contoso.crm4.dynamics.com",
            "dry_run": True,
            "mapping": "/etc/leadbridge/mappings/contoso.yaml",
            "endpoint_secrets_file": f"{SECRETS_DIR}/contoso-endpoint-secrets",
            # No [auth] for a dry-run organization without credentials: the
            # application checks [auth] whenever it is present.
        }
    }
    assert set(cfg) == {"server", "admin", "store", "log", "organizations"}


def test_defaults_pod_security(scenario):
    r = scenario("defaults")
    pod_sc = r.pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = r.container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert r.pod["spec"]["enableServiceLinks"] is False
    assert r.container["resources"]["requests"] and r.container["resources"]["limits"]


def test_defaults_mounts_env_probes(scenario):
    r = scenario("defaults")
    c = r.container
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert all("subPath" not in m and "subPathExpr" not in m for m in c["volumeMounts"])
    volumes = {v["name"]: v for v in r.pod["spec"]["volumes"]}

    def source(path):
        return volumes[mounts[path]["name"]]

    assert source("/etc/leadbridge/config")["configMap"]["name"] == f"{FULLNAME}-config"
    assert source("/etc/leadbridge/mappings")["configMap"]["name"] == f"{FULLNAME}-mappings"
    assert "items" not in source("/etc/leadbridge/mappings")["configMap"]
    assert source(SECRETS_DIR)["secret"]["secretName"] == FULLNAME
    assert mounts[SECRETS_DIR]["readOnly"] is True
    assert mounts["/etc/leadbridge/mappings"]["readOnly"] is True
    assert "emptyDir" in source("/tmp")
    assert source("/var/lib/leadbridge")["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-data"

    env = env_by_name(c)
    assert env["LEADBRIDGE_CONFIG"]["value"] == "/etc/leadbridge/config/config.toml"
    assert "LEADBRIDGE__STORE__URL" not in env
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


def test_defaults_service(scenario):
    svc = scenario("defaults").one("Service", FULLNAME)
    assert svc["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"http": (80, "http"), "admin": (9090, "admin")}


def test_defaults_secret_and_mappings(scenario):
    r = scenario("defaults")
    data = secret_data(r)
    assert data["contoso-endpoint-secrets"] == f"{DEFAULTS_CODE}\n"
    assert "contoso-client-secret" not in data
    assert len(data["admin-token"]) >= 32
    mappings = r.one("ConfigMap", f"{FULLNAME}-mappings")["data"]
    # Without a value the chart ships the repository's mappings/<org>.yaml.
    repo_mapping = REPO_ROOT / "mappings" / "contoso.yaml"
    assert mappings["contoso.yaml"] == repo_mapping.read_text()


def test_defaults_notes_warn_and_print_url(scenario):
    notes = scenario("defaults").notes
    assert "WARNING: no public URL" in notes
    assert f"https://<your-public-host>/leads/contoso?code={DEFAULTS_CODE}" in notes
    assert "placeholder secret" not in notes
    assert "helm test --namespace leads lb" in notes
    assert "kubectl delete pvc --namespace leads lb-leadbridge-data" in notes


def test_placeholder_secret_only_in_dry_run(render):
    placeholder = "change-me-to-a-long-random-url-safe-secret"
    dry = render(contoso(endpointSecrets=[placeholder]))
    assert "WARNING: this is the placeholder secret" in dry.notes
    live = contoso(dryRun=False, endpointSecrets=[placeholder],
                   auth={"tenantId": TENANT_ID, "clientId": CLIENT_ID, "clientSecret": "s"})
    with pytest.raises(helm_python.HelmRenderError, match="holds a placeholder"):
        render(live)


# --------------------------------------------------------------------- ingress


def test_ingress_tls(scenario):
    r = scenario("ingress-tls")
    ing = r.one("Ingress", FULLNAME)
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [
        {"secretName": "leads-example-com-tls", "hosts": ["leads.example.com"]}
    ]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "leads.example.com"
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert paths == {("/leads", "Prefix"), ("/healthz", "Exact")}
    assert r.config["server"]["public_url"] == "https://leads.example.com"


def test_ingress_tls_notes_print_partner_center_url(scenario):
    notes = scenario("ingress-tls").notes
    code = SCENARIOS["ingress-tls"]["organizations"]["contoso"]["endpointSecrets"][0]
    assert f"https://leads.example.com/leads/contoso?code={code}\n" in notes
    assert "WARNING" not in notes


def test_secret_holds_every_endpoint_secret_and_notes_print_the_first(scenario):
    r = scenario("client-secret")
    codes = SCENARIOS["client-secret"]["organizations"]["contoso"]["endpointSecrets"]
    assert len(codes) == 2
    assert secret_data(r)["contoso-endpoint-secrets"].splitlines() == codes
    assert f"?code={codes[0]}" in r.notes and codes[1] not in r.notes


def ingress_backends(rendered: Rendered):
    for ing in rendered.all("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                yield path["path"], path["backend"]["service"]


@pytest.mark.parametrize(
    "paths",
    [
        None,
        [{"path": "/"}, {"path": "/admin", "pathType": "Prefix"}, {"path": "/metrics"}],
    ],
)
def test_ingress_never_routes_to_admin_port(render, paths):
    host = {"host": "leads.example.com"}
    if paths is not None:
        host["paths"] = paths
    r = render({**contoso(), "ingress": {"enabled": True, "hosts": [host, {"host": "b.example.com"}]}})
    backends = list(ingress_backends(r))
    assert backends
    for _path, service in backends:
        assert service["name"] == FULLNAME
        assert service["port"] == {"name": "http"}


def test_ingress_without_tls_warns(render):
    r = render({**contoso(), "ingress": {"enabled": True, "hosts": [{"host": "leads.example.com"}]}})
    assert r.config["server"]["public_url"] == "http://leads.example.com"
    assert "is not HTTPS" in r.notes


def test_public_url_override(render):
    r = render({**contoso(), "publicUrl": "https://crm-leads.example.org/", "ingress": {"enabled": False}})
    assert r.config["server"]["public_url"] == "https://crm-leads.example.org"
    assert "https://crm-leads.example.org/leads/contoso?code=" in r.notes


# ------------------------------------------------------------ workload identity


def test_workload_identity(scenario):
    r = scenario("workload-identity")
    assert r.pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert "azure.workload.identity/use" not in r.deployment["spec"]["selector"]["matchLabels"]
    sa = r.one("ServiceAccount", FULLNAME)
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == CLIENT_ID
    assert sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"] == TENANT_ID
    assert r.pod["spec"]["serviceAccountName"] == FULLNAME
    auth = r.config["organizations"]["contoso"]["auth"]
    # No authority_host: the webhook's AZURE_AUTHORITY_HOST applies.
    assert auth == {
        "method": "workload_identity",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
    }
    assert r.config["organizations"]["contoso"]["dry_run"] is False
    assert "contoso-client-secret" not in secret_data(r)


def test_workload_identity_needs_client_id(render):
    with pytest.raises(helm_python.HelmRenderError, match="workloadIdentity.clientId"):
        render({**contoso(), "workloadIdentity": {"enabled": True}})


def test_live_org_needs_client_secret_without_workload_identity(render):
    values = contoso(dryRun=False, auth={"tenantId": TENANT_ID, "clientId": CLIENT_ID})
    with pytest.raises(helm_python.HelmRenderError, match="auth.clientSecret is required"):
        render(values)
    values["organizations"]["contoso"]["auth"]["clientSecret"] = "app-secret"
    r = render(values)
    assert secret_data(r)["contoso-client-secret"] == "app-secret"
    assert r.config["organizations"]["contoso"]["auth"]["client_secret_file"] == (
        f"{SECRETS_DIR}/contoso-client-secret"
    )


# -------------------------------------------- existingSecret, NetworkPolicy, SM


def test_existing_secret(scenario):
    r = scenario("certificate-existing-secret")
    assert r.maybe("Secret") is None
    volumes = {v["name"]: v for v in r.pod["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "leadbridge-secrets"
    cfg = r.config["organizations"]["contoso"]
    assert cfg["endpoint_secrets_file"] == f"{SECRETS_DIR}/contoso-endpoint-secrets"
    notes = r.notes
    assert (
        "kubectl get secret --namespace leads leadbridge-secrets "
        "-o jsonpath='{.data.contoso-endpoint-secrets}' | base64 -d | head -n 1" in notes
    )
    assert 'echo "https://<your-public-host>/leads/contoso?code=${CODE}"' in notes
    assert "change-me" not in notes
    # The certificate has a Secret of its own: not a key of existingSecret.
    assert "  contoso-endpoint-secrets\n" in notes
    assert "contoso-client-secret" not in notes and "contoso-certificate" not in notes


def test_network_policy_is_on_by_default(scenario):
    r = scenario("defaults")
    np = r.one("NetworkPolicy", FULLNAME)
    spec = np["spec"]
    assert spec["podSelector"]["matchLabels"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    rules = {rule["ports"][0]["port"]: rule for rule in spec["ingress"]}
    assert set(rules) == {"http", "admin"}
    test_pod = r.one("Pod")["metadata"]["labels"]
    assert rules["http"]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"podSelector": {"matchLabels": {
            k: test_pod[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}}},
    ]
    assert rules["admin"]["from"] == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    egress_ports = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}  # SQLite: no 5432


def test_network_policy_public_port_open_to_all_when_asked(render):
    r = render({**contoso(), "networkPolicy": {"publicNamespaceSelectors": [],
                                              "egress": {"extraPorts": [8443]}}})
    spec = r.one("NetworkPolicy")["spec"]
    rules = {rule["ports"][0]["port"]: rule for rule in spec["ingress"]}
    assert "from" not in rules["http"]
    assert any(p["port"] == 8443 for rule in spec["egress"] for p in rule["ports"])
    validate_objects(r)
    assert render({**contoso(), "networkPolicy": {"enabled": False}}).maybe("NetworkPolicy") is None


def test_service_monitor(scenario):
    r = scenario("postgres-ha")
    sm = r.one("ServiceMonitor", FULLNAME)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "admin"
    assert endpoint["path"] == "/metrics"
    service = r.one("Service", FULLNAME)
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "admin" in {p["name"] for p in service["spec"]["ports"]}


# -------------------------------------------------------------------- checksum


def test_checksum_follows_config_not_mappings(render):
    base = render(contoso())
    assert len(base.checksum) == 64
    # Deterministic, although the admin token is generated at random.
    assert render(contoso()).checksum == base.checksum

    config_change = render({**contoso(), "config": {"server": {"maxBodyBytes": 131072}}})
    assert config_change.checksum != base.checksum

    secret_change = render(contoso(endpointSecrets=["another-code-0123456789"]))
    assert secret_change.checksum != base.checksum

    mapping_change = render(contoso(mapping="fields:\n  subject: OfferTitle\n"))
    assert mapping_change.checksum == base.checksum
    old = base.one("ConfigMap", f"{FULLNAME}-mappings")["data"]["contoso.yaml"]
    new = mapping_change.one("ConfigMap", f"{FULLNAME}-mappings")["data"]["contoso.yaml"]
    assert old != new and new == "fields:\n  subject: OfferTitle\n"


def test_checksum_with_existing_secret_ignores_secret_values(render):
    base = render({**contoso(), "existingSecret": "s"})
    other = render({**contoso(endpointSecrets=["another-code-0123456789"]), "existingSecret": "s"})
    assert base.checksum == other.checksum
    assert render({**contoso(), "existingSecret": "s",
                   "config": {"log": {"pii": True}}}).checksum != base.checksum


# ------------------------------------------------------ organizations, mapping


def test_second_org_mapping_from_set_file(render):
    repo_mapping = REPO_ROOT / "mappings" / "contoso.yaml"
    # What `--set-file organizations.fabrikam.mapping=mappings/contoso.yaml` gives.
    from_file = helm_python.parse_set_file(f"organizations.fabrikam.mapping={repo_mapping}")
    values = merge(merge(contoso(), from_file), {"organizations": {"fabrikam": {
        "url": "https://fabrikam.crm.dynamics.com", "dryRun": True,
        "endpointSecrets": ["fabrikam-code-0123456789"]}}})
    r = render(values)
    mappings = r.one("ConfigMap", f"{FULLNAME}-mappings")["data"]
    assert set(mappings) == {"contoso.yaml", "fabrikam.yaml"}
    assert mappings["fabrikam.yaml"] == repo_mapping.read_text()
    org = r.config["organizations"]["fabrikam"]
    assert org["mapping"] == "/etc/leadbridge/mappings/fabrikam.yaml"
    assert org["endpoint_secrets_file"] == f"{SECRETS_DIR}/fabrikam-endpoint-secrets"
    assert "/leads/fabrikam?code=fabrikam-code-0123456789" in r.notes


def test_org_without_mapping_fails(render):
    values = {"organizations": {"fabrikam": {"url": "https://fabrikam.crm.dynamics.com",
                                             "dryRun": True,
                                             "endpointSecrets": ["fabrikam-code-0123456789"]}}}
    with pytest.raises(helm_python.HelmRenderError, match="--set-file organizations.fabrikam.mapping"):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"organizations": {"Contoso_EU": {"url": "https://x.crm.dynamics.com"}}},
        {"organizations": {"a" * 64: {"url": "https://x.crm.dynamics.com"}}},
        {"config": {"log": {"format": "xml"}}},
        {"config": {"delivery": {"max_attempts": 3}}},  # values are camelCase and typed
        {"config": {"delivery": {"backoffMax": "soon"}}},
        {"config": {"server": {"dedupe_window": "1h"}}},
        contoso(endpointSecrets=["short"]),
        contoso(auth={"method": "password"}),
        contoso(email={"to": [], "from": "leads@contoso.com", "smtpUrl": "smtp://m:25"}),
        contoso(email={"to": ["a@b.c"], "smtpUrl": "smtp://m:25"}),  # no from
        contoso(email={"to": ["a@b.c"], "from": "x@b.c", "smtpUrl": "http://m"}),
        contoso(email={"to": ["a@b.c"], "from": "x@b.c", "transport": "sendmail"}),
        contoso(email={"to": ["a@b.c"], "from": "x@b.c", "smtp_url": "smtp://m:25"}),
        {"store": {"postgresUrl": "mysql://db/leadbridge"}},
        {"replicaCount": "two"},
        {"ingress": {"hosts": [{"host": "x", "paths": [{"path": "leads"}]}]}},
    ],
)
def test_schema_rejects_bad_values(render, values):
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_dry_run_org_gets_auth_once_credentials_are_complete(render):
    auth = {"tenantId": TENANT_ID, "clientId": CLIENT_ID}
    partial = render(contoso(auth=auth))
    assert "auth" not in partial.config["organizations"]["contoso"]
    full = render(contoso(auth={**auth, "clientSecret": "app-secret", "scope": "https://x/.default",
                                "authorityHost": "https://login.microsoftonline.us"}))
    assert full.config["organizations"]["contoso"]["auth"] == {
        "authority_host": "https://login.microsoftonline.us",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret_file": f"{SECRETS_DIR}/contoso-client-secret",
        "scope": "https://x/.default",
    }
    assert secret_data(full)["contoso-client-secret"] == "app-secret"


def test_typed_settings_and_pass_through_share_their_tables(render):
    r = render({
        **contoso(extra={"allow_http": False, "email": {"reply_to": "r@contoso.com"}},
                  email={"to": ["sales@contoso.com"], "from": "leads@contoso.com",
                         "smtpUrl": "smtp://mail.contoso.com:587"}),
        "config": {
            "server": {"dedupeWindow": "12h", "authFailuresPerMinute": 10, "maxConnections": 512},
            "store": {"retention": "30days"},
            "delivery": {"maxAttempts": 12, "backoffMax": "30m", "orgRequestsPerMinute": 600,
                         "destinations": {"dataverse": {"retryFor": "24h"}}},
            "extra": {"server": {"a_newer_key": 1.5}, "store": {"another": [1, 2]},
                      "rate_limit": {"per_minute": 120}},
        },
    })
    text = r.config_text
    # One [server] and one [store]: the application refuses a table written twice.
    assert text.count("\n[server]\n") == 1 and text.count("\n[store]\n") == 1
    cfg = tomllib.loads(text)
    assert cfg["server"] == {"listen": "0.0.0.0:8080", "max_body_bytes": 65536,
                             "dedupe_window": "12h", "auth_failures_per_minute": 10,
                             "max_connections": 512, "a_newer_key": 1.5}
    assert isinstance(cfg["server"]["auth_failures_per_minute"], int)
    assert cfg["store"] == {"url": "sqlite:///var/lib/leadbridge/leadbridge.db",
                            "retention": "30days", "another": [1, 2]}
    assert cfg["delivery"] == {"max_attempts": 12, "backoff_max": "30m",
                               "org_requests_per_minute": 600,
                               "destinations": {"dataverse": {"retry_for": "24h"}}}
    assert cfg["rate_limit"] == {"per_minute": 120}
    org = cfg["organizations"]["contoso"]
    assert org["allow_http"] is False
    assert org["email"] == {"to": ["sales@contoso.com"], "from": "leads@contoso.com",
                            "smtp_url": "smtp://mail.contoso.com:587", "reply_to": "r@contoso.com"}


def test_special_characters_survive(render):
    code = "Abc~def.ghi_jkl-0123456789"
    r = render(contoso(url='https://contoso.crm4.dynamics.com/"quoted"\\', endpointSecrets=[code]))
    assert r.config["organizations"]["contoso"]["url"] == 'https://contoso.crm4.dynamics.com/"quoted"\\'
    assert f"code={urllib.parse.quote(code, safe='')}" in r.notes
