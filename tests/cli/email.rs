//! `render` and `check --live` for `[organizations.<org>.email]`.

use serde_json::Value;

use crate::common::*;

const USER: &str = "leadbridge";
const PASSWORD: &str = "smtp-password-do-not-log";

fn email_section(smtp_url: &str, password: &str) -> String {
    email_section_with(smtp_url, password, "")
}

fn email_section_with(smtp_url: &str, password: &str, extra: &str) -> String {
    format!(
        r#"
[organizations.contoso.email]
to = ["sales@contoso.com"]
from = "leads@contoso.com"
smtp_url = "{smtp_url}"
smtp_username = "{USER}"
smtp_password = "{password}"
smtp_timeout = "2s"
subject = "Lead: {{UserDetails.Company}} ({{LeadSource}})"
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn render_shows_the_mail_as_it_would_be_sent() {
    let f = Fakes::start(&TestConfig {
        extra_toml: email_section("smtp://127.0.0.1:1", PASSWORD),
        ..Default::default()
    })
    .await;
    let lead = f.write_file("lead.json", sample_2020());
    let run = f
        .cli(&[
            "render",
            "--org",
            "contoso",
            "--lead",
            lead.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    let lead: Value = serde_json::from_str(sample_2020()).unwrap();
    let expected = format!(
        "# notification mail of organization contoso, sent by SMTP smtp://127.0.0.1:1\n\
         From: leads@contoso.com\nTo: sales@contoso.com\nSubject: Lead: {} ({})\n",
        lead["UserDetails"]["Company"].as_str().unwrap(),
        lead["LeadSource"].as_str().unwrap()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(out.contains("--- text/plain ---\n"), "{out}");
    assert!(out.contains("--- text/html ---\n<!doctype html>"), "{out}");
    assert!(
        out.contains("POST "),
        "the Dataverse request comes first: {out}"
    );
    assert!(!out.contains(PASSWORD));
}

/// `check --live --json` with `email_toml` for contoso (its Dynamics side
/// answering): the exit code, stdout, and the organization's `email` entry.
async fn check_live(email_toml: String) -> (Option<i32>, String, Value) {
    let f = Fakes::start(&TestConfig {
        extra_toml: email_toml,
        ..Default::default()
    })
    .await;
    mount_token(&f.entra, ACCESS_TOKEN).await;
    mount_whoami(&f.dataverse).await;
    mount_metadata(&f.dataverse, 300).await;
    let run = f.cli(&["check", "--live", "--json"]).await;
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} / {}", run.stdout, run.stderr);
    });
    let email = v["organizations"][0]["email"].clone();
    assert_eq!(email["transport"], "smtp");
    (run.code, run.stdout, email)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_live_logs_in_to_the_smtp_server_or_says_why_not() {
    let smtp = SmtpServer::with_login(USER, PASSWORD).await;
    for (password, ok) in [(PASSWORD, true), ("wrong-password", false)] {
        let (code, stdout, email) = check_live(email_section(&smtp.url(), password)).await;
        if ok {
            assert_eq!(code, Some(0), "{stdout}");
            assert_eq!(email["live"]["status"], "checked", "{email}");
            assert!(
                email["live"]["detail"].as_str().unwrap().contains("AUTH"),
                "{email}"
            );
        } else {
            assert_eq!(code, Some(1), "{stdout}");
            assert_eq!(email["live"]["status"], "failed", "{email}");
            let error = email["live"]["error"].as_str().unwrap();
            assert!(error.contains("535"), "the server's answer: {error}");
            assert!(!stdout.contains("wrong-password"), "{stdout}");
        }
    }
    assert!(smtp.received().is_empty(), "check sends no mail");
    assert!(smtp.connections() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_live_starts_tls_with_the_company_ca_before_it_logs_in() {
    let smtp = SmtpServer::with_tls(SmtpTls::StartTls, USER, PASSWORD).await;
    let ca = format!("smtp_ca_file = \"{}\"", test_ca_file().display());
    for (extra, ok) in [(ca.as_str(), true), ("", false)] {
        let (code, stdout, email) =
            check_live(email_section_with(&smtp.url(), PASSWORD, extra)).await;
        if ok {
            assert_eq!(code, Some(0), "{stdout}");
            assert_eq!(email["live"]["status"], "checked", "{email}");
        } else {
            // Without the company's CA the certificate is not trusted.
            assert_eq!(code, Some(1), "{stdout}");
            assert_eq!(email["live"]["status"], "failed", "{email}");
            let error = email["live"]["error"].as_str().unwrap();
            assert!(error.contains("certificate"), "{error}");
        }
    }
    assert_eq!(smtp.auth_in_clear(), 0, "the login only ever went over TLS");
    assert!(smtp.connections() >= 2);
}
