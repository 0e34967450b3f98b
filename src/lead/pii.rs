//! Masking of personal data before it reaches a log line.

use super::Lead;

/// Replaces a lead's personal values (names, email, phone) wherever they occur
/// in a text, so a whole rendered request can be logged without them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    pairs: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor that masks nothing (`log.pii = true`).
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn for_lead(lead: &Lead) -> Self {
        let u = &lead.user;
        let mut pairs = Vec::new();
        if let Some(e) = &u.email {
            pairs.push((e.clone(), mask_email(e)));
        }
        if let Some(p) = &u.phone {
            pairs.push((p.clone(), mask_phone(p)));
        }
        for name in [&u.first_name, &u.last_name].into_iter().flatten() {
            // One-letter names would mangle every word; they identify no one.
            if name.chars().count() >= 2 {
                pairs.push((name.clone(), mask_word(name)));
            }
        }
        // Longest first, so "Someone" is masked before a "Some" inside it.
        pairs.sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
        Self { pairs }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (needle, mask) in &self.pairs {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), mask);
            }
        }
        out
    }
}

/// `someone@contoso.com` → `s***@contoso.com`: the domain says which company,
/// which is what an operator needs to correlate.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", first_char(local)),
        None => mask_word(email),
    }
}

/// Keeps only the last two digits.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("***{tail}")
}

fn mask_word(word: &str) -> String {
    format!("{}***", first_char(word))
}

fn first_char(s: &str) -> String {
    s.chars().next().map(String::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::SAMPLE_LEAD_2020;

    #[test]
    fn masks_every_personal_value_in_a_rendered_body() {
        let (lead, _) = Lead::parse_json(SAMPLE_LEAD_2020.as_bytes()).unwrap();
        let body = r#"{"firstname":"Some","lastname":"One","emailaddress1":"someone@contoso.com","telephone1":"16175555555","companyname":"Contoso"}"#;
        let out = Redactor::for_lead(&lead).redact(body);
        assert!(!out.contains("someone@contoso.com"), "{out}");
        assert!(!out.contains("16175555555"), "{out}");
        assert!(!out.contains("\"Some\""), "{out}");
        assert!(out.contains("s***@contoso.com"), "{out}");
        assert!(out.contains("***55"), "{out}");
        assert!(
            out.contains("Contoso"),
            "company names are not personal data"
        );
    }

    #[test]
    fn disabled_redactor_changes_nothing() {
        assert_eq!(Redactor::disabled().redact("a@b.c"), "a@b.c");
    }

    #[test]
    fn masks() {
        assert_eq!(mask_email("someone@contoso.com"), "s***@contoso.com");
        assert_eq!(mask_email("nodomain"), "n***");
        assert_eq!(mask_phone("+1 617 555 5555"), "***55");
        assert_eq!(mask_phone(""), "***");
    }
}
