//! The ways an organization can prove who it is to Entra ID. Built and checked
//! by the configuration; used by the token provider.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::certificate::ClientCertificate;

/// Where IMDS answers on every Azure VM, AKS node and scale set.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// One organization's credentials. Debug output never shows a secret.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Client credentials with the app registration's client secret.
    ClientSecret { app: EntraApp, secret: SecretString },
    /// Client credentials with a JWT signed by the app's certificate.
    Certificate {
        app: EntraApp,
        certificate: Arc<ClientCertificate>,
    },
    /// Client credentials with the Kubernetes service-account token that Azure
    /// Workload Identity projects into the pod. The file is read on every token
    /// request because the kubelet rotates it.
    WorkloadIdentity { app: EntraApp, token_file: PathBuf },
    /// The Azure Instance Metadata Service of the VM or node we run on.
    ManagedIdentity(ManagedIdentity),
}

impl Credentials {
    /// For logs and error messages.
    pub fn method(&self) -> &'static str {
        match self {
            Self::ClientSecret { .. } => "client_secret",
            Self::Certificate { .. } => "certificate",
            Self::WorkloadIdentity { .. } => "workload_identity",
            Self::ManagedIdentity(_) => "managed_identity",
        }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// [`DEFAULT_IMDS_ENDPOINT`] unless configured (tests point it at a fake).
    pub endpoint: Url,
    /// The resource the token is for: the organization URL (no `/.default`).
    pub resource: String,
    /// A user-assigned identity's client id; `None` is the system-assigned one.
    pub client_id: Option<String>,
}
