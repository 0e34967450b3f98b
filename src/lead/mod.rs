//! The lead as the marketplace sends it, parsed leniently into typed values.
//!
//! Microsoft's schema says "every value is a string" and little else: casing of
//! keys varies between editions, fields are missing, empty or a lone space, and
//! extra properties are allowed. [`Lead::parse`] accepts all of that, keeps the
//! unknown fields, and refuses only what cannot be a lead at all.

mod fingerprint;
mod org;
mod pii;
mod source;

use serde_json::{Map, Value};

pub use fingerprint::fingerprint;
pub use org::{InvalidOrgName, OrgName};
pub use pii::Redactor;
pub use source::{ActionCode, LeadSource};

/// Marker Partner Center puts into the leads it sends on "Validate" and after "Publish".
pub const TEST_MARKER: &str = "MSFT_TEST";

const TOP_LEVEL: [&str; 4] = ["ActionCode", "OfferTitle", "LeadSource", "Description"];
const USER_DETAILS: &str = "UserDetails";
const USER_FIELDS: [&str; 7] = [
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "Country",
    "Company",
    "Title",
];

/// Why a JSON document is not a lead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidLead {
    #[error("the lead must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field {field} must be a string, got {got}")]
    NotAString { field: String, got: &'static str },
    #[error("field UserDetails must be an object, got {0}")]
    UserDetailsNotAnObject(&'static str),
    /// Partner Center always sends the object (its fields may be empty when
    /// Microsoft withholds them); a document without one is something else.
    #[error("field UserDetails is missing: a marketplace lead always has a UserDetails object")]
    NoUserDetails,
    #[error(
        "the lead has no usable field: expected at least one of ActionCode, OfferTitle, LeadSource, \
         Description or UserDetails.{{FirstName, LastName, Email, Phone, Country, Company, Title}} with a value"
    )]
    Empty,
}

/// A parsed marketplace lead.
///
/// `document` is the payload with known keys in their canonical casing, known
/// values trimmed (blank ones dropped) and unknown fields kept as sent; the
/// mapping reads from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    pub action_code: Option<ActionCode>,
    pub offer_title: Option<String>,
    pub lead_source: Option<LeadSource>,
    pub description: Option<String>,
    pub user: UserDetails,
    /// Partner Center's own test lead (Validate button, publish check).
    pub is_test: bool,
    document: Map<String, Value>,
}

/// The person behind the lead. Every field may be missing: Microsoft withholds
/// personal data for some customers (e.g. `.edu`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDetails {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
}

impl Lead {
    /// Parses a lead from JSON text; also returns the document as sent, unknown fields included.
    pub fn parse_json(text: &[u8]) -> Result<(Self, Value), ParseError> {
        let value: Value = serde_json::from_slice(text).map_err(ParseError::Json)?;
        let lead = Lead::parse(&value).map_err(ParseError::Lead)?;
        Ok((lead, value))
    }

    pub fn parse(value: &Value) -> Result<Self, InvalidLead> {
        let obj = value
            .as_object()
            .ok_or_else(|| InvalidLead::NotAnObject(kind(value)))?;

        let mut document = Map::new();
        let mut user_doc = Map::new();
        let mut saw_user_details = false;

        for (key, v) in obj {
            if let Some(canonical) = TOP_LEVEL.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                insert_text(&mut document, canonical, canonical, v)?;
            } else if key.eq_ignore_ascii_case(USER_DETAILS) {
                saw_user_details = true;
                match v {
                    Value::Object(details) => {
                        for (ukey, uv) in details {
                            match USER_FIELDS.iter().find(|k| k.eq_ignore_ascii_case(ukey)) {
                                Some(canonical) => insert_text(
                                    &mut user_doc,
                                    canonical,
                                    &format!("UserDetails.{canonical}"),
                                    uv,
                                )?,
                                None => {
                                    user_doc.entry(ukey.clone()).or_insert_with(|| uv.clone());
                                }
                            }
                        }
                    }
                    other => return Err(InvalidLead::UserDetailsNotAnObject(kind(other))),
                }
            } else {
                document.entry(key.clone()).or_insert_with(|| v.clone());
            }
        }
        if !saw_user_details {
            return Err(InvalidLead::NoUserDetails);
        }
        document.insert(USER_DETAILS.to_owned(), Value::Object(user_doc));

        let top = |k: &str| document.get(k).and_then(Value::as_str).map(str::to_owned);
        let user_field = |k: &str| {
            document
                .get(USER_DETAILS)
                .and_then(|u| u.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let user = UserDetails {
            first_name: user_field("FirstName"),
            last_name: user_field("LastName"),
            email: user_field("Email"),
            phone: user_field("Phone"),
            country: user_field("Country"),
            company: user_field("Company"),
            title: user_field("Title"),
        };
        let lead = Lead {
            action_code: top("ActionCode").map(|s| ActionCode::parse(&s)),
            offer_title: top("OfferTitle"),
            lead_source: top("LeadSource").map(|s| LeadSource::parse(&s)),
            description: top("Description"),
            is_test: contains_test_marker(value),
            user,
            document,
        };
        if lead.is_empty() {
            return Err(InvalidLead::Empty);
        }
        Ok(lead)
    }

    fn is_empty(&self) -> bool {
        let u = &self.user;
        self.action_code.is_none()
            && self.offer_title.is_none()
            && self.lead_source.is_none()
            && self.description.is_none()
            && [
                &u.first_name,
                &u.last_name,
                &u.email,
                &u.phone,
                &u.country,
                &u.company,
                &u.title,
            ]
            .iter()
            .all(|f| f.is_none())
    }

    /// Every value of the document with its dotted path, in document order
    /// (unknown fields too): what a notification lists. Blank strings are
    /// left out, like [`lookup`](Self::lookup) reads them; arrays read as
    /// their JSON text.
    pub fn fields(&self) -> Vec<(String, String)> {
        fn walk(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, String)>) {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    Value::Object(inner) => walk(&path, inner, out),
                    Value::String(s) if s.trim().is_empty() => {}
                    Value::String(s) => out.push((path, s.trim().to_owned())),
                    Value::Null => {}
                    other => out.push((path, other.to_string())),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.document, &mut out);
        out
    }

    /// Looks up a dotted path (`UserDetails.Email`, `SomeExtraField`), ignoring
    /// key case. Numbers and booleans read as their JSON text; blank strings,
    /// objects and arrays read as absent.
    pub fn lookup(&self, path: &str) -> Option<String> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut current = get_ci(&self.document, first)?;
        for part in parts {
            current = get_ci(current.as_object()?, part)?;
        }
        match current {
            Value::String(s) => {
                let t = s.trim();
                (!t.is_empty()).then(|| t.to_owned())
            }
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Either half of what can be wrong with a request body.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    Lead(InvalidLead),
}

fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Inserts a known text field: strings are trimmed, numbers and booleans are
/// taken as their text (a phone number sent as a number is still a phone
/// number), null and blank mean absent. The first non-blank value wins when a
/// sender repeats a key in two casings.
fn insert_text(
    map: &mut Map<String, Value>,
    canonical: &str,
    display: &str,
    v: &Value,
) -> Result<(), InvalidLead> {
    let text = match v {
        Value::Null => return Ok(()),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(InvalidLead::NotAString {
                field: display.to_owned(),
                got: kind(other),
            });
        }
    };
    if !text.is_empty() && !map.contains_key(canonical) {
        map.insert(canonical.to_owned(), Value::String(text));
    }
    Ok(())
}

fn contains_test_marker(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(TEST_MARKER),
        Value::Array(items) => items.iter().any(contains_test_marker),
        Value::Object(map) => map.values().any(contains_test_marker),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The sample lead of Microsoft's 2020+ documentation, verbatim.
pub const SAMPLE_LEAD_2020: &str = r#"{
  "UserDetails": {
    "FirstName": "Some",
    "LastName": "One",
    "Email": "someone@contoso.com",
    "Phone": "16175555555",
    "Country": "USA",
    "Company": "Contoso",
    "Title": "Esquire"
 },
  "LeadSource": "AzureMarketplace",
  "ActionCode": "INS",
  "OfferTitle": "Test Microsoft",
  "Description": "Test run through Power Automate"
}"#;

/// The 2018 edition's lead shape: the same person, no `ActionCode`, no `Description`.
pub const SAMPLE_LEAD_2018: &str = r#"{
  "UserDetails": {
    "FirstName": "Some",
    "LastName": "One",
    "Email": "someone@contoso.com",
    "Phone": "16175555555",
    "Country": "USA",
    "Company": "Contoso",
    "Title": "Esquire"
  },
  "LeadSource": "AzureMarketplace",
  "OfferTitle": "Test Microsoft"
}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_2020_sample() {
        let (lead, _) = Lead::parse_json(SAMPLE_LEAD_2020.as_bytes()).unwrap();
        assert_eq!(lead.action_code, Some(ActionCode::Install));
        assert_eq!(lead.offer_title.as_deref(), Some("Test Microsoft"));
        assert_eq!(lead.user.email.as_deref(), Some("someone@contoso.com"));
        assert_eq!(lead.user.title.as_deref(), Some("Esquire"));
        assert_eq!(
            lead.lead_source.as_ref().map(|s| s.source.as_str()),
            Some("AzureMarketplace")
        );
        assert!(!lead.is_test);
    }

    #[test]
    fn parses_the_2018_sample() {
        let (lead, _) = Lead::parse_json(SAMPLE_LEAD_2018.as_bytes()).unwrap();
        assert_eq!(lead.action_code, None);
        assert_eq!(lead.description, None);
        assert_eq!(lead.user.last_name.as_deref(), Some("One"));
    }

    #[test]
    fn key_casing_is_ignored_and_blank_values_are_absent() {
        let lead = Lead::parse(&json!({
            "userDetails": {"email": "a@b.c", "firstname": " ", "LASTNAME": ""},
            "offertitle": "  Offer  ",
            "Description": "",
        }))
        .unwrap();
        assert_eq!(lead.user.email.as_deref(), Some("a@b.c"));
        assert_eq!(lead.user.first_name, None);
        assert_eq!(lead.user.last_name, None);
        assert_eq!(lead.offer_title.as_deref(), Some("Offer"));
        assert_eq!(lead.description, None);
        assert_eq!(lead.lookup("USERDETAILS.EMAIL").as_deref(), Some("a@b.c"));
    }

    #[test]
    fn extra_fields_are_kept_and_readable() {
        let lead = Lead::parse(&json!({
            "OfferTitle": "x",
            "CustomerInfo": {"Size": 250, "Partner": true},
            "UserDetails": {"Email": "a@b.c", "Region": "EMEA"}
        }))
        .unwrap();
        assert_eq!(lead.lookup("customerinfo.size").as_deref(), Some("250"));
        assert_eq!(lead.lookup("CustomerInfo.Partner").as_deref(), Some("true"));
        assert_eq!(lead.lookup("UserDetails.Region").as_deref(), Some("EMEA"));
        assert_eq!(lead.lookup("CustomerInfo"), None);
        assert_eq!(lead.lookup("Nope.Nope"), None);
    }

    #[test]
    fn numbers_in_text_fields_are_taken_as_text() {
        let lead = Lead::parse(&json!({"UserDetails": {"Phone": 16175555555u64}})).unwrap();
        assert_eq!(lead.user.phone.as_deref(), Some("16175555555"));
    }

    #[test]
    fn flags_partner_center_test_leads() {
        let lead = Lead::parse(&json!({
            "OfferTitle": "x",
            "Description": "MSFT_TEST_636573304831318844",
            "UserDetails": {}
        }))
        .unwrap();
        assert!(lead.is_test);
        let lead = Lead::parse(&json!({"UserDetails": {"Email": "MSFT_TEST_1@test.com"}})).unwrap();
        assert!(lead.is_test);
    }

    #[test]
    fn rejects_what_cannot_be_a_lead() {
        assert_eq!(
            Lead::parse(&json!([1])),
            Err(InvalidLead::NotAnObject("an array"))
        );
        assert_eq!(Lead::parse(&json!({})), Err(InvalidLead::NoUserDetails));
        assert_eq!(
            Lead::parse(&json!({"OfferTitle": "x"})),
            Err(InvalidLead::NoUserDetails)
        );
        assert_eq!(
            Lead::parse(&json!({"OfferTitle": "x", "UserDetails": null})),
            Err(InvalidLead::UserDetailsNotAnObject("null"))
        );
        assert_eq!(
            Lead::parse(&json!({"UserDetails": {}})),
            Err(InvalidLead::Empty)
        );
        assert!(
            Lead::parse(&json!({"OfferTitle": "x", "UserDetails": {}})).is_ok(),
            "every personal field may be withheld"
        );
        assert_eq!(
            Lead::parse(&json!({"Unrelated": "x", "OfferTitle": " ", "UserDetails": {}})),
            Err(InvalidLead::Empty)
        );
        assert_eq!(
            Lead::parse(&json!({"UserDetails": "someone"})),
            Err(InvalidLead::UserDetailsNotAnObject("a string"))
        );
        assert_eq!(
            Lead::parse(&json!({"UserDetails": {"Email": ["a@b.c"]}})),
            Err(InvalidLead::NotAString {
                field: "UserDetails.Email".into(),
                got: "an array"
            })
        );
        assert!(matches!(
            Lead::parse_json(b"{\"OfferTitle\": "),
            Err(ParseError::Json(_))
        ));
    }
}
