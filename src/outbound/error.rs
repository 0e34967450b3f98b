//! The one vocabulary in which the outbound clients (Entra ID, Dataverse)
//! report a failed call. The client that saw the answer knows what it means;
//! the delivery worker decides on [`ErrorKind`] alone and never looks at an
//! HTTP status again.

use std::time::Duration;

/// What a failed call means for the delivery that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource refused the access token (Dataverse 401): tokens can be
    /// revoked or rotated before they expire, so get a new one and try once more.
    Unauthorized,
    /// Service protection limits (429): nothing may go to this service for the
    /// organization before `retry_after`.
    Throttled { retry_after: Option<Duration> },
    /// Outage, timeout, connection failure: worth another try, not before
    /// `retry_after` when the service named one.
    Transient { retry_after: Option<Duration> },
    /// This request cannot succeed as it is (400, 403, 404 …).
    Permanent,
    /// A record with our client-generated key already exists: an earlier
    /// attempt of this delivery got through.
    DuplicateKey,
    /// Every request of the organization fails the same way until someone
    /// changes the configuration (credentials refused, none configured).
    OrganizationWide,
}

impl ErrorKind {
    /// The wait a service asked for, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorKind::Throttled { retry_after } | ErrorKind::Transient { retry_after } => {
                retry_after
            }
            _ => None,
        }
    }
}

/// A failed call: its kind, the HTTP status when there was an answer, the
/// service's own error code, and a message fit for logs and the delivery
/// history (never a secret; personal data is redacted by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unauthorized | ErrorKind::Throttled { .. } | ErrorKind::Transient { .. }
        )
    }
}
