//! `[organizations.<org>.email]`.

use super::*;

const LIVE_AUTH: &str = r#"
[organizations.contoso.auth]
tenant_id = "t"
client_id = "c"
client_secret = "s"
"#;

fn with_email(org: &str, email: &str) -> String {
    format!(
        "[organizations.contoso]\nendpoint_secrets = [\"0123456789abcdef\"]\n{org}\n\
         [organizations.contoso.email]\n{email}"
    )
}

fn keys(p: &[ConfigIssue]) -> Vec<&str> {
    p.iter().map(|i| i.key.as_str()).collect()
}

#[test]
fn an_smtp_section_loads_with_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let toml = format!(
        "{}{LIVE_AUTH}",
        with_email(
            "url = \"https://contoso.crm4.dynamics.com\"",
            &format!(
                "to = [\"sales@contoso.com\", \"Sales Two <sales2@contoso.com>\"]\n\
                 from = \"Contoso Leads <leads@contoso.com>\"\n\
                 smtp_url = \"smtp://mail.contoso.com\"\n\
                 smtp_username = \"leadbridge\"\n\
                 smtp_password_file = \"{}\"\n\
                 alert_to = \"ops@contoso.com\"\n",
                pw.display()
            )
        )
    );
    let s = load(&toml, &[]).unwrap();
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    assert_eq!(
        org.destinations(),
        [
            crate::store::Destination::Dataverse,
            crate::store::Destination::Email
        ]
    );
    let email = org.email.as_ref().unwrap();
    assert_eq!(email.recipients.to.len(), 2);
    assert_eq!(email.recipients.to[1].name.as_deref(), Some("Sales Two"));
    assert_eq!(email.recipients.from.address, "leads@contoso.com");
    assert_eq!(email.alert_to.len(), 1, "one string is a list of one");
    let MailTransport::Smtp(smtp) = &email.transport else {
        panic!("smtp expected");
    };
    assert_eq!((smtp.host.as_str(), smtp.port), ("mail.contoso.com", 587));
    assert_eq!(
        smtp.tls,
        SmtpTls::Required,
        "a password never goes out in clear"
    );
    assert_eq!(
        smtp.password.as_ref().map(|p| p.expose_secret().to_owned()),
        Some("s3cret".into())
    );
    assert_eq!(smtp.timeout, Duration::from_secs(30));
    let shown = s.redacted().to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("\"transport\":\"smtp\""), "{shown}");
}

#[test]
fn an_email_only_organization_needs_no_url_and_by_smtp_no_auth() {
    let toml = with_email(
        "",
        "to = [\"sales@contoso.com\"]\nfrom = \"leads@contoso.com\"\nsmtp_url = \"smtps://mail.contoso.com\"\n",
    );
    let s = load(&toml, &[]).unwrap();
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    assert!(org.url.is_none());
    assert!(org.auth.is_none());
    assert_eq!(org.destinations(), [crate::store::Destination::Email]);
    let Some(MailTransport::Smtp(smtp)) = org.email.as_ref().map(|e| &e.transport) else {
        panic!("smtp expected");
    };
    assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Wrapper));
}

#[test]
fn graph_takes_its_token_scope_from_the_graph_url() {
    let toml = format!(
        "{}{LIVE_AUTH}",
        with_email(
            "",
            "to = [\"sales@contoso.com\"]\nfrom = \"leads@contoso.com\"\ntransport = \"graph\"\n\
             graph_url = \"https://graph.microsoft.us\"\n",
        )
    );
    let s = load(&toml, &[]).unwrap();
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    assert_eq!(
        org.email
            .as_ref()
            .and_then(|e| e.uses_graph())
            .map(Url::as_str),
        Some("https://graph.microsoft.us/")
    );
    assert_eq!(
        org.auth
            .as_ref()
            .and_then(|a| a.app())
            .map(|a| a.scope.as_str()),
        Some("https://graph.microsoft.us/.default")
    );

    // Graph without credentials cannot send.
    let p = problems(&with_email(
        "",
        "to = [\"sales@contoso.com\"]\nfrom = \"leads@contoso.com\"\ntransport = \"graph\"\n",
    ));
    assert!(keys(&p).contains(&"organizations.contoso.auth"), "{p:?}");
}

#[test]
fn every_problem_of_the_section_is_reported_with_its_key() {
    let p = problems(&with_email(
        "url = \"https://contoso.crm4.dynamics.com\"\ndry_run = true",
        "to = [\"not an address\", \"ok@contoso.com\"]\ncc = [\"x@y\\r\\nBcc: evil@x.test\"]\n\
         smtp_url = \"http://mail.contoso.com\"\nsubject = \"{UserDetails.Company\"\n\
         alert_to = [\"@\"]\n",
    ));
    let k = keys(&p);
    for key in [
        "organizations.contoso.email.to[0]",
        "organizations.contoso.email.cc[0]",
        "organizations.contoso.email.from",
        "organizations.contoso.email.smtp_url",
        "organizations.contoso.email.subject",
        "organizations.contoso.email.alert_to[0]",
    ] {
        assert!(k.contains(&key), "{key} missing in {p:#?}");
    }

    let p = problems(&with_email(
        "url = \"https://contoso.crm4.dynamics.com\"\ndry_run = true",
        "to = [\"a@contoso.com\"]\nfrom = \"b@contoso.com\"\ntransport = \"pigeon\"\n",
    ));
    assert_eq!(keys(&p), ["organizations.contoso.email.transport"], "{p:?}");

    let p = problems(&with_email(
        "url = \"https://contoso.crm4.dynamics.com\"\ndry_run = true",
        "to = [\"a@contoso.com\"]\nfrom = \"b@contoso.com\"\n\
         smtp_url = \"smtp://user:pw@mail.contoso.com\"\n",
    ));
    assert_eq!(keys(&p), ["organizations.contoso.email.smtp_url"], "{p:?}");
    assert!(!format!("{p:?}").contains("pw@"), "{p:?}");

    let err = load(
        &with_email(
            "url = \"https://contoso.crm4.dynamics.com\"\ndry_run = true",
            "to = [\"a@contoso.com\"]\nfrom = \"b@contoso.com\"\nsmtp_url = \"smtp://m\"\nbogus = 1\n",
        ),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `bogus`"),
        "unknown keys are refused: {err}"
    );
}

#[test]
fn smtp_ca_file_is_read_when_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let section = |ca: &std::path::Path| {
        with_email(
            "",
            &format!(
                "to = [\"sales@contoso.com\"]\nfrom = \"leads@contoso.com\"\n\
                 smtp_url = \"smtp://relay.contoso.local\"\nsmtp_ca_file = \"{}\"\n",
                ca.display()
            ),
        )
    };
    let s = load(&section(&fixtures.join("smtp-ca.pem")), &[]).unwrap();
    let org = &s.organizations[&OrgName::parse("contoso").unwrap()];
    let Some(MailTransport::Smtp(smtp)) = org.email.as_ref().map(|e| &e.transport) else {
        panic!("smtp expected");
    };
    assert_eq!(smtp.ca_certificates.len(), 1);

    // A key, an empty file, a missing file: each named under the key.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (file, says) in [
        (fixtures.join("smtp-server-key.pem"), "no certificate"),
        (empty, "no certificate"),
        (dir.path().join("missing.pem"), "cannot read"),
    ] {
        let p = problems(&section(&file));
        assert_eq!(
            keys(&p),
            ["organizations.contoso.email.smtp_ca_file"],
            "{p:?}"
        );
        assert!(format!("{p:?}").contains(says), "{file:?}: {p:?}");
    }

    // It belongs to SMTP.
    let p = problems(&with_email(
        LIVE_AUTH,
        &format!(
            "to = [\"a@contoso.com\"]\nfrom = \"b@contoso.com\"\ntransport = \"graph\"\n\
             smtp_ca_file = \"{}\"\n",
            fixtures.join("smtp-ca.pem").display()
        ),
    ));
    assert_eq!(
        keys(&p),
        ["organizations.contoso.email.smtp_ca_file"],
        "{p:?}"
    );
}
