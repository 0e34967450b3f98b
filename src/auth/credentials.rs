//! The ways an organization can prove who it is to Entra ID. Built and checked
//! by the configuration; used by the token provider.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;
use url::Url;

use super::certificate::ClientCertificate;

/// Where IMDS answers on every Azure VM, AKS node and scale set.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// One organization's credentials. Neither Debug output nor serialization
/// (the redacted configuration view) ever shows a secret.
#[derive(Debug, Clone, Serialize, strum::IntoStaticStr)]
#[serde(tag = "method", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Credentials {
    /// Client credentials with the app registration's client secret.
    ClientSecret {
        #[serde(flatten)]
        app: EntraApp,
        #[serde(
            rename = "client_secret",
            serialize_with = "crate::config::redact::secret"
        )]
        secret: SecretString,
    },
    /// Client credentials with a JWT signed by the app's certificate.
    Certificate {
        #[serde(flatten)]
        app: EntraApp,
        /// Shown as `private_key`, the part of it that is secret.
        #[serde(
            rename = "private_key",
            serialize_with = "crate::config::redact::secret"
        )]
        certificate: Arc<ClientCertificate>,
    },
    /// Client credentials with the Kubernetes service-account token that Azure
    /// Workload Identity projects into the pod. The file is read on every token
    /// request because the kubelet rotates it.
    WorkloadIdentity {
        #[serde(flatten)]
        app: EntraApp,
        /// Left out of the configuration view so that its shape stays as
        /// operators know it; dropping this attribute would show the path.
        #[serde(skip_serializing)]
        token_file: PathBuf,
    },
    /// The Azure Instance Metadata Service of the VM or node we run on.
    ManagedIdentity(ManagedIdentity),
}

impl Credentials {
    /// For logs and error messages.
    pub fn method(&self) -> &'static str {
        self.into()
    }

    /// The same identity asking for tokens of another resource (Microsoft
    /// Graph besides Dataverse); tokens are cached per scope.
    pub fn for_scope(&self, scope: &str) -> Credentials {
        let mut c = self.clone();
        match &mut c {
            Self::ClientSecret { app, .. }
            | Self::Certificate { app, .. }
            | Self::WorkloadIdentity { app, .. } => app.scope = scope.to_owned(),
            Self::ManagedIdentity(mi) => {
                mi.resource = scope.trim_end_matches("/.default").to_owned();
            }
        }
        c
    }

    /// The app registration, for every method but managed identity.
    pub fn app(&self) -> Option<&EntraApp> {
        match self {
            Self::ClientSecret { app, .. }
            | Self::Certificate { app, .. }
            | Self::WorkloadIdentity { app, .. } => Some(app),
            Self::ManagedIdentity(_) => None,
        }
    }
}

/// An Entra ID app registration and the scope its tokens are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntraApp {
    pub authority_host: Url,
    pub tenant_id: String,
    pub client_id: String,
    /// `<org url>/.default` unless configured.
    pub scope: String,
}

impl EntraApp {
    /// `{authority}/{tenant}/oauth2/v2.0/token`: also the `aud` of client assertions.
    pub fn token_url(&self) -> String {
        let host = self.authority_host.as_str().trim_end_matches('/');
        format!("{host}/{}/oauth2/v2.0/token", self.tenant_id)
    }
}

/// A managed identity token request to IMDS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedIdentity {
    /// [`DEFAULT_IMDS_ENDPOINT`] unless configured (tests point it at a fake).
    /// Shown under the configuration key that sets it.
    #[serde(rename = "imds_endpoint")]
    pub endpoint: Url,
    /// The resource the token is for: the organization URL (no `/.default`).
    /// Left out of the configuration view: it follows from the organization
    /// URL (or `auth.scope`), and the view's shape stays as operators know it.
    #[serde(skip_serializing)]
    pub resource: String,
    /// A user-assigned identity's client id; `None` is the system-assigned one.
    pub client_id: Option<String>,
}
