//! The four credential methods as configured: what each needs, what it
//! refuses, and the file and environment sources.

use super::*;

fn live(auth: &str) -> String {
    format!(
        r#"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com/"
endpoint_secrets = ["0123456789abcdef"]
[organizations.contoso.auth]
{auth}
"#
    )
}

fn credentials(toml: &str, env: &[(&str, &str)]) -> Credentials {
    let s = load(toml, env).unwrap_or_else(|e| panic!("{e}"));
    s.organizations[&OrgName::parse("contoso").unwrap()]
        .auth
        .clone()
        .unwrap()
}

fn problem_at(toml: &str, key: &str) -> String {
    let p = problems(toml);
    p.iter()
        .find(|i| i.key == format!("organizations.contoso.auth.{key}"))
        .unwrap_or_else(|| panic!("no problem at {key}: {p:#?}"))
        .problem
        .clone()
}

#[test]
fn certificate_credentials_in_one_file_or_two() {
    for auth in [
        format!(
            "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = \"{}\"",
            fixture("client-combined.pem")
        ),
        format!(
            "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\nassertion_alg = \"RS256\"",
            fixture("client-cert.pem"),
            fixture("client-key-pkcs1.pem")
        ),
    ] {
        let c = credentials(&live(&auth), &[]);
        let Credentials::Certificate { app, certificate } = &c else {
            panic!("certificate expected: {c:?}");
        };
        assert_eq!(app.client_id, "c");
        assert_eq!(
            app.token_url(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        let expected = if auth.contains("RS256") {
            AssertionAlg::Rs256
        } else {
            AssertionAlg::Ps256
        };
        assert_eq!(certificate.alg(), expected);
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }
}

#[test]
fn certificate_problems_name_the_key_and_the_file() {
    let base = "method = \"certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"";
    let mismatch = problem_at(
        &live(&format!(
            "{base}\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"",
            fixture("client-cert.pem"),
            fixture("other-key.pem")
        )),
        "private_key_file",
    );
    assert!(
        mismatch.contains("does not belong to the certificate")
            && mismatch.contains("other-key.pem"),
        "{mismatch}"
    );
    let unreadable = problem_at(
        &live(&format!(
            "{base}\ncertificate_file = \"/nonexistent/cert.pem\""
        )),
        "certificate_file",
    );
    assert!(
        unreadable.contains("cannot read /nonexistent/cert.pem"),
        "{unreadable}"
    );
    let no_key = problem_at(
        &live(&format!(
            "{base}\ncertificate_file = \"{}\"",
            fixture("client-cert.pem")
        )),
        "certificate_file",
    );
    assert!(no_key.contains("no PEM private key"), "{no_key}");
    let no_cert = problem_at(
        &live(&format!(
            "{base}\ncertificate_file = \"{}\"",
            fixture("client-key.pem")
        )),
        "certificate_file",
    );
    assert!(no_cert.contains("no PEM certificate"), "{no_cert}");
    assert!(problem_at(&live(base), "certificate_file").starts_with("missing"));
    let alg = problem_at(
        &live(&format!(
            "{base}\nassertion_alg = \"HS256\"\ncertificate_file = \"{}\"",
            fixture("client-combined.pem")
        )),
        "assertion_alg",
    );
    assert!(alg.contains("PS256"), "{alg}");
}

#[test]
fn unknown_methods_and_misplaced_keys_are_refused() {
    let p = problem_at(&live("method = \"password\""), "method");
    assert!(p.contains("unknown method `password`"), "{p}");
    let p = problem_at(
        &live("method = \"managed_identity\"\nclient_secret = \"x\""),
        "client_secret",
    );
    assert!(
        p.contains("only used with method = \"client_secret\""),
        "{p}"
    );
    let p = problem_at(
        &live(
            "tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\nfederated_token_file = \"/x\"",
        ),
        "federated_token_file",
    );
    assert!(p.contains("workload_identity"), "{p}");
}

#[test]
fn workload_identity_as_the_helm_chart_renders_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("azure-identity-token");
    std::fs::write(&token, "eyJhbGciOi.federated.token").unwrap();
    let token = token.display().to_string();
    // The chart renders an empty tenant_id when only the webhook knows it.
    let chart = live(
        "method = \"workload_identity\"\nauthority_host = \"https://login.microsoftonline.com\"\ntenant_id = \"\"\nclient_id = \"from-chart\"",
    );
    let env = [
        ("AZURE_TENANT_ID", "tenant-from-env"),
        ("AZURE_CLIENT_ID", "client-from-env"),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ("AZURE_FEDERATED_TOKEN_FILE", token.as_str()),
    ];
    let Credentials::WorkloadIdentity { app, token_file } = credentials(&chart, &env) else {
        panic!("workload identity expected");
    };
    assert_eq!(app.tenant_id, "tenant-from-env");
    assert_eq!(
        app.client_id, "from-chart",
        "the config wins over the environment"
    );
    assert_eq!(
        app.authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );
    assert_eq!(app.scope, "https://contoso.crm4.dynamics.com/.default");
    assert_eq!(token_file, PathBuf::from(&token));

    // Nothing in the file but the method: all from the webhook's variables.
    let Credentials::WorkloadIdentity { app, .. } =
        credentials(&live("method = \"workload_identity\""), &env)
    else {
        panic!("workload identity expected");
    };
    assert_eq!(
        app.token_url(),
        "https://login.microsoftonline.us/tenant-from-env/oauth2/v2.0/token"
    );

    // Without the webhook, every missing piece is named.
    let p = problems(&live("method = \"workload_identity\""));
    let keys: Vec<&str> = p.iter().map(|i| i.key.as_str()).collect();
    for k in ["tenant_id", "client_id", "federated_token_file"] {
        assert!(
            keys.contains(&format!("organizations.contoso.auth.{k}").as_str()),
            "{p:#?}"
        );
    }
    assert!(
        p.iter()
            .any(|i| i.problem.contains("AZURE_FEDERATED_TOKEN_FILE"))
    );
    let p = problem_at(
        &live(
            "method = \"workload_identity\"\ntenant_id = \"t\"\nclient_id = \"c\"\nfederated_token_file = \"/nonexistent/token\"",
        ),
        "federated_token_file",
    );
    assert!(p.contains("/nonexistent/token"), "{p}");
}

#[test]
fn managed_identity_needs_nothing_but_the_method() {
    let c = credentials(&live("method = \"managed_identity\""), &[]);
    let Credentials::ManagedIdentity(mi) = c else {
        panic!("managed identity expected");
    };
    assert_eq!(mi.endpoint.as_str(), DEFAULT_IMDS_ENDPOINT);
    assert_eq!(mi.resource, "https://contoso.crm4.dynamics.com");
    assert_eq!(mi.client_id, None);
    let c = credentials(
        &live(
            "method = \"managed_identity\"\nclient_id = \"user-assigned\"\nimds_endpoint = \"http://127.0.0.1:1/token\"",
        ),
        &[],
    );
    let Credentials::ManagedIdentity(mi) = c else {
        panic!("managed identity expected");
    };
    assert_eq!(mi.client_id.as_deref(), Some("user-assigned"));
    assert_eq!(mi.endpoint.as_str(), "http://127.0.0.1:1/token");
    let p = problem_at(
        &live("method = \"managed_identity\"\nimds_endpoint = \"nope\""),
        "imds_endpoint",
    );
    assert!(p.contains("169.254.169.254"), "{p}");
}
