//! Bad and odd requests, table-driven: each gets its documented status and
//! message; nothing invalid is stored; the valid-but-odd ones are stored
//! and mapped as documented (README "HTTP interface", "Mapping files");
//! the process keeps answering throughout.

use serde_json::{Value, json};

use leadbridge::store::DeliveryStatus;

use crate::common::*;

/// What a request must come to.
enum Expect {
    /// Refused with this status, `error` code and a message containing this.
    Refused(u16, &'static str, &'static str),
    /// Accepted (202), then delivered; the created record must pass this.
    Stored(fn(&Value)),
}

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        body: body.into(),
        expect,
    }
}

/// A lead whose `UserDetails` are `user` (merged into a plain person).
fn lead_with(user: Value, extra: Value) -> Vec<u8> {
    let mut details = json!({"FirstName": "Ann", "LastName": "Lee", "Email": "ann@contoso.com"});
    if let (Some(d), Some(u)) = (details.as_object_mut(), user.as_object()) {
        for (k, v) in u {
            d.insert(k.clone(), v.clone());
        }
    }
    let mut doc = json!({"OfferTitle": "Contoso CRM", "LeadSource": "AzureMarketplace", "UserDetails": details});
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

fn utf16le(s: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    out.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

fn cases() -> Vec<Case> {
    use Expect::{Refused, Stored};
    // Microsoft's sample, made a new document each time it is used.
    let sample = || {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        sample_2020()
            .replace("Test run through Power Automate", &format!("Sample {n}"))
            .into_bytes()
    };
    let long_email = format!("{}@contoso.example.com", "a".repeat(102));
    assert_eq!(long_email.len(), 122);
    let deep = format!(
        "{{\"OfferTitle\":\"x\",\"UserDetails\":{{}},\"Extra\":{}1{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    vec![
        // --- Not JSON, or not UTF-8 JSON.
        case(
            "truncated JSON",
            &b"{\"OfferTitle\": "[..],
            Refused(400, "invalid_json", "EOF"),
        ),
        case(
            "garbage",
            &b"hello"[..],
            Refused(400, "invalid_json", "expected"),
        ),
        case("empty body", &b""[..], Refused(400, "invalid_json", "EOF")),
        case(
            "trailing garbage",
            [sample().as_slice(), b" xyz"].concat(),
            Refused(400, "invalid_json", "trailing"),
        ),
        case(
            "a comment",
            &b"{/* c */\"OfferTitle\":\"x\",\"UserDetails\":{}}"[..],
            Refused(400, "invalid_json", "line 1"),
        ),
        case(
            "NaN",
            &b"{\"OfferTitle\":NaN,\"UserDetails\":{}}"[..],
            Refused(400, "invalid_json", "expected"),
        ),
        case(
            "number out of range",
            &b"{\"OfferTitle\":\"x\",\"UserDetails\":{\"Phone\":1e400}}"[..],
            Refused(400, "invalid_json", "out of range"),
        ),
        case(
            "UTF-16 with BOM",
            utf16le(sample_2020(), true),
            Refused(400, "invalid_json", "UTF-16"),
        ),
        case(
            "UTF-16 without BOM",
            utf16le(sample_2020(), false),
            Refused(400, "invalid_json", "UTF-16"),
        ),
        case(
            "invalid UTF-8 in a string",
            &b"{\"OfferTitle\":\"\xff\xfe\",\"UserDetails\":{}}"[..],
            Refused(400, "invalid_json", "unicode"),
        ),
        case(
            "lone surrogate escape",
            &br#"{"OfferTitle":"\ud800","UserDetails":{}}"#[..],
            Refused(400, "invalid_json", "hex escape"),
        ),
        case(
            "10,000-deep nesting",
            deep,
            Refused(400, "invalid_json", "recursion limit"),
        ),
        // --- JSON, not a lead.
        case(
            "top-level array",
            &b"[1,2]"[..],
            Refused(400, "invalid_lead", "JSON object, got an array"),
        ),
        case(
            "top-level string",
            &b"\"a lead\""[..],
            Refused(400, "invalid_lead", "got a string"),
        ),
        case(
            "top-level number",
            &b"42"[..],
            Refused(400, "invalid_lead", "got a number"),
        ),
        case(
            "top-level null",
            &b"null"[..],
            Refused(400, "invalid_lead", "got null"),
        ),
        case(
            "empty object",
            &b"{}"[..],
            Refused(400, "invalid_lead", "UserDetails is missing"),
        ),
        case(
            "no UserDetails",
            &br#"{"OfferTitle":"x","LeadSource":"AzureMarketplace"}"#[..],
            Refused(400, "invalid_lead", "UserDetails is missing"),
        ),
        case(
            "UserDetails null",
            &br#"{"OfferTitle":"x","UserDetails":null}"#[..],
            Refused(400, "invalid_lead", "got null"),
        ),
        case(
            "UserDetails a string",
            &br#"{"OfferTitle":"x","UserDetails":"Ann"}"#[..],
            Refused(400, "invalid_lead", "UserDetails must be an object"),
        ),
        case(
            "only blanks",
            &br#"{"OfferTitle":"  ","UserDetails":{"Email":""}}"#[..],
            Refused(400, "invalid_lead", "no usable field"),
        ),
        case(
            "an object where text belongs",
            lead_with(json!({"FirstName": {"a": 1}}), json!({})),
            Refused(
                400,
                "invalid_lead",
                "UserDetails.FirstName must be a string",
            ),
        ),
        case(
            "an array where text belongs",
            lead_with(json!({}), json!({"OfferTitle": ["x"]})),
            Refused(400, "invalid_lead", "OfferTitle must be a string"),
        ),
        // --- Not sent as JSON.
        Case {
            name: "form-encoded",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"OfferTitle=x&Email=a%40b.c".to_vec(),
            expect: Refused(415, "unsupported_media_type", "not JSON"),
        },
        Case {
            name: "text/plain",
            content_type: Some("text/plain"),
            body: sample(),
            expect: Refused(415, "unsupported_media_type", "not JSON"),
        },
        Case {
            name: "multipart",
            content_type: Some("multipart/form-data; boundary=x"),
            body: sample(),
            expect: Refused(415, "unsupported_media_type", "not JSON"),
        },
        case(
            "5 MB body",
            vec![b' '; 5 * 1024 * 1024],
            Refused(413, "payload_too_large", "larger than"),
        ),
        // --- Valid, if odd: stored and mapped as documented.
        Case {
            name: "no Content-Type",
            content_type: None,
            body: sample(),
            expect: Stored(|r| assert_eq!(r["emailaddress1"], "someone@contoso.com")),
        },
        Case {
            name: "charset and upper case",
            content_type: Some("APPLICATION/JSON; charset=UTF-8"),
            body: sample(),
            expect: Stored(|r| assert_eq!(r["lastname"], "One")),
        },
        Case {
            name: "a +json media type",
            content_type: Some("application/vnd.marketplace.lead+json"),
            body: sample(),
            expect: Stored(|r| assert_eq!(r["firstname"], "Some")),
        },
        case(
            "UTF-8 byte-order mark",
            [&b"\xEF\xBB\xBF"[..], sample().as_slice()].concat(),
            Stored(|r| assert_eq!(r["companyname"], "Contoso")),
        ),
        case(
            "numbers instead of strings",
            lead_with(json!({"Phone": 16175555555u64, "Company": 42}), json!({})),
            Stored(|r| {
                assert_eq!(r["telephone1"], "16175555555");
                assert_eq!(r["companyname"], "42");
            }),
        ),
        case(
            "a boolean instead of a string",
            lead_with(json!({"Title": true}), json!({})),
            Stored(|r| assert_eq!(r["jobtitle"], "true")),
        ),
        case(
            "nulls instead of strings",
            lead_with(json!({"Company": null, "Title": null}), json!({})),
            Stored(|r| {
                assert!(r.get("companyname").is_none(), "{r}");
                assert!(r.get("jobtitle").is_none(), "{r}");
            }),
        ),
        case(
            "duplicate keys: the last one",
            &br#"{"OfferTitle":"first","OfferTitle":"second","UserDetails":{"LastName":"Lee"}}"#[..],
            Stored(|r| assert_eq!(r["subject"], "second")),
        ),
        case(
            "key case ignored",
            &br#"{"offertitle":"x","userdetails":{"EMAIL":"ann@contoso.com","lastName":"Lee"}}"#[..],
            Stored(|r| {
                assert_eq!(r["emailaddress1"], "ann@contoso.com");
                assert_eq!(r["lastname"], "Lee");
            }),
        ),
        case(
            "CR/LF in single-line fields",
            lead_with(
                json!({"Company": "Contoso\r\nLtd", "Title": "Chief\nOfficer\u{0}"}),
                json!({"Description": "line one\r\nline two"}),
            ),
            Stored(|r| {
                assert_eq!(r["companyname"], "Contoso Ltd");
                assert_eq!(r["jobtitle"], "Chief Officer ");
                assert_eq!(
                    r["description"], "line one\r\nline two",
                    "description is multi-line"
                );
            }),
        ),
        case(
            "HTML in a field",
            lead_with(json!({"FirstName": "<script>alert(1)</script>"}), json!({})),
            Stored(|r| {
                assert_eq!(
                    r["firstname"], "<script>alert(1)</script>",
                    "text, sent as text"
                )
            }),
        ),
        case(
            "a very long string",
            lead_with(json!({}), json!({"OfferTitle": "x".repeat(3000)})),
            Stored(|r| {
                assert_eq!(
                    r["subject"].as_str().map(str::len),
                    Some(3000),
                    "cut only where the column's MaxLength is known"
                )
            }),
        ),
        case(
            "emoji name",
            lead_with(json!({"FirstName": "😀".repeat(25)}), json!({})),
            Stored(|r| assert_eq!(r["firstname"], "😀".repeat(25))),
        ),
        case(
            "CJK name",
            lead_with(json!({"FirstName": "太郎", "LastName": "山田"}), json!({})),
            Stored(|r| {
                assert_eq!(r["firstname"], "太郎");
                assert_eq!(r["lastname"], "山田");
            }),
        ),
        case(
            "a 122-character e-mail",
            lead_with(
                json!({"Email": long_email}),
                json!({"Description": "Interested."}),
            ),
            Stored(|r| {
                assert!(r.get("emailaddress1").is_none(), "never a cut address: {r}");
                let d = r["description"].as_str().unwrap_or_default();
                assert!(d.starts_with("Interested.\n\nE-mail address as received, kept out of emailaddress1 (122 characters, the column holds 100): "), "{d}");
                assert!(d.ends_with(".example.com"), "the whole address: {d}");
            }),
        ),
        case(
            "not an e-mail address",
            lead_with(json!({"Email": "ann at contoso"}), json!({})),
            Stored(|r| {
                assert!(r.get("emailaddress1").is_none(), "{r}");
                assert!(
                    r["description"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("(not a valid address): ann at contoso")
                );
            }),
        ),
        case(
            "spaces around the e-mail",
            lead_with(json!({"Email": "  ann@contoso.com  "}), json!({})),
            Stored(|r| assert_eq!(r["emailaddress1"], "ann@contoso.com")),
        ),
        case(
            "unknown fields kept",
            lead_with(json!({"Region": "EMEA"}), json!({"CampaignId": "c-1"})),
            Stored(|r| assert_eq!(r["lastname"], "Lee")),
        ),
        case(
            "every personal field withheld",
            &br#"{"OfferTitle":"Contoso CRM","UserDetails":{}}"#[..],
            Stored(|r| {
                assert_eq!(r["subject"], "Contoso CRM");
                assert!(r.get("lastname").is_none());
            }),
        ),
    ]
}

#[tokio::test]
async fn bad_and_odd_requests_get_their_documented_answers() {
    let t = TestApp::spawn_with(TestConfig {
        max_body_bytes: 65536,
        ..TestConfig::default()
    })
    .await;
    mount_token(&t.entra, "token-1").await;
    mount_created(&t.dataverse).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut stored = Vec::new();
    for c in cases {
        let mut req = t.http.post(t.lead_url("contoso", SECRET)).body(c.body);
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let status = r.status().as_u16();
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: a JSON answer: {e}", c.name));
        match c.expect {
            Expect::Refused(want, error, message) => {
                let leads_before = t.count("leads").await;
                assert_eq!(
                    (status, body["error"].as_str()),
                    (want, Some(error)),
                    "{}: {body}",
                    c.name
                );
                let m = body["message"].as_str().unwrap_or_default();
                assert!(
                    m.contains(message),
                    "{}: message {m:?} should mention {message:?}",
                    c.name
                );
                assert_eq!(
                    t.count("leads").await,
                    leads_before,
                    "{}: nothing stored",
                    c.name
                );
            }
            Expect::Stored(check) => {
                assert_eq!(status, 202, "{}: {body}", c.name);
                let id = body["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}: an id: {body}", c.name));
                stored.push((c.name, id, check));
            }
        }
    }
    assert_eq!(
        t.count("leads").await,
        stored.len() as i64,
        "only the valid ones are stored"
    );
    t.deliver_due().await;
    for (name, id, check) in stored {
        let d = t.delivery_in(id, DeliveryStatus::Delivered).await;
        let record = t.sent_record(d.record_id).await;
        // Named in the output of a failing check below.
        eprintln!("checking the record of: {name}");
        check(&record);
    }
    // Still answering.
    assert_eq!(t.get_public("/healthz").await.status(), 200);
}
