//! Comparing a presented secret (an endpoint `?code=`, the admin token) with
//! configured ones so that timing reveals nothing: neither how much of a
//! guess matched, nor how long the secret is (both sides are hashed to a
//! fixed-size digest first), nor which or how many secrets an organization
//! has (callers compare against a fixed number of slots).

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// A secret's SHA-256, the form in which it is compared.
#[derive(Clone)]
pub(crate) struct Digest([u8; 32]);

impl Digest {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub(crate) fn of_secret(secret: &SecretString) -> Self {
        Self::of(secret.expose_secret().as_bytes())
    }

    /// Equal digests, in constant time.
    pub(crate) fn matches(&self, other: &Digest) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(<redacted>)")
    }
}

/// Whether `presented` is `secret`, as a [`Choice`].
pub(crate) fn matches(secret: &SecretString, presented: &[u8]) -> Choice {
    Digest::of_secret(secret).matches(&Digest::of(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_match_whatever_their_length() {
        let s = SecretString::from("admin-token-0123456789");
        assert!(bool::from(matches(&s, b"admin-token-0123456789")));
        assert!(!bool::from(matches(&s, b"admin-token-012345678")));
        assert!(!bool::from(matches(&s, b"")));
        assert!(!bool::from(matches(&s, &[b'a'; 4096])));
    }
}
