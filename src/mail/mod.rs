//! Sending a composed [`Message`](crate::email::Message): by SMTP
//! ([`smtp`], lettre) or by Microsoft Graph `sendMail` ([`graph`]). Like the
//! Dataverse client, each transport answers in the one error vocabulary
//! ([`RemoteError`](crate::outbound::RemoteError)) and knows nothing of the
//! store, the mapping or the configuration file.

pub mod graph;
pub mod smtp;

pub use graph::GraphMailer;
pub use smtp::SmtpMailer;
