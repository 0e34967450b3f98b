//! Mail over TLS, as a real relay wants it: STARTTLS on `smtp://`, TLS from
//! the first byte on `smtps://`, the company's own CA trusted through
//! `smtp_ca_file`. The organizations here do not set `allow_http`, so a
//! password goes over TLS or not at all.

use std::path::Path;

use leadbridge::store::{DeliveryStatus, Destination};

use crate::common::*;

const USER: &str = "relay-user";
const PASSWORD: &str = "relay-password-do-not-log";

/// An email-only organization mailing through `smtp_url` with a login;
/// `ca_file` is trusted beside the system's roots.
fn relay_org(org: &str, smtp_url: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file
        .map(|p| format!("smtp_ca_file = \"{}\"", p.display()))
        .unwrap_or_default();
    format!(
        r#"
[organizations.{org}]
endpoint_secrets = ["{SECRET}"]
[organizations.{org}.email]
to = ["sales@contoso.com"]
from = "leads@contoso.com"
smtp_url = "{smtp_url}"
smtp_username = "{USER}"
smtp_password = "{PASSWORD}"
smtp_timeout = "5s"
{ca}
"#
    )
}

#[tokio::test]
async fn starttls_and_smtps_carry_the_login_and_the_mail_encrypted() {
    let starttls = SmtpServer::with_tls(SmtpTls::StartTls, USER, PASSWORD).await;
    let smtps = SmtpServer::with_tls(SmtpTls::Wrapper, USER, PASSWORD).await;
    assert!(smtps.url().starts_with("smtps://"), "{}", smtps.url());
    let ca = test_ca_file();
    let t = TestApp::spawn_with(TestConfig {
        extra_toml: relay_org("relay", &starttls.url(), Some(&ca))
            + &relay_org("wrapped", &smtps.url(), Some(&ca)),
        ..TestConfig::retry_at_once()
    })
    .await;

    let by_starttls = t.accept_lead_for("relay", sample_2020()).await;
    let by_smtps = t.accept_lead_for("wrapped", sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 2);
    for (id, server) in [(by_starttls, &starttls), (by_smtps, &smtps)] {
        let d = t.delivery(id).await;
        assert_eq!(d.destination, Destination::Email);
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:#?}");
        let got = server.wait_for(1, std::time::Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].tls, "the message came over TLS");
        assert_eq!(got[0].authenticated_as.as_deref(), Some(USER));
        assert_eq!(got[0].rcpt_to, ["sales@contoso.com"]);
        assert_eq!(server.auth_in_clear(), 0, "no AUTH before TLS");
    }
}

#[tokio::test]
async fn a_password_is_never_sent_unencrypted_nor_to_an_untrusted_certificate() {
    // A relay that does not offer STARTTLS, and one whose certificate no
    // trusted CA signed (no smtp_ca_file): neither gets the login.
    let plain = SmtpServer::with_login(USER, PASSWORD).await;
    let untrusted = SmtpServer::with_tls(SmtpTls::StartTls, USER, PASSWORD).await;
    let t = TestApp::spawn_with(TestConfig {
        extra_toml: relay_org("plain", &plain.url(), None)
            + &relay_org("untrusted", &untrusted.url(), None),
        ..TestConfig::retry_at_once()
    })
    .await;

    let to_plain = t.accept_lead_for("plain", sample_2020()).await;
    let to_untrusted = t.accept_lead_for("untrusted", sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 2);
    for (id, server, why) in [
        (to_plain, &plain, "STARTTLS"),
        (to_untrusted, &untrusted, "certificate"),
    ] {
        let d = t.delivery(id).await;
        assert_ne!(d.status, DeliveryStatus::Delivered, "{d:#?}");
        assert_ne!(
            d.status,
            DeliveryStatus::Dead,
            "kept for when TLS works: {d:#?}"
        );
        assert!(d.blocked, "the organization's mail waits: {d:#?}");
        let error = d.last_error.clone().unwrap_or_default();
        assert!(
            error
                .to_ascii_lowercase()
                .contains(&why.to_ascii_lowercase()),
            "the error names {why}: {error}"
        );
        assert!(!error.contains(PASSWORD), "{error}");
        assert!(server.received().is_empty(), "no mail went out");
        assert_eq!(server.auth_in_clear(), 0, "the password stayed home");
    }
}
