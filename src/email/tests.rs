use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::ids::{LeadId, RecordId};
use crate::lead::{Lead, OrgName};

fn recipients() -> Recipients {
    Recipients {
        from: Mailbox {
            name: Some("Contoso Leads".into()),
            address: "leads@contoso.com".into(),
        },
        to: vec![Mailbox {
            name: None,
            address: "sales@contoso.com".into(),
        }],
        cc: Vec::new(),
    }
}

fn compose_for(doc: serde_json::Value, templates: &Templates) -> Message {
    let lead = Lead::parse(&doc).unwrap();
    let org = OrgName::parse("contoso").unwrap();
    let ctx = RenderContext {
        lead: &lead,
        lead_id: LeadId::generate(),
        org: &org,
        received_at: OffsetDateTime::now_utc(),
    };
    compose(templates, &recipients(), &ctx, RecordId::generate())
}

fn sample() -> serde_json::Value {
    json!({
        "UserDetails": {"FirstName": "Some", "LastName": "One", "Email": "someone@contoso.com",
                        "Phone": "16175555555", "Country": "USA", "Company": "Contoso", "Title": "Esquire"},
        "LeadSource": "AzureMarketplace|INS|contoso.offer1",
        "ActionCode": "INS",
        "OfferTitle": "Test Microsoft",
        "Description": "line one\nline two",
        "CustomField": "kept"
    })
}

#[test]
fn the_default_layout_lists_every_field_and_the_parsed_source() {
    let m = compose_for(sample(), &Templates::default());
    assert_eq!(
        m.subject,
        "New lead from AzureMarketplace|INS|contoso.offer1: Some One, Contoso"
    );
    for needle in [
        "UserDetails.FirstName",
        "Some",
        "UserDetails.Email",
        "someone@contoso.com",
        "CustomField",
        "kept",
        "Offer id",
        "contoso.offer1",
        "Action",
        "INS",
        "Test Microsoft",
    ] {
        assert!(m.text.contains(needle), "text lacks {needle}:\n{}", m.text);
        assert!(m.html.contains(needle), "html lacks {needle}:\n{}", m.html);
    }
    assert!(m.html.contains("line one<br>\nline two"), "{}", m.html);
    assert!(m.message_id.ends_with("@contoso.com>"), "{}", m.message_id);
}

#[test]
fn a_test_lead_is_labelled_in_subject_and_bodies() {
    let mut doc = sample();
    doc["LeadSource"] = json!("MSFT_TEST");
    let m = compose_for(doc, &Templates::default());
    assert!(m.subject.starts_with("[TEST LEAD] "), "{}", m.subject);
    assert!(m.text.starts_with("[TEST LEAD]"), "{}", m.text);
    assert!(m.html.contains("[TEST LEAD]"), "{}", m.html);
}

#[test]
fn no_value_can_break_the_subject_line() {
    let mut doc = sample();
    doc["UserDetails"]["Company"] =
        json!("Evil\r\nBcc: x@evil.test\r\n\r\nbody =?utf-8?q?Spoof?= \u{2028}end");
    let m = compose_for(doc, &Templates::default());
    assert!(
        !m.subject.contains(['\r', '\n', '\u{2028}']),
        "{:?}",
        m.subject
    );
    assert!(!m.subject.contains("=?"), "{:?}", m.subject);
    assert!(
        m.subject.contains("Evil Bcc: x@evil.test body"),
        "{:?}",
        m.subject
    );

    doc = sample();
    doc["UserDetails"]["Company"] = json!("x".repeat(5000));
    let m = compose_for(doc, &Templates::default());
    assert_eq!(m.subject.chars().count(), MAX_SUBJECT_CHARS);
    assert!(m.subject.ends_with('…'));
}

#[test]
fn templates_fill_in_lead_values_and_html_escapes_them() {
    let templates = Templates {
        subject: Some(TextTemplate::parse("Lead: {UserDetails.Company} via {$source}").unwrap()),
        text: Some(TextTemplate::parse("Hello {UserDetails.FirstName}").unwrap()),
        html: Some(TextTemplate::parse("<p>{Description}</p>").unwrap()),
    };
    let mut doc = sample();
    doc["Description"] = json!("<script>alert('x')</script> & \"more\"");
    let m = compose_for(doc, &templates);
    assert_eq!(m.subject, "Lead: Contoso via AzureMarketplace");
    assert_eq!(m.text, "Hello Some");
    assert_eq!(
        m.html,
        "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;</p>"
    );
}

#[test]
fn one_line_collapses_and_cuts() {
    assert_eq!(one_line("  a \t\r\n b  ", 10), "a b");
    assert_eq!(one_line("abcdefghij", 5), "abcd…");
    assert_eq!(one_line("", 5), "");
}
