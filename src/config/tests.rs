use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;
use crate::auth::{AssertionAlg, DEFAULT_IMDS_ENDPOINT};
use crate::lead::OrgName;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_with_env(&path, Some(env))
}

fn problems(toml: &str) -> Vec<ConfigIssue> {
    match load(toml, &[]) {
        Err(ConfigError::Invalid(i)) => i,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

const DRY: &str = r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
dry_run = true
endpoint_secrets = ["0123456789abcdef"]
"#;

#[test]
fn shipped_default_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let s = Settings::load_with_env(&path, Some(HashMap::new())).unwrap();
    let contoso = s.organization(&OrgName::parse("contoso").unwrap()).unwrap();
    assert!(contoso.dry_run);
    assert!(contoso.mapping.ends_with("mappings/contoso.yaml"));
    assert_eq!(s.store.url, "sqlite://data/leadbridge.db");
    assert_eq!(s.server.listen.port(), 8080);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let s = load(DRY, &[]).unwrap();
    assert_eq!(s.server.max_body_bytes, 65536);
    assert_eq!(s.delivery.max_attempts, None);
    assert_eq!(s.delivery.retry_for, Duration::from_secs(72 * 3600));
    assert_eq!(s.server.dedupe_window, Duration::from_secs(24 * 3600));
    assert_eq!(s.public_base_url(), "http://localhost:8080");
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    assert_eq!(org.mapping, PathBuf::from("mappings/contoso.yaml"));
    assert!(org.auth.is_none());
}

#[test]
fn a_lease_must_hold_three_renewals() {
    let s = load(DRY, &[]).unwrap();
    assert_eq!(s.delivery.lease, Duration::from_secs(30));
    assert_eq!(s.delivery.lease_renewal, Duration::from_secs(10));
    let with = |lease: &str, renewal: &str| {
        format!("[delivery]\nlease = \"{lease}\"\nlease_renewal = \"{renewal}\"\n{DRY}")
    };
    assert!(load(&with("3s", "1s"), &[]).is_ok());
    for (lease, renewal) in [("20s", "10s"), ("30s", "0s")] {
        let p = problems(&with(lease, renewal));
        assert!(
            p.iter().any(|i| i.key == "delivery.lease_renewal"),
            "{lease}/{renewal}: {p:?}"
        );
    }
}

#[test]
fn delivery_defaults_follow_dataverse_limits() {
    let s = load(DRY, &[]).unwrap();
    assert_eq!(
        s.delivery.org_concurrency, 52,
        "Dataverse's concurrent requests per user"
    );
    assert!(
        s.delivery.concurrency >= s.delivery.org_concurrency,
        "one organization can use all of its concurrency"
    );
    assert_eq!(s.delivery.org_requests_per_minute, None);
    assert_eq!(s.delivery.org_rate_cap(), None, "no fixed cap by default");
}

#[test]
fn a_fixed_request_rate_is_optional_and_zero_means_none() {
    let with = |toml: &str, env: &[(&str, &str)]| {
        load(&format!("{DRY}\n{toml}"), env)
            .unwrap()
            .delivery
            .org_rate_cap()
            .map(std::num::NonZeroU32::get)
    };
    assert_eq!(
        with("[delivery]\norg_requests_per_minute = 600", &[]),
        Some(600)
    );
    assert_eq!(with("[delivery]\norg_requests_per_minute = 0", &[]), None);
    assert_eq!(
        with(
            "",
            &[("LEADBRIDGE__DELIVERY__ORG_REQUESTS_PER_MINUTE", "1200")]
        ),
        Some(1200)
    );
    assert_eq!(
        with(
            "",
            &[("LEADBRIDGE__DELIVERY__ORG_REQUESTS_PER_MINUTE", "0")]
        ),
        None
    );
}

#[test]
fn environment_overrides_the_file() {
    let s = load(
        DRY,
        &[
            ("LEADBRIDGE__SERVER__LISTEN", "127.0.0.1:9999"),
            ("LEADBRIDGE__DELIVERY__REQUEST_TIMEOUT", "5s"),
            (
                "LEADBRIDGE__ORGANIZATIONS__CONTOSO__ENDPOINT_SECRETS",
                "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb",
            ),
        ],
    )
    .unwrap();
    assert_eq!(s.server.listen.port(), 9999);
    assert_eq!(s.delivery.request_timeout, Duration::from_secs(5));
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    let secrets: Vec<&str> = org
        .endpoint_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(secrets, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
}

#[test]
fn secrets_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let cs = dir.path().join("cs");
    std::fs::write(&cs, "s3cret-value\n").unwrap();
    let es = dir.path().join("es");
    std::fs::write(
        &es,
        "# rotation\nfirst-secret-123456\n\nsecond-secret-12345\n",
    )
    .unwrap();
    let toml = format!(
        r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets_file = "{}"
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret_file = "{}"
"#,
        es.display(),
        cs.display()
    );
    let s = load(&toml, &[]).unwrap();
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    assert_eq!(org.endpoint_secrets.len(), 2);
    let Some(Credentials::ClientSecret { app, secret }) = &org.auth else {
        panic!("client secret credentials expected: {:?}", org.auth);
    };
    assert_eq!(secret.expose_secret(), "s3cret-value");
    assert_eq!(app.scope, "https://contoso.crm4.dynamics.com/.default");
    assert_eq!(
        app.authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );
    assert!(
        !format!("{org:?}").contains("s3cret"),
        "Debug must not show secrets"
    );
}

#[test]
fn a_live_organization_refuses_the_shipped_placeholder_secret() {
    let toml = |dry_run: bool| {
        format!(
            "[organizations.contoso]\nurl = \"https://contoso.crm4.dynamics.com\"\ndry_run = {dry_run}\n\
             endpoint_secrets = [\"change-me-contoso-0123456789\"]\n\
             [organizations.contoso.auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        )
    };
    let p = problems(&toml(false));
    assert!(
        p.iter()
            .any(|i| i.key == "organizations.contoso.endpoint_secrets[0]"
                && i.problem.contains("shipped placeholder")),
        "{p:#?}"
    );
    assert!(load(&toml(true), &[]).is_ok(), "fine while nothing is live");
}

#[test]
fn organization_and_authority_urls_must_be_https_unless_allowed() {
    let toml = |url: &str, authority: &str, allow: &str| {
        format!(
            "[organizations.contoso]\nurl = \"{url}\"\n{allow}\
             endpoint_secrets = [\"0123456789abcdef\"]\n\
             [organizations.contoso.auth]\nauthority_host = \"{authority}\"\n\
             tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        )
    };
    for (url, authority, key) in [
        (
            "http://contoso.crm4.dynamics.com",
            "https://login.microsoftonline.com",
            "organizations.contoso.url",
        ),
        (
            "https://contoso.crm4.dynamics.com",
            "http://127.0.0.1:9",
            "organizations.contoso.auth.authority_host",
        ),
    ] {
        let p = problems(&toml(url, authority, ""));
        assert!(
            p.iter()
                .any(|i| i.key == key && i.problem.contains("https://")),
            "{key}: {p:#?}"
        );
        assert!(
            load(&toml(url, authority, "allow_http = true\n"), &[]).is_ok(),
            "{key}: allowed"
        );
    }
}

#[test]
fn the_dedupe_window_cannot_outlast_retention() {
    let p = problems(&format!(
        "[server]\ndedupe_window = \"40days\"\n[store]\nretention = \"30days\"\n{DRY}"
    ));
    let found = p.iter().find(|i| i.key == "server.dedupe_window");
    assert!(
        found.is_some_and(|i| i.problem.contains("store.retention (30days)")),
        "{p:#?}"
    );
    let equal =
        format!("[server]\ndedupe_window = \"30days\"\n[store]\nretention = \"30days\"\n{DRY}");
    assert!(load(&equal, &[]).is_ok(), "equal is allowed");
}

#[test]
fn every_problem_is_named_with_its_key() {
    let p = problems(
        r#"
[server]
max_body_bytes = 10
[store]
url = "mysql://x"
[delivery]
concurrency = 0
[organizations.Bad_Name]
url = "https://x.crm.dynamics.com"
[organizations.contoso]
url = "not a url"
endpoint_secrets = ["short", "has space in it 123"]
[organizations.contoso.auth]
client_secret = "x"
client_secret_file = "/nonexistent"
"#,
    );
    let keys: Vec<&str> = p.iter().map(|i| i.key.as_str()).collect();
    for k in [
        "server.max_body_bytes",
        "store.url",
        "delivery.concurrency",
        "organizations.Bad_Name",
        "organizations.contoso.url",
        "organizations.contoso.endpoint_secrets[0]",
        "organizations.contoso.endpoint_secrets[1]",
        "organizations.contoso.auth.tenant_id",
        "organizations.contoso.auth.client_id",
        "organizations.contoso.auth.client_secret",
    ] {
        assert!(keys.contains(&k), "missing {k} in {p:#?}");
    }
}

#[test]
fn live_organizations_need_credentials() {
    let p = problems(
        r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets = ["0123456789abcdef"]
"#,
    );
    assert_eq!(p[0].key, "organizations.contoso.auth");
}

#[test]
fn typos_and_bad_types_are_load_errors_naming_the_key() {
    let err = load(&format!("{DRY}\n[server]\nlisten = \"nowhere\"\n"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("listen") || err.to_string().contains("server"),
        "{err}"
    );
    let err = load(&format!("{DRY}\n[server]\nlistn = \"0.0.0.0:1\"\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("listn"), "{err}");
    let err = load(DRY, &[("LEADBRIDGE__DELIVERY__MAX_ATTEMPTS", "many")]).unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
}

#[test]
fn admin_listener_defaults_and_token_sources() {
    let s = load(DRY, &[]).unwrap();
    assert_eq!(s.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9090)));
    assert!(s.admin.token.is_none(), "no token: /admin/... disabled");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, "from-a-kubernetes-secret-0123\n").unwrap();
    let toml = format!(
        "{DRY}\n[admin]\nlisten = \"0.0.0.0:9091\"\ntoken_file = \"{}\"\n",
        file.display()
    );
    let s = load(&toml, &[]).unwrap();
    assert_eq!(s.admin.listen.port(), 9091);
    assert_eq!(
        s.admin.token.as_ref().map(|t| t.expose_secret()),
        Some("from-a-kubernetes-secret-0123")
    );

    let p = problems(&format!("{DRY}\n[admin]\ntoken = \"short\"\n"));
    assert_eq!(p[0].key, "admin.token");
    assert!(p[0].problem.starts_with("too short"), "{p:?}");
    let p = problems(&format!(
        "{DRY}\n[admin]\ntoken = \"0123456789abcdef0\"\ntoken_file = \"{}\"\n",
        file.display()
    ));
    assert_eq!(p[0].key, "admin.token");
    let p = problems(&format!(
        "{DRY}\n[admin]\ntoken_file = \"/nonexistent/admin-token\"\n"
    ));
    assert_eq!(p[0].key, "admin.token_file");
}

#[test]
fn redacted_config_has_no_secrets() {
    let toml = r#"
[admin]
token = "admin-token-0123456789"
[store]
url = "sqlite://data/x.db"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets = ["endpoint-secret-0123456789"]
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret = "client-secret-value"
"#;
    let s = load(toml, &[]).unwrap();
    let v = s.redacted();
    let text = v.to_string();
    for secret in [
        "admin-token-0123456789",
        "endpoint-secret-0123456789",
        "client-secret-value",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(v["admin"]["token"], REDACTED);
    assert_eq!(
        v["organizations"]["contoso"]["auth"]["client_secret"],
        REDACTED
    );
    assert_eq!(v["organizations"]["contoso"]["auth"]["client_id"], "c");
    assert_eq!(v["delivery"]["backoff_max"], "1h");
    assert_eq!(v["delivery"]["retry_for"], "3days");
    assert_eq!(
        redact_url_password("postgres://leadbridge:hunter2@db:5432/leads"),
        "postgres://leadbridge:***@db:5432/leads"
    );
    assert_eq!(
        redact_url_password("sqlite://data/x.db"),
        "sqlite://data/x.db"
    );
}

#[test]
fn redacted_view_hides_every_kind_of_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "federated-token-value").unwrap();
    let toml = format!(
        r#"
[admin]
token = "admin-token-0123456789"
[store]
url = "postgres://leadbridge:store-password@db:5432/leads"
retention = "30days"
[delivery.destinations.dataverse]
backoff_initial = "5s"
max_attempts = 3
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
endpoint_secrets = ["endpoint-secret-0123456789", "endpoint-secret-9876543210"]
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret = "client-secret-value"
[organizations.fabrikam]
url = "https://fabrikam.crm.dynamics.com"
endpoint_secrets = ["endpoint-secret-fabrikam-01"]
[organizations.fabrikam.auth]
method = "certificate"
tenant_id = "t"
client_id = "c"
certificate_file = "{cert}"
[organizations.wi]
url = "https://wi.crm.dynamics.com"
endpoint_secrets = ["endpoint-secret-wi-0123456"]
[organizations.wi.auth]
method = "workload_identity"
tenant_id = "t"
client_id = "c"
federated_token_file = "{token}"
[organizations.mi]
url = "https://mi.crm.dynamics.com"
endpoint_secrets = ["endpoint-secret-mi-0123456"]
[organizations.mi.auth]
method = "managed_identity"
"#,
        cert = fixture("client-combined.pem"),
        token = token.display()
    );
    let s = load(&toml, &[]).unwrap_or_else(|e| panic!("{e}"));
    let v = s.redacted();
    let text = v.to_string();
    for secret in [
        "admin-token-0123456789",
        "store-password",
        "endpoint-secret-",
        "client-secret-value",
        "PRIVATE",
        "CERTIFICATE",
        "federated-token-value",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(v["store"]["url"], "postgres://leadbridge:***@db:5432/leads");
    assert_eq!(v["store"]["retention"], "30days");
    let orgs = &v["organizations"];
    assert_eq!(
        orgs["contoso"]["endpoint_secrets"],
        serde_json::json!([REDACTED, REDACTED])
    );
    assert_eq!(orgs["contoso"]["auth"]["method"], "client_secret");
    assert_eq!(orgs["fabrikam"]["auth"]["method"], "certificate");
    assert_eq!(orgs["fabrikam"]["auth"]["private_key"], REDACTED);
    assert_eq!(
        orgs["fabrikam"]["auth"]["scope"],
        "https://fabrikam.crm.dynamics.com/.default"
    );
    assert_eq!(
        orgs["wi"]["auth"],
        serde_json::json!({
            "method": "workload_identity",
            "authority_host": "https://login.microsoftonline.com/",
            "tenant_id": "t",
            "client_id": "c",
            "scope": "https://wi.crm.dynamics.com/.default",
        })
    );
    assert_eq!(
        orgs["mi"]["auth"],
        serde_json::json!({
            "method": "managed_identity",
            "imds_endpoint": DEFAULT_IMDS_ENDPOINT,
            "client_id": null,
        })
    );
    assert!(orgs["mi"].get("name").is_none(), "the name is the key");
    // An override is shown with what it falls back to, not as the bare override.
    assert_eq!(
        v["delivery"]["destinations"]["dataverse"],
        serde_json::json!({
            "backoff_initial": "5s",
            "backoff_max": "1h",
            "retry_for": "3days",
            "max_attempts": 3,
        })
    );
}

#[test]
fn missing_file_is_a_load_error() {
    let err = Settings::load(Path::new("/nonexistent/leadbridge.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Load { .. }));
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Each credential method as configured.
mod credentials;
mod email;
