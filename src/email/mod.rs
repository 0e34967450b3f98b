//! What a lead's notification says: the seeds' "Send an email" action (To,
//! Subject and Body built from lead fields), as a transport-neutral
//! [`Message`]. Pure: no network, no store; `mail` sends what this composes.
//!
//! Lead values are untrusted text. None of them can reach a header other
//! than the subject, and the subject is made one bounded line here, so no
//! value can add a header or a recipient whatever the transport does; HTML
//! parts escape every value.

mod layout;
mod text;

use std::fmt;

use crate::ids::RecordId;
use crate::mapping::{RenderContext, TextTemplate};

pub use text::{escape_html, one_line};

/// Longest subject, in characters; longer ones are cut with an ellipsis.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// An address with an optional display name, checked when the
/// configuration loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// The part after the `@`: names the Message-ID's domain.
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or("leadbridge.invalid", |(_, d)| d)
    }
}

/// As the configuration writes it.
impl serde::Serialize for Mailbox {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(
                f,
                "\"{}\" <{}>",
                name.replace(['"', '\\'], ""),
                self.address
            ),
            None => f.write_str(&self.address),
        }
    }
}

/// Who a notification goes to: configuration only, never the lead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recipients {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
}

/// The organization's subject and body templates; each one left out uses
/// the built-in layout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Templates {
    pub subject: Option<TextTemplate>,
    pub text: Option<TextTemplate>,
    pub html: Option<TextTemplate>,
}

/// A notification ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub recipients: Recipients,
    /// One line, at most [`MAX_SUBJECT_CHARS`].
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<key@domain>`, the same for every attempt of one delivery, so that a
    /// mail that went out twice (a worker died after the server took it) is
    /// recognisably one message.
    pub message_id: String,
}

impl Message {
    /// The message as a person reads it: headers, then both parts. What a
    /// dry run logs and `leadbridge render` prints.
    pub fn preview(&self) -> String {
        let r = &self.recipients;
        let list = |l: &[Mailbox]| {
            l.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!("From: {}\nTo: {}\n", r.from, list(&r.to));
        if !r.cc.is_empty() {
            out.push_str(&format!("Cc: {}\n", list(&r.cc)));
        }
        out.push_str(&format!(
            "Subject: {}\nMessage-ID: {}\n\n--- text/plain ---\n{}\n--- text/html ---\n{}",
            self.subject, self.message_id, self.text, self.html
        ));
        out
    }
}

/// The lead's notification. `key` is the delivery's own id.
pub fn compose(
    templates: &Templates,
    recipients: &Recipients,
    ctx: &RenderContext<'_>,
    key: RecordId,
) -> Message {
    let subject = match &templates.subject {
        Some(t) => t.render(ctx, str::to_owned),
        None => layout::subject(ctx),
    };
    let text = match &templates.text {
        Some(t) => t.render(ctx, str::to_owned),
        None => layout::text(ctx),
    };
    let html = match &templates.html {
        Some(t) => t.render(ctx, escape_html),
        None => layout::html(ctx),
    };
    Message {
        message_id: format!("<{key}@{}>", recipients.from.domain()),
        recipients: recipients.clone(),
        subject: one_line(&subject, MAX_SUBJECT_CHARS),
        text,
        html,
    }
}

/// What an operator alert says; never a lead's personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub subject: String,
    pub text: String,
}

impl Alert {
    /// As a [`Message`] to `to`, from the organization's sender.
    pub fn into_message(self, from: &Mailbox, to: &[Mailbox], key: &str) -> Message {
        let html = format!(
            "<!doctype html><html><body><pre style=\"font-family:inherit;white-space:pre-wrap\">{}</pre></body></html>",
            escape_html(&self.text)
        );
        Message {
            message_id: format!("<alert-{key}@{}>", from.domain()),
            recipients: Recipients {
                from: from.clone(),
                to: to.to_vec(),
                cc: Vec::new(),
            },
            subject: one_line(&self.subject, MAX_SUBJECT_CHARS),
            text: self.text,
            html,
        }
    }
}

#[cfg(test)]
mod tests;
