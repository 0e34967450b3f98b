//! Organization names: the key that ties a URL, a config section and a mapping file together.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// An organization name: lowercase letters, digits and `-`, 1–63 characters.
///
/// Kept this strict because the name appears in URLs, file names, metric labels
/// and Kubernetes object keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid organization name {0:?}: use 1-63 lowercase letters, digits and '-'")]
pub struct InvalidOrgName(pub String);

impl OrgName {
    pub fn parse(s: &str) -> Result<Self, InvalidOrgName> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidOrgName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrgName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for OrgName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrgName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_names() {
        for ok in ["contoso", "a", "org-1", &"x".repeat(63)] {
            assert_eq!(OrgName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Contoso",
            "org_1",
            "org.1",
            "org/1",
            &"x".repeat(64),
            "ö",
        ] {
            assert!(OrgName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
