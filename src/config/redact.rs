//! The configuration as an operator may see it (`GET /admin/config`). The
//! settings types derive `Serialize` and send each secret field through one
//! of the serializers here, so a field added later shows up without anyone
//! remembering this view, and a secret only ever shows up as [`REDACTED`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Serialize, Serializer};
use url::Url;

use super::{DeliverySettings, RetrySettings, Settings};

/// Stands in for every secret in [`Settings::redacted`].
pub const REDACTED: &str = "<redacted>";

impl Settings {
    /// The effective configuration as JSON, with every secret replaced by
    /// [`REDACTED`] (endpoint secrets, client secrets, the certificate and its
    /// key, the admin token, a password in the store URL). What
    /// `GET /admin/config` shows.
    pub fn redacted(&self) -> serde_json::Value {
        // Every map key is a string and paths are written lossily, so this
        // does not fail; should a field ever be unrepresentable, the admin
        // listener answers with the reason rather than going down.
        serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("the configuration cannot be shown: {e}") }),
        )
    }
}

/// Store URLs may carry a password (PostgreSQL): it becomes `***` (which
/// needs no escaping in a URL), the rest is kept.
pub fn redact_url_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Any secret, whatever its type (a string, a certificate with its key):
/// that it is set shows, never what it is.
pub(crate) fn secret<T: ?Sized, S: Serializer>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

/// `null` when unset, because that means something (no admin token: the
/// admin API is off).
pub(crate) fn optional_secret<T, S: Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

/// One [`REDACTED`] per secret: how many are live shows a rotation in progress.
pub(crate) fn secrets<T, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(|_| REDACTED))
}

/// The URL without its password; see [`redact_url_password`].
pub(crate) fn url_password<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_password(url))
}

/// As text even when not UTF-8, which serde's own impl would refuse and so
/// fail the whole view.
pub(crate) fn path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.display())
}

/// An override alone does not say what a destination gets (unset keys fall
/// back to the general schedule), so each is shown merged with it.
pub(super) fn delivery<S: Serializer>(d: &DeliverySettings, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Merged<'a> {
        #[serde(flatten)]
        settings: &'a DeliverySettings,
        destinations: BTreeMap<&'a str, RetrySettings>,
    }
    Merged {
        settings: d,
        destinations: d
            .destinations
            .keys()
            .map(|name| (name.as_str(), d.retry_for_destination(name)))
            .collect(),
    }
    .serialize(s)
}
