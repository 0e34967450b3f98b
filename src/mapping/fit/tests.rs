use serde_json::{Map, Value, json};

use super::*;
use crate::mapping::columns::tests::{lead_metadata, mapping};

fn body(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

#[test]
fn cuts_to_max_length_keeping_the_mappings_ellipsis_choice() {
    let m = mapping(
        "fields:\n  subject: {from: OfferTitle, transform: [{truncate: {max: 400, ellipsis: true}}]}\n  firstname: UserDetails.FirstName\n  description: Description\n",
    );
    let mut body = Map::new();
    body.insert("subject".into(), json!("s".repeat(350)));
    body.insert("firstname".into(), json!("é".repeat(60)));
    body.insert("description".into(), json!("short"));
    body.insert(
        "leadid".into(),
        json!("00000000-0000-0000-0000-000000000000"),
    );
    let cuts = m.fit(&mut body, Some(&lead_metadata())).cuts;
    assert_eq!(body["subject"], json!(format!("{}…", "s".repeat(299))));
    assert_eq!(
        body["firstname"],
        json!("é".repeat(50)),
        "plain cut, in characters"
    );
    assert_eq!(body["description"], json!("short"));
    assert_eq!(
        cuts,
        vec![
            Cut {
                column: "subject".into(),
                length: 350,
                max_length: 300,
                ellipsis: true
            },
            Cut {
                column: "firstname".into(),
                length: 60,
                max_length: 50,
                ellipsis: false
            },
        ]
    );
}

#[test]
fn max_length_counts_utf16_units() {
    let m = mapping("fields:\n  firstname: UserDetails.FirstName\n");
    let meta = lead_metadata();
    // 25 emoji are 50 units: exactly firstname's MaxLength of 50.
    let mut body = Map::new();
    body.insert("firstname".into(), json!("😀".repeat(25)));
    assert!(m.fit(&mut body, Some(&meta)).cuts.is_empty());
    assert_eq!(body["firstname"], json!("😀".repeat(25)), "fits as it is");
    body.insert("firstname".into(), json!("😀".repeat(26)));
    let cuts = m.fit(&mut body, Some(&meta)).cuts;
    assert_eq!(body["firstname"], json!("😀".repeat(25)), "cut to 50 units");
    assert_eq!(
        cuts,
        vec![Cut {
            column: "firstname".into(),
            length: 52,
            max_length: 50,
            ellipsis: false
        }]
    );
}

#[test]
fn single_line_columns_get_single_line_text_and_memo_keeps_its_lines() {
    let m = mapping("fields:\n  companyname: UserDetails.Company\n  description: Description\n");
    let mut b = body(&[
        ("companyname", "Contoso\r\nLtd\n\u{7}"),
        ("description", "line one\r\nline two\n\tindented\u{0}"),
    ]);
    let fitted = m.fit(&mut b, Some(&lead_metadata()));
    assert_eq!(b["companyname"], "Contoso Ltd  ");
    assert_eq!(b["description"], "line one\r\nline two\n\tindented ");
    assert_eq!(
        fitted.flattened,
        vec!["companyname".to_owned(), "description".to_owned()]
    );
}

#[test]
fn without_metadata_the_mapping_says_which_columns_take_lines() {
    let m = mapping(
        "fields:\n  jobtitle: UserDetails.Title\n  description: {from: Description, lines: multi}\n  new_notes: {from: Description, lines: single}\n",
    );
    let mut b = body(&[
        ("jobtitle", "Chief\nOfficer"),
        ("description", "a\nb"),
        ("new_notes", "a\nb"),
    ]);
    m.fit(&mut b, None);
    assert_eq!(b["jobtitle"], "Chief Officer", "single by default");
    assert_eq!(b["description"], "a\nb");
    assert_eq!(b["new_notes"], "a b");
}

#[test]
fn an_address_too_long_or_invalid_is_kept_out_of_its_column_and_noted_whole() {
    let m = mapping("fields:\n  emailaddress1: UserDetails.Email\n  description: Description\n");
    let long = format!("{}@contoso.example.com", "a".repeat(100));
    assert_eq!(long.len(), 120);
    for meta in [Some(lead_metadata()), None] {
        let mut b = body(&[("emailaddress1", &long), ("description", "Interested.")]);
        let fitted = m.fit(&mut b, meta.as_ref());
        assert!(b.get("emailaddress1").is_none(), "never a cut address");
        let d = b["description"].as_str().unwrap();
        assert!(d.starts_with("Interested.\n\nE-mail address as received, kept out of emailaddress1 (120 characters, the column holds 100): "), "{d}");
        assert!(d.ends_with(&long), "the whole address: {d}");
        assert_eq!(fitted.moved_emails.len(), 1);
        assert!(
            !fitted.moved_emails[0].reason.contains('@'),
            "no personal data in the reason"
        );
    }
    for bad in [
        "not an address",
        "two@@example.com",
        "a@b",
        "x@-bad.com",
        "a b@example.com",
    ] {
        let mut b = body(&[("emailaddress1", bad)]);
        m.fit(&mut b, Some(&lead_metadata()));
        assert!(b.get("emailaddress1").is_none(), "{bad}");
        assert!(
            b["description"]
                .as_str()
                .unwrap()
                .contains("(not a valid address): "),
            "{bad}: {b:?}"
        );
    }
    let mut b = body(&[("emailaddress1", "someone@contoso.com")]);
    let fitted = m.fit(&mut b, Some(&lead_metadata()));
    assert_eq!(b["emailaddress1"], "someone@contoso.com");
    assert_eq!(fitted, Fitted::default());
}
