"""The chart's credentials, e-mail, lifecycle, monitoring and helm test."""

from __future__ import annotations

import helm_python
import pytest

from conftest import FULLNAME, SCENARIOS, validate_objects
from test_chart import CLIENT_ID, SECRETS_DIR, TENANT_ID, contoso, env_by_name, secret_data

CERTS_DIR = "/var/run/secrets/leadbridge-certificates"
APP = {"tenantId": TENANT_ID, "clientId": CLIENT_ID}


@pytest.fixture(scope="module")
def scenario(render):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = render(SCENARIOS[name])
        return cache[name]

    return get


def egress_ports(rendered) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"])
            for rule in rendered.one("NetworkPolicy")["spec"]["egress"] for p in rule["ports"]}


# ----------------------------------------------------------------- credentials


def test_certificate_from_a_secret_of_its_own(scenario):
    r = scenario("certificate-existing-secret")
    auth = r.config["organizations"]["contoso"]["auth"]
    assert auth == {
        "method": "certificate",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "certificate_file": f"{CERTS_DIR}/contoso/tls.crt",
        "private_key_file": f"{CERTS_DIR}/contoso/tls.key",
    }
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    mount = mounts[f"{CERTS_DIR}/contoso"]
    assert mount["readOnly"] is True
    volume = {v["name"]: v for v in r.pod["spec"]["volumes"]}[mount["name"]]
    assert volume["secret"] == {"secretName": "contoso-app-certificate", "defaultMode": 0o440}


def test_certificate_pem_in_the_chart_secret(render):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    r = render(contoso(dryRun=False, auth={**APP, "method": "certificate",
                                           "certificate": {"pem": pem, "assertionAlg": "RS256"}}))
    auth = r.config["organizations"]["contoso"]["auth"]
    assert auth["certificate_file"] == f"{SECRETS_DIR}/contoso-certificate"
    assert "private_key_file" not in auth and auth["assertion_alg"] == "RS256"
    data = secret_data(r)
    assert data["contoso-certificate"] == pem
    assert "contoso-client-secret" not in data


def test_certificate_key_in_the_certificate_pem_of_a_secret(render):
    r = render(contoso(dryRun=False, auth={**APP, "method": "certificate", "certificate": {
        "existingSecret": "combined", "certificateKey": "both.pem", "privateKeyKey": ""}}))
    auth = r.config["organizations"]["contoso"]["auth"]
    assert auth["certificate_file"] == f"{CERTS_DIR}/contoso/both.pem"
    assert "private_key_file" not in auth


def test_certificate_needs_its_material(render):
    with pytest.raises(helm_python.HelmRenderError, match="auth.certificate needs existingSecret"):
        render(contoso(dryRun=False, auth={**APP, "method": "certificate"}))


def test_managed_identity(scenario):
    r = scenario("managed-identity")
    assert r.config["organizations"]["contoso"]["auth"] == {
        "method": "managed_identity", "client_id": CLIENT_ID}
    assert "contoso-client-secret" not in secret_data(r)
    imds = [rule for rule in r.one("NetworkPolicy")["spec"]["egress"] if "to" in rule]
    assert imds == [{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
                     "ports": [{"port": 80, "protocol": "TCP"}]}]


def test_workload_identity_method_needs_the_webhook_values(render):
    with pytest.raises(helm_python.HelmRenderError, match="needs workloadIdentity.enabled"):
        render(contoso(dryRun=False, auth={"method": "workloadIdentity"}))


def test_one_organization_keeps_a_client_secret_under_workload_identity(render):
    r = render({
        "workloadIdentity": {"enabled": True, "clientId": CLIENT_ID},
        "organizations": {
            **contoso(dryRun=False)["organizations"],
            "fabrikam": {"url": "https://fabrikam.crm.dynamics.com", "mapping": "fields: {}\n",
                         "endpointSecrets": ["fabrikam-code-0123456789"],
                         "auth": {"method": "clientSecret", "tenantId": TENANT_ID,
                                  "clientId": "99999999-2222-3333-4444-555555555555",
                                  "clientSecret": "fabrikam-secret"}},
        },
    })
    orgs = r.config["organizations"]
    assert orgs["contoso"]["auth"] == {"method": "workload_identity", "client_id": CLIENT_ID}
    assert orgs["fabrikam"]["auth"]["client_id"] == "99999999-2222-3333-4444-555555555555"
    assert secret_data(r)["fabrikam-client-secret"] == "fabrikam-secret"


# ---------------------------------------------------------------------- e-mail


def test_email_by_smtp(scenario):
    r = scenario("email-smtp")
    orgs = r.config["organizations"]
    assert orgs["contoso"]["email"] == {
        "to": ["sales@contoso.com"],
        "cc": ["crm-team@contoso.com"],
        "from": "Contoso leads <leads@contoso.com>",
        "smtp_url": "smtp://mail.contoso.com:587",
        "smtp_username": "leads@contoso.com",
        "smtp_password_file": f"{SECRETS_DIR}/contoso-smtp-password",
        "smtp_timeout": "30s",
        "subject": "New lead: {UserDetails.Company} ({LeadSource})",
        "alert_to": ["ops@contoso.com"],
    }
    assert "smtp-relay-password" not in r.config_text
    assert secret_data(r)["contoso-smtp-password"] == "smtp-relay-password"
    # fabrikam: e-mail only, no Dataverse: no url, mapping or auth.
    assert set(orgs["fabrikam"]) == {"dry_run", "endpoint_secrets_file", "email"}
    assert "fabrikam.yaml" not in r.one("ConfigMap", f"{FULLNAME}-mappings")["data"]
    assert egress_ports(r) >= {(587, "TCP"), (465, "TCP")}
    assert "(e-mail only)" in r.notes


def test_email_by_graph(scenario):
    r = scenario("email-graph")
    org = r.config["organizations"]["contoso"]
    assert org["email"]["transport"] == "graph"
    assert org["email"]["graph_url"] == "https://graph.microsoft.com"
    assert "smtp_url" not in org["email"]
    assert org["auth"]["client_secret_file"] == f"{SECRETS_DIR}/contoso-client-secret"
    assert egress_ports(r) == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def test_graph_email_needs_the_organization_app(render):
    email = {"to": ["a@contoso.com"], "from": "l@contoso.com", "transport": "graph"}
    with pytest.raises(helm_python.HelmRenderError, match="auth.tenantId is required"):
        render(contoso(email=email))


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"email": {"to": ["a@contoso.com"], "from": "l@contoso.com"}}, "smtpUrl is required"),
        ({"email": {"to": ["a@contoso.com"], "from": "l@contoso.com",
                    "smtpUrl": "smtp://m:25", "smtpUsername": "u"}}, "needs email.smtpPassword"),
        ({"email": {"to": ["a@contoso.com"], "from": "l@contoso.com",
                    "smtpUrl": "smtp://m:25", "smtpPassword": "p"}}, "needs email.smtpUsername"),
        ({"email": {"to": ["a@contoso.com"], "from": "l@contoso.com", "transport": "graph",
                    "smtpUrl": "smtp://m:25"}, "auth": {**APP, "clientSecret": "s"}},
         "only used with transport smtp"),
    ],
)
def test_email_values_the_application_would_refuse(render, spec, message):
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(contoso(**spec))


def test_organization_needs_dataverse_or_email(render):
    with pytest.raises(helm_python.HelmRenderError, match="needs url .* or email"):
        render({"organizations": {"contoso": {"endpointSecrets": ["code-0123456789abcdef"]}}})


def test_smtp_password_from_an_existing_secret(render):
    email = {"to": ["a@contoso.com"], "from": "l@contoso.com",
             "smtpUrl": "smtp://mail.contoso.com", "smtpUsername": "u"}
    r = render({**contoso(email=email), "existingSecret": "mine"})
    assert r.config["organizations"]["contoso"]["email"]["smtp_password_file"] == (
        f"{SECRETS_DIR}/contoso-smtp-password")
    assert "contoso-smtp-password" in r.notes
    # smtp:// without a port: the application's default, 587.
    ports = egress_ports(r)
    assert (587, "TCP") in ports and (25, "TCP") not in ports


# ------------------------------------------------------------------- lifecycle


def test_nothing_lost_on_uninstall_or_rollout(scenario, render):
    r = scenario("defaults")
    pvc = r.one("PersistentVolumeClaim", f"{FULLNAME}-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "helm.sh/resource-policy" not in (
        render({**contoso(), "persistence": {"keepOnUninstall": False}})
        .one("PersistentVolumeClaim")["metadata"].get("annotations", {}))
    assert r.container["lifecycle"] == {"preStop": {"exec": {"command": ["/bin/sleep", "10"]}}}
    assert r.pod["spec"]["terminationGracePeriodSeconds"] == 45
    assert "lifecycle" not in render({**contoso(), "preStopSleepSeconds": 0}).container


@pytest.mark.parametrize(
    "values, ok",
    [
        ({"terminationGracePeriodSeconds": 34}, False),  # 10 + 20 + 5 = 35
        ({"terminationGracePeriodSeconds": 35}, True),
        ({"config": {"delivery": {"shutdownGrace": "1m"}}}, False),
        ({"config": {"delivery": {"shutdownGrace": "1m 30s"}},
          "terminationGracePeriodSeconds": 105}, True),
        ({"config": {"extra": {"delivery": {"shutdown_grace": "40s"}}}}, False),
        ({"preStopSleepSeconds": 0, "terminationGracePeriodSeconds": 25}, True),
    ],
)
def test_grace_period_leaves_room_for_the_shutdown(render, values, ok):
    values = {**contoso(), **values}
    if ok:
        render(values)
    else:
        with pytest.raises(helm_python.HelmRenderError, match="terminationGracePeriodSeconds"):
            render(values)


def test_extra_volumes_mounts_and_env_from(render):
    r = render({
        **contoso(),
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "envFrom": [{"configMapRef": {"name": "proxy"}}],
        "env": [{"name": "SSL_CERT_FILE", "value": "/etc/ssl/corporate/ca.crt"}],
        "deploymentAnnotations": {"secret.reloader.stakater.com/reload": "mine"},
    })
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in (
        r.container["volumeMounts"])
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in r.pod["spec"]["volumes"]
    assert r.container["envFrom"] == [{"configMapRef": {"name": "proxy"}}]
    assert env_by_name(r.container)["SSL_CERT_FILE"]["value"] == "/etc/ssl/corporate/ca.crt"
    assert r.deployment["metadata"]["annotations"] == {
        "secret.reloader.stakater.com/reload": "mine"}
    validate_objects(r)


# ------------------------------------------------------------------ monitoring


def test_prometheus_rule(scenario, render):
    assert scenario("defaults").maybe("PrometheusRule") is None
    rule = scenario("postgres-ha").one("PrometheusRule", FULLNAME)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(rules) == {"LeadbridgeDeadLetters", "LeadbridgeOrganizationBlocked",
                          "LeadbridgeQueueStalled", "LeadbridgeDown"}
    selector = '{namespace="leads", service="lb-leadbridge"}'
    assert rules["LeadbridgeDeadLetters"]["expr"] == f"max(leadbridge_dead_letters{selector}) > 0"
    assert rules["LeadbridgeOrganizationBlocked"]["expr"] == (
        f"max by (org) (leadbridge_organization_blocked{selector}) == 1")
    assert rules["LeadbridgeOrganizationBlocked"]["for"] == "10m"
    assert rules["LeadbridgeQueueStalled"]["expr"] == (
        f"max(leadbridge_queue_oldest_pending_age_seconds{selector}) > 1800")
    assert "{{ $labels.org }}" in rules["LeadbridgeOrganizationBlocked"]["annotations"]["description"]


# ------------------------------------------------------------------- helm test


def test_helm_test_pod_sends_a_lead_to_the_dry_run_organization(scenario):
    r = scenario("defaults")
    pod = r.one("Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Not selected by the Service: the test pod never receives leads.
    selector = r.one("Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    (c,) = pod["spec"]["containers"]
    assert c["args"] == ["send-test-lead", "--url",
                         "http://lb-leadbridge.leads.svc:80/leads/contoso?code=$(ENDPOINT_SECRET)"]
    ref = c["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": FULLNAME, "key": "test-endpoint-secret"}
    code = SCENARIOS["defaults"]["organizations"]["contoso"]["endpointSecrets"][0]
    assert secret_data(r)["test-endpoint-secret"] == code
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_no_helm_test_pod_without_a_dry_run_organization(scenario, render):
    assert scenario("client-secret").maybe("Pod") is None
    assert "test-endpoint-secret" not in secret_data(scenario("client-secret"))
    chosen = render({**SCENARIOS["client-secret"], "tests": {"organization": "contoso"}})
    assert chosen.one("Pod")["spec"]["containers"][0]["args"][2].endswith(
        "/leads/contoso?code=$(ENDPOINT_SECRET)")
    with pytest.raises(helm_python.HelmRenderError, match="tests.organization"):
        render({**contoso(), "tests": {"organization": "nope"}})
