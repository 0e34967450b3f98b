//! Email notification per lead, by a real SMTP server on loopback and by a
//! Microsoft Graph fake; and the operators' alerts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadbridge::store::{DeliveryStatus, DeliveryView, Destination};
use mail_parser::MimeHeaders;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);
const SMTP_USER: &str = "leadbridge";
const SMTP_PASSWORD: &str = "smtp-password-do-not-log";

/// `[organizations.contoso.email]` by SMTP to `smtp_url`, with login.
fn smtp_section(smtp_url: &str, extra: &str) -> String {
    format!(
        r#"
[organizations.contoso.email]
to = ["sales@contoso.com", "Sales Two <sales2@contoso.com>"]
cc = ["crm@contoso.com"]
from = "Contoso Leads <leads@contoso.com>"
smtp_url = "{smtp_url}"
smtp_username = "{SMTP_USER}"
smtp_password = "{SMTP_PASSWORD}"
smtp_timeout = "2s"
{extra}
"#
    )
}

async fn app_mailing_to(smtp_url: &str, extra: &str) -> TestApp {
    TestApp::spawn_with(TestConfig {
        extra_toml: smtp_section(smtp_url, extra),
        ..TestConfig::retry_at_once()
    })
    .await
}

fn of(ds: &[DeliveryView], dest: Destination) -> DeliveryView {
    ds.iter()
        .find(|d| d.destination == dest)
        .cloned()
        .unwrap_or_else(|| panic!("no {dest} delivery in {ds:#?}"))
}

fn text_of(m: &mail_parser::Message<'_>) -> String {
    m.body_text(0).expect("a text/plain part").into_owned()
}

fn html_of(m: &mail_parser::Message<'_>) -> String {
    m.body_html(0).expect("a text/html part").into_owned()
}

#[tokio::test]
async fn each_lead_is_mailed_with_both_parts_beside_its_dynamics_record() {
    let smtp = SmtpServer::with_login(SMTP_USER, SMTP_PASSWORD).await;
    let t = app_mailing_to(&smtp.url(), "").await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;

    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 2, "one delivery per destination");
    let ds = t.deliveries(id).await;
    assert_eq!(ds.len(), 2, "{ds:#?}");
    assert_eq!(
        of(&ds, Destination::Dataverse).status,
        DeliveryStatus::Delivered
    );
    let mail = of(&ds, Destination::Email);
    assert_eq!(mail.status, DeliveryStatus::Delivered, "{mail:#?}");

    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.authenticated_as.as_deref(), Some(SMTP_USER));
    assert_eq!(r.mail_from, "leads@contoso.com");
    assert_eq!(
        r.rcpt_to,
        ["sales@contoso.com", "sales2@contoso.com", "crm@contoso.com"],
        "the envelope is To and Cc, nothing else"
    );
    let m = r.parsed();
    let lead: Value = serde_json::from_str(sample_2020()).unwrap();
    let user = &lead["UserDetails"];
    let subject = m.subject().expect("subject");
    assert!(
        subject.contains(lead["LeadSource"].as_str().unwrap()),
        "LeadSource in the subject: {subject}"
    );
    assert_eq!(
        m.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("leads@contoso.com")
    );
    let to: Vec<&str> = m
        .to()
        .map(|a| a.iter().filter_map(|a| a.address()).collect())
        .unwrap_or_default();
    assert_eq!(to, ["sales@contoso.com", "sales2@contoso.com"]);
    assert_eq!(
        mail.remote_ref
            .as_deref()
            .map(|r| r.trim_matches(['<', '>'])),
        m.message_id(),
        "the delivery records the Message-ID"
    );
    let (text, html) = (text_of(&m), html_of(&m));
    for field in ["LastName", "FirstName", "Email", "Company"] {
        let value = user[field].as_str().unwrap();
        assert!(text.contains(value), "{field} in the text part:\n{text}");
        assert!(html.contains(value), "{field} in the HTML part:\n{html}");
    }
    let content_type = m.content_type().expect("content type");
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("alternative"));

    // The next lead's mail goes over the same connection.
    t.accept_lead(&next_lead()).await;
    assert_eq!(t.deliver_due().await, 2);
    assert_eq!(smtp.wait_for(2, WAIT).await.len(), 2);
    assert_eq!(smtp.connections(), 1, "the pooled connection is reused");

    // The operator's view and the metrics know the second destination.
    let list = t.cli(&["deliveries", "list", "--json"]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let rows: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert!(
        rows.iter()
            .any(|r| r["destination"] == "email" && r["status"] == "delivered"),
        "{rows:#?}"
    );
    let metrics = t.get_admin("/metrics").await.text().await.unwrap();
    // Other tests of this process count into the same registry: at least ours.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leadbridge_deliveries_total")
                && l.contains("destination=\"email\"")
                && l.contains("outcome=\"delivered\"")
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_lead_value_adds_a_header_or_a_recipient_and_html_is_escaped() {
    let smtp = SmtpServer::with_login(SMTP_USER, SMTP_PASSWORD).await;
    let t = app_mailing_to(
        &smtp.url(),
        r#"subject = "Lead from {UserDetails.Company}""#,
    )
    .await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let lead = json!({
        "UserDetails": {"FirstName": "Eve", "LastName": "Mallory", "Email": "eve@example.com",
                        "Company": "Contoso\r\nBcc: x@evil.test\r\nX-Injected: yes"},
        "LeadSource": "AzureMarketplace",
        "Description": "<b>bold</b><script>alert(1)</script>\r\n.\r\nMAIL FROM:<x@evil.test>",
    });
    t.accept_lead(&lead.to_string()).await;
    t.deliver_due().await;
    let got = smtp.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(
        r.rcpt_to,
        ["sales@contoso.com", "sales2@contoso.com", "crm@contoso.com"]
    );
    let headers = r.raw_headers();
    for forbidden in ["Bcc:", "X-Injected"] {
        assert!(
            !headers.lines().any(|l| l
                .to_ascii_lowercase()
                .starts_with(&forbidden.to_ascii_lowercase())),
            "{forbidden} must not become a header:\n{headers}"
        );
    }
    let m = r.parsed();
    assert!(m.header("Bcc").is_none());
    assert_eq!(
        m.subject(),
        Some("Lead from Contoso Bcc: x@evil.test X-Injected: yes"),
        "one line"
    );
    let html = html_of(&m);
    assert!(
        html.contains("&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert_eq!(
        smtp.received().len(),
        1,
        "the description's '.' did not end the mail early"
    );
}

#[tokio::test]
async fn a_mail_server_that_is_down_holds_back_only_the_mail() {
    let addr = SmtpServer::free_addr().await;
    let t = app_mailing_to(&format!("smtp://{addr}"), "").await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;

    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 2);
    let ds = t.deliveries(id).await;
    assert_eq!(
        of(&ds, Destination::Dataverse).status,
        DeliveryStatus::Delivered,
        "the record is not held back by the mail"
    );
    let mail = of(&ds, Destination::Email);
    assert_eq!(mail.status, DeliveryStatus::Retrying, "{mail:#?}");
    assert!(
        mail.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("SMTP"),
        "{mail:#?}"
    );
    assert!(
        !mail
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains(SMTP_PASSWORD)
    );

    let smtp = SmtpServer::start_on(addr, Some((SMTP_USER.into(), SMTP_PASSWORD.into()))).await;
    t.deliver_due().await;
    let mail = of(&t.deliveries(id).await, Destination::Email);
    assert_eq!(mail.status, DeliveryStatus::Delivered, "{mail:#?}");
    assert_eq!(smtp.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(t.create_requests().await.len(), 1, "one record, once");
}

/// Graph's `sendMail`: a 429 with Retry-After first, then 202; the time of
/// every call.
struct GraphFake {
    calls: Arc<Mutex<Vec<Instant>>>,
    throttle_first: usize,
}

impl Respond for GraphFake {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        if calls.len() <= self.throttle_first {
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"error": {
                    "code": "ApplicationThrottled",
                    "message": "Application is over its MailboxConcurrency limit."}}))
        } else {
            ResponseTemplate::new(202)
        }
    }
}

#[tokio::test]
async fn graph_sends_as_the_mailbox_with_a_graph_token_and_honours_retry_after() {
    // An email-only organization: no Dynamics url, Graph as transport.
    let t = TestApp::spawn_with(TestConfig {
        extra_toml: format!(
            r#"
[organizations.mailonly]
allow_http = true
endpoint_secrets = ["{SECRET}"]
[organizations.mailonly.auth]
authority_host = "{{entra}}"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
[organizations.mailonly.email]
transport = "graph"
graph_url = "{{dataverse}}"
to = ["sales@contoso.com"]
cc = ["crm@contoso.com"]
from = "leads@contoso.com"
"#
        ),
        // Waits are bounded by backoff_max: room for the Retry-After.
        backoff: ("100ms", "5s"),
        ..TestConfig::default()
    })
    .await;
    mount_token(&t.entra, "graph-token").await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1.0/users/leads@contoso.com/sendMail"))
        .respond_with(GraphFake {
            calls: Arc::clone(&calls),
            throttle_first: 1,
        })
        .mount(&t.dataverse)
        .await;

    let id = t.accept_lead_for("mailonly", sample_2020()).await;
    assert_eq!(t.run_worker_once().await, 1, "email only: one delivery");
    let d = t.delivery(id).await;
    assert_eq!(d.destination, Destination::Email);
    assert_eq!(d.status, DeliveryStatus::Retrying, "{d:#?}");
    assert!(
        d.next_attempt_at >= d.received_at + Duration::from_secs(1),
        "{d:#?}"
    );

    // Retried once Retry-After has passed, and not before.
    let deadline = Instant::now() + WAIT;
    while t.delivery(id).await.status != DeliveryStatus::Delivered {
        assert!(
            Instant::now() < deadline,
            "not delivered: {:#?}",
            t.delivery(id).await
        );
        t.run_worker_once().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one 429, then the mail");
    assert!(
        calls[1] - calls[0] >= Duration::from_secs(1),
        "retried after {:?}, Retry-After was 1 s",
        calls[1] - calls[0]
    );

    let tokens = t.token_requests().await;
    let form = form_fields(&tokens[0].body);
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some(format!("{}/.default", t.dataverse.uri()).as_str()),
        "a token for Graph's scope"
    );
    let sends = requests_to(&t.dataverse, "/v1.0/users/leads@contoso.com/sendMail").await;
    let last = sends.last().unwrap();
    assert_eq!(
        last.headers.get("authorization").unwrap().to_str().unwrap(),
        "Bearer graph-token"
    );
    let body: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["saveToSentItems"], false);
    let msg = &body["message"];
    assert!(
        msg["subject"]
            .as_str()
            .unwrap()
            .starts_with("New lead from "),
        "{msg}"
    );
    assert_eq!(msg["body"]["contentType"], "HTML");
    assert!(msg["body"]["content"].as_str().unwrap().contains("<table>"));
    assert_eq!(
        msg["toRecipients"],
        json!([{"emailAddress": {"address": "sales@contoso.com"}}])
    );
    assert_eq!(
        msg["ccRecipients"],
        json!([{"emailAddress": {"address": "crm@contoso.com"}}])
    );
    assert!(
        t.create_requests().await.is_empty(),
        "no Dynamics destination"
    );
}

#[tokio::test]
async fn one_dead_letter_sends_one_alert_and_ten_send_one_batch() {
    let smtp = SmtpServer::with_login(SMTP_USER, SMTP_PASSWORD).await;
    let t = TestApp::spawn_with(TestConfig {
        extra_toml: smtp_section(&smtp.url(), r#"alert_to = ["ops@contoso.com"]"#),
        // All ten dead letters in one worker pass, well inside one window.
        delivery_toml: "alert_window = \"1s\"".into(),
        concurrency: 16,
        ..TestConfig::retry_at_once()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    on_lead_create()
        .respond_with(dataverse_error(
            400,
            "0x80040203",
            "Invalid value for attribute companyname",
        ))
        .mount(&t.dataverse)
        .await;
    let alerts = |all: Vec<Received>| -> Vec<Received> {
        all.into_iter()
            .filter(|r| r.rcpt_to == ["ops@contoso.com"])
            .collect()
    };

    let first = t.accept_lead(sample_2020()).await;
    t.deliver_due().await;
    let d = of(&t.deliveries(first).await, Destination::Dataverse);
    assert_eq!(d.status, DeliveryStatus::Dead, "{d:#?}");
    // The lead's own notification, then the alert.
    let got = alerts(smtp.wait_for(2, WAIT).await);
    assert_eq!(got.len(), 1, "one alert");
    let m = got[0].parsed();
    assert_eq!(
        m.subject(),
        Some("[leadbridge] contoso: 1 lead dead-lettered")
    );
    let text = text_of(&m);
    assert!(text.contains(&first.to_string()), "which lead:\n{text}");
    assert!(text.contains(&d.id.to_string()), "which delivery:\n{text}");
    assert!(
        text.contains("Invalid value for attribute"),
        "the error:\n{text}"
    );
    assert!(text.contains("deliveries retry"), "a hint:\n{text}");
    let lead: Value = serde_json::from_str(sample_2020()).unwrap();
    for pii in ["Email", "LastName", "Phone"] {
        let v = lead["UserDetails"][pii].as_str().unwrap();
        assert!(
            !String::from_utf8_lossy(&got[0].data).contains(v),
            "{pii} in an alert"
        );
    }
    // Nothing more for it after its window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alerts(smtp.received()).len(), 1, "exactly one alert");

    for n in 0..10 {
        t.accept_lead(&lead_n(n)).await;
    }
    t.deliver_due().await;
    // Eleven notifications, then the second alert.
    let got = alerts(smtp.wait_for(1 + 1 + 10 + 1, WAIT).await);
    assert_eq!(got.len(), 2, "ten dead letters, one batched alert");
    let m = got[1].parsed();
    assert_eq!(
        m.subject(),
        Some("[leadbridge] contoso: 10 leads dead-lettered")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alerts(smtp.received()).len(), 2);
}

#[tokio::test]
async fn a_refused_smtp_login_blocks_the_mail_queue_not_the_records() {
    let smtp = SmtpServer::with_login(SMTP_USER, "another-password").await;
    let t = app_mailing_to(&smtp.url(), "").await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let id = t.accept_lead(sample_2020()).await;
    t.deliver_due().await;
    let ds = t.deliveries(id).await;
    assert_eq!(
        of(&ds, Destination::Dataverse).status,
        DeliveryStatus::Delivered
    );
    let mail = of(&ds, Destination::Email);
    assert_eq!(
        mail.status,
        DeliveryStatus::Retrying,
        "waits, not dead: {mail:#?}"
    );
    assert!(mail.blocked, "{mail:#?}");
    let error = mail.last_error.unwrap_or_default();
    assert!(
        error.contains("organization blocked") && error.contains("535"),
        "{error}"
    );
    let blocks = t.running_store().blocks().await.unwrap();
    assert_eq!(blocks.len(), 1, "{blocks:#?}");
    assert_eq!(blocks[0].destination, Destination::Email);
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn a_dry_run_organization_logs_the_mail_and_sends_nothing() {
    let smtp = SmtpServer::with_login(SMTP_USER, SMTP_PASSWORD).await;
    let t = TestApp::spawn_with(TestConfig {
        dry_run: true,
        extra_toml: smtp_section(&smtp.url(), ""),
        ..Default::default()
    })
    .await;
    let id = t.accept_lead(sample_2020()).await;
    assert_eq!(t.deliver_due().await, 2);
    let mail = of(&t.deliveries(id).await, Destination::Email);
    assert_eq!(mail.status, DeliveryStatus::DryRun, "{mail:#?}");
    assert!(
        mail.remote_ref
            .as_deref()
            .unwrap_or_default()
            .starts_with("dry-run:email:<"),
        "{mail:#?}"
    );
    assert!(smtp.received().is_empty());
    assert_eq!(smtp.connections(), 0, "nothing connects in a dry run");
}
