//! Comparing a presented secret (an endpoint `?code=`, the admin token) with
//! a configured one in constant time: how long the comparison takes must not
//! reveal how much of a guess matched.

use secrecy::{ExposeSecret, SecretString};
use subtle::{Choice, ConstantTimeEq};

/// Whether `presented` is `secret`, as a [`Choice`] so that callers checking
/// several secrets can combine the results without branching.
pub(crate) fn matches(secret: &SecretString, presented: &[u8]) -> Choice {
    secret.expose_secret().as_bytes().ct_eq(presented)
}
