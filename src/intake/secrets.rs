//! Per-organization endpoint secrets, compared in constant time.

use std::collections::HashMap;

use secrecy::SecretString;

use crate::config::Organization;
use crate::lead::OrgName;

/// Compared against when the organization is unknown, so that an unknown
/// organization costs the same time as a wrong secret.
const DUMMY: &str = "leadbridge-unknown-organization-placeholder-secret";

pub struct EndpointSecrets {
    by_org: HashMap<OrgName, Vec<SecretString>>,
}

impl EndpointSecrets {
    pub fn new<'a>(orgs: impl IntoIterator<Item = &'a Organization>) -> Self {
        Self {
            by_org: orgs
                .into_iter()
                .map(|o| (o.name.clone(), o.endpoint_secrets.clone()))
                .collect(),
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
        let code = code.unwrap_or_default().as_bytes();
        let secrets = org.and_then(|o| self.by_org.get(o));
        let mut ok = subtle::Choice::from(0u8);
        match secrets {
            Some(list) => {
                for s in list {
                    ok |= crate::secret::matches(s, code);
                }
            }
            None => {
                let _ = crate::secret::matches(&SecretString::from(DUMMY), code);
            }
        }
        if bool::from(ok) && !code.is_empty() {
            org.cloned()
        } else {
            None
        }
    }
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
                    SecretString::from("old-secret-0123456789"),
                    SecretString::from("new-secret-0123456789"),
                ],
            )]),
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
