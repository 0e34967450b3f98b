//! "The same lead": the same JSON document, whatever the key order or the
//! whitespace between tokens. Any difference in a value — another ActionCode,
//! an extra field, a space inside a string — makes another lead.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 (hex) of the document in canonical form: keys sorted, no
/// insignificant whitespace.
pub fn fingerprint(document: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(document, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(text: &str) -> String {
        fingerprint(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        assert_eq!(
            fp(r#"{"a":"1","b":{"x":"2","y":"3"}}"#),
            fp("{ \"b\" : {\"y\":\"3\",\n\"x\":\"2\"}, \"a\":\"1\" }")
        );
    }

    #[test]
    fn any_value_difference_does() {
        let base = fp(r#"{"ActionCode":"INS","OfferTitle":"X"}"#);
        assert_ne!(base, fp(r#"{"ActionCode":"PLT","OfferTitle":"X"}"#));
        assert_ne!(
            base,
            fp(r#"{"ActionCode":"INS","OfferTitle":"X","Extra":""}"#)
        );
        assert_ne!(base, fp(r#"{"ActionCode":"INS","OfferTitle":"X "}"#));
        assert_ne!(base, fp(r#"{"actioncode":"INS","OfferTitle":"X"}"#));
        assert_ne!(fp(r#"{"a":[1,2]}"#), fp(r#"{"a":[2,1]}"#));
    }
}
