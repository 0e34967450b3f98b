//! A rendered record fitted to the columns it is written into, right before
//! it is sent: what the lead's text must not carry into Dataverse.
//!
//! - Single-line columns get single-line text: CR, LF and other control
//!   characters become a space (a CR/LF pair one space). Multi-line columns
//!   (Memo, a String formatted as a text area) keep line breaks and tabs.
//!   The column's metadata decides; without it, the field's `lines`; without
//!   that, single.
//! - An e-mail column never gets a wrong address: one that is not a valid
//!   address, or longer than the column, is kept out of it (never cut) and
//!   goes, whole, into the notes column (`description`) with a line saying
//!   why.
//! - Text longer than its column's MaxLength (from metadata) is cut, counted
//!   in UTF-16 units ([`text`]).

use serde_json::{Map, Value};

use super::{BIND_SUFFIX, Lines, Mapping, text};
use crate::entity::EntityMetadata;

/// Where an address kept out of its column is written instead.
const NOTES_COLUMN: &str = "description";
/// `emailaddress1`–`3` hold 100 characters unless an organization changed
/// them; used when the metadata is not known.
const STANDARD_EMAIL_MAX: usize = 100;
/// RFC 5321: the longest address a mail system must accept.
const ADDRESS_MAX: usize = 254;

/// A value that was cut to its column's MaxLength.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub column: String,
    /// UTF-16 units before the cut (as Dataverse counts).
    pub length: usize,
    pub max_length: usize,
    /// The mapping's own truncate asked for an ellipsis.
    pub ellipsis: bool,
}

/// An e-mail value kept out of its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedEmail {
    pub column: String,
    /// Why, without the value (it is personal data).
    pub reason: String,
}

/// What fitting changed, for the delivery's warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fitted {
    pub cuts: Vec<Cut>,
    /// Columns whose line breaks or control characters became spaces.
    pub flattened: Vec<String>,
    pub moved_emails: Vec<MovedEmail>,
}

impl Mapping {
    /// Fits `body` to its columns; `meta` is the entity's column metadata
    /// when it could be had.
    pub fn fit(&self, body: &mut Map<String, Value>, meta: Option<&EntityMetadata>) -> Fitted {
        let mut fitted = Fitted::default();
        let mut notes = Vec::new();
        let columns: Vec<String> = body
            .keys()
            .filter(|c| *c != &self.primary_key && !c.ends_with(BIND_SUFFIX))
            .cloned()
            .collect();
        for column in columns {
            let attribute = meta.and_then(|m| m.attribute(&column));
            if attribute.is_some_and(|a| !a.is_text()) {
                continue;
            }
            let Some(Value::String(value)) = body.get_mut(&column) else {
                continue;
            };
            let is_email = attribute.map_or(column.starts_with("emailaddress"), |a| {
                a.is_email() || (a.format.is_none() && column.starts_with("emailaddress"))
            });
            if is_email {
                let max = attribute
                    .and_then(|a| a.max_length)
                    .unwrap_or(STANDARD_EMAIL_MAX);
                if let Some(reason) = unfit_address(value, max) {
                    notes.push(format!(
                        "E-mail address as received, kept out of {column} ({reason}): {value}"
                    ));
                    fitted.moved_emails.push(MovedEmail {
                        column: column.clone(),
                        reason,
                    });
                    body.remove(&column);
                    continue;
                }
            }
            let lines = match attribute {
                Some(a) if a.is_multi_line() => Lines::Multi,
                Some(_) => Lines::Single,
                None => self
                    .field(&column)
                    .and_then(|f| f.lines)
                    .unwrap_or(Lines::Single),
            };
            if let Some(clean) = without_control_characters(value, lines) {
                *value = clean;
                fitted.flattened.push(column.clone());
            }
        }
        if !notes.is_empty() {
            let note = notes.join("\n");
            match body.get_mut(NOTES_COLUMN) {
                Some(Value::String(d)) if !d.is_empty() => *d = format!("{d}\n\n{note}"),
                _ => {
                    body.insert(NOTES_COLUMN.to_owned(), Value::String(note));
                }
            }
        }
        if let Some(meta) = meta {
            fitted.cuts = self.cut_to_max_length(body, meta);
        }
        fitted
    }

    fn field(&self, column: &str) -> Option<&super::FieldSpec> {
        self.fields
            .iter()
            .find(|(target, _)| target == column)
            .map(|(_, spec)| spec)
    }

    /// Cuts every string longer than its column's MaxLength, keeping the
    /// field's own ellipsis choice if it has a truncate (a plain cut
    /// otherwise).
    fn cut_to_max_length(&self, body: &mut Map<String, Value>, meta: &EntityMetadata) -> Vec<Cut> {
        let mut cuts = Vec::new();
        for (column, value) in body.iter_mut() {
            let Value::String(s) = value else { continue };
            let Some(max) = meta.max_length(column) else {
                continue;
            };
            let length = text::length(s);
            if length <= max {
                continue;
            }
            let ellipsis = self
                .field(column)
                .and_then(|spec| spec.truncate_ellipsis())
                .unwrap_or(false);
            *s = text::cut(std::mem::take(s), max, ellipsis);
            cuts.push(Cut {
                column: column.clone(),
                length,
                max_length: max,
                ellipsis,
            });
        }
        cuts
    }
}

/// Why `value` cannot go into an e-mail column of `max` units, if it cannot.
fn unfit_address(value: &str, max: usize) -> Option<String> {
    let length = text::length(value);
    if length > max {
        return Some(format!("{length} characters, the column holds {max}"));
    }
    (!is_plausible_address(value)).then(|| "not a valid address".to_owned())
}

/// `local@domain.tld` as mail systems take it: one `@`, a local part of at
/// most 64 characters, a domain of dot-separated labels, nothing blank or
/// a control character anywhere.
fn is_plausible_address(s: &str) -> bool {
    if s.len() > ADDRESS_MAX || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// The text with control characters replaced by a space (a CR/LF pair by
/// one); multi-line text keeps LF, CR/LF and tabs. `None` when nothing
/// changes.
fn without_control_characters(s: &str, lines: Lines) -> Option<String> {
    let keep = |c: char| matches!(lines, Lines::Multi) && matches!(c, '\n' | '\r' | '\t');
    if !s.chars().any(|c| c.is_control() && !keep(c)) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_control() || keep(c) {
            out.push(c);
        } else {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push(' ');
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
