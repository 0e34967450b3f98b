//! Per-organization endpoint secrets, compared in constant time.

use std::collections::HashMap;

use crate::config::Organization;
use crate::lead::OrgName;
use crate::secret::Digest;

/// Every check compares against at least this many digests, padding with
/// ones nothing hashes to, so that timing tells neither how many secrets an
/// organization has nor whether it exists (two are live during a rotation).
const SLOTS: usize = 4;

pub struct EndpointSecrets {
    by_org: HashMap<OrgName, Vec<Digest>>,
    /// Compared in the slots an organization does not fill.
    padding: Digest,
}

impl EndpointSecrets {
    pub fn new<'a>(orgs: impl IntoIterator<Item = &'a Organization>) -> Self {
        Self {
            by_org: orgs
                .into_iter()
                .map(|o| {
                    let digests = o.endpoint_secrets.iter().map(Digest::of_secret).collect();
                    (o.name.clone(), digests)
                })
                .collect(),
            padding: padding(),
        }
    }

    /// The configured organization of that name (for metric labels, which
    /// must not take arbitrary names from URLs).
    pub fn configured(&self, name: &str) -> Option<&OrgName> {
        self.by_org.keys().find(|o| o.as_str() == name)
    }

    /// The organization, if `code` is one of its live secrets. Every secret
    /// of the organization is compared, so timing does not reveal which one
    /// (or how much of one) matched.
    pub fn verify(&self, org: Option<&OrgName>, code: Option<&str>) -> Option<OrgName> {
        let code = code.unwrap_or_default();
        let presented = Digest::of(code.as_bytes());
        let secrets = org
            .and_then(|o| self.by_org.get(o))
            .map_or(&[][..], Vec::as_slice);
        let mut ok = subtle::Choice::from(0u8);
        for i in 0..SLOTS.max(secrets.len()) {
            let slot = secrets.get(i).unwrap_or(&self.padding);
            ok |= slot.matches(&presented);
        }
        if bool::from(ok) && !code.is_empty() {
            org.cloned()
        } else {
            None
        }
    }
}

/// A digest no presented code hashes to in practice: of random bytes drawn
/// at start (a v4 UUID's), which are not even text.
fn padding() -> Digest {
    Digest::of(uuid::Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> EndpointSecrets {
        let org = OrgName::parse("contoso").unwrap();
        EndpointSecrets {
            by_org: HashMap::from([(
                org,
                vec![
                    Digest::of(b"old-secret-0123456789"),
                    Digest::of(b"new-secret-0123456789"),
                ],
            )]),
            padding: padding(),
        }
    }

    #[test]
    fn every_live_secret_is_accepted() {
        let s = secrets();
        let org = OrgName::parse("contoso").unwrap();
        assert_eq!(
            s.verify(Some(&org), Some("old-secret-0123456789")),
            Some(org.clone())
        );
        assert_eq!(
            s.verify(Some(&org), Some("new-secret-0123456789")),
            Some(org.clone())
        );
    }

    #[test]
    fn more_secrets_than_slots_are_all_compared() {
        let org = OrgName::parse("contoso").unwrap();
        let codes: Vec<String> = (0..SLOTS + 2)
            .map(|i| format!("secret-{i}-0123456789"))
            .collect();
        let s = EndpointSecrets {
            by_org: HashMap::from([(
                org.clone(),
                codes.iter().map(|c| Digest::of(c.as_bytes())).collect(),
            )]),
            padding: padding(),
        };
        for c in &codes {
            assert_eq!(s.verify(Some(&org), Some(c)), Some(org.clone()), "{c}");
        }
    }

    #[test]
    fn wrong_missing_or_unknown_is_refused() {
        let s = secrets();
        let org = OrgName::parse("contoso").unwrap();
        let other = OrgName::parse("fabrikam").unwrap();
        assert_eq!(s.verify(Some(&org), Some("new-secret-012345678")), None);
        assert_eq!(s.verify(Some(&org), Some("")), None);
        assert_eq!(s.verify(Some(&org), None), None);
        assert_eq!(s.verify(Some(&other), Some("new-secret-0123456789")), None);
        assert_eq!(s.verify(None, Some("new-secret-0123456789")), None);
    }
}
