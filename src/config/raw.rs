//! The file and environment as they come in. Loose types, so that every
//! problem can be reported with its key instead of stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{DeliverySettings, LogSettings, ServerSettings, StoreSettings};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSettings {
    pub(super) server: ServerSettings,
    pub(super) admin: RawAdmin,
    pub(super) store: StoreSettings,
    pub(super) delivery: DeliverySettings,
    pub(super) log: LogSettings,
    pub(super) organizations: BTreeMap<String, RawOrganization>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<SocketAddr>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrganization {
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) dry_run: bool,
    pub(super) mapping: Option<PathBuf>,
    #[serde(default)]
    pub(super) endpoint_secrets: OneOrMany,
    pub(super) endpoint_secrets_file: Option<PathBuf>,
    pub(super) auth: Option<RawAuth>,
    pub(super) email: Option<super::email::RawEmail>,
    /// Lets `url` and `auth.authority_host` be plain `http://` (local fakes,
    /// tests); off, both must be `https://`.
    #[serde(default)]
    pub(super) allow_http: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    /// `client_secret` (default), `certificate`, `workload_identity`, `managed_identity`.
    pub(super) method: Option<String>,
    pub(super) authority_host: Option<String>,
    pub(super) tenant_id: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<PathBuf>,
    /// PEM text (certificate, and the key unless `private_key*` is given).
    pub(super) certificate: Option<String>,
    pub(super) certificate_file: Option<PathBuf>,
    pub(super) private_key: Option<String>,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) assertion_alg: Option<String>,
    pub(super) federated_token_file: Option<PathBuf>,
    pub(super) imds_endpoint: Option<String>,
}

/// Where `AZURE_*` variables are read: the process environment, or the map a
/// test passes to [`Settings::load_with_env`](super::Settings::load_with_env).
pub(super) struct EnvVars(pub(super) Option<HashMap<String, String>>);

impl EnvVars {
    pub(super) fn get(&self, key: &str) -> Option<String> {
        match &self.0 {
            Some(map) => map.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
        .filter(|v| !v.trim().is_empty())
    }
}

/// A list, or one string with comma-separated items: environment variables
/// can only carry the latter (`LEADBRIDGE__ORGANIZATIONS__X__ENDPOINT_SECRETS=a,b`).
#[derive(Default)]
pub(super) struct OneOrMany(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        Ok(OneOrMany(match Either::deserialize(d)? {
            Either::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Either::Many(v) => v,
        }))
    }
}
