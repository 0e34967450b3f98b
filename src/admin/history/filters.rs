//! The list's filters as they travel in its URL (`?org=&status=&destination=
//! &from=&to=` and a page position): nothing personal, so that links can be
//! shared and bookmarked. The search, which is personal, stays in the session.

use std::collections::HashMap;
use std::fmt::Write as _;

use strum::VariantArray as _;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::lead::OrgName;
use crate::store::{DeliveryStatus, Destination, HistoryCursor, HistoryPage};

/// What `<input type="datetime-local">` sends, read as UTC.
const MINUTES: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]");
const SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// The list's filters, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Filters {
    pub(super) org: Option<OrgName>,
    pub(super) status: Option<DeliveryStatus>,
    pub(super) destination: Option<Destination>,
    pub(super) from: Option<PrimitiveDateTime>,
    pub(super) to: Option<PrimitiveDateTime>,
    pub(super) page: HistoryPage,
}

/// A filter value that is not one; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadFilter(pub(super) String);

fn names<T: Copy + Into<&'static str>>(all: &[T]) -> String {
    all.iter()
        .map(|v| (*v).into())
        .collect::<Vec<&str>>()
        .join(", ")
}

fn time_param(field: &str, value: &str) -> Result<PrimitiveDateTime, BadFilter> {
    PrimitiveDateTime::parse(value, MINUTES)
        .or_else(|_| PrimitiveDateTime::parse(value, SECONDS))
        .map_err(|_| {
            BadFilter(format!(
                "{field} must be a time like 2026-05-31T09:00 (UTC)"
            ))
        })
}

impl Filters {
    /// Reads the query string; empty values are filters not in use.
    pub(super) fn parse(q: &HashMap<String, String>) -> Result<Self, BadFilter> {
        let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut f = Filters::default();
        if let Some(org) = get("org") {
            f.org = Some(OrgName::parse(org).map_err(|e| BadFilter(format!("org: {e}")))?);
        }
        if let Some(status) = get("status") {
            f.status = Some(status.parse().map_err(|_| {
                BadFilter(format!(
                    "status must be one of {}",
                    names(DeliveryStatus::VARIANTS)
                ))
            })?);
        }
        if let Some(destination) = get("destination") {
            f.destination = Some(destination.parse().map_err(|_| {
                BadFilter(format!(
                    "destination must be one of {}",
                    names(Destination::VARIANTS)
                ))
            })?);
        }
        if let Some(from) = get("from") {
            f.from = Some(time_param("from", from)?);
        }
        if let Some(to) = get("to") {
            f.to = Some(time_param("to", to)?);
        }
        let cursor = |k: &str| {
            get(k)
                .map(|c| c.parse::<HistoryCursor>())
                .transpose()
                .map_err(|_| BadFilter(format!("{k} is not a position in the history")))
        };
        f.page = match (cursor("older")?, cursor("newer")?) {
            (Some(c), _) => HistoryPage::Older(c),
            (None, Some(c)) => HistoryPage::Newer(c),
            (None, None) => HistoryPage::First,
        };
        Ok(f)
    }

    pub(super) fn received_from(&self) -> Option<OffsetDateTime> {
        self.from.map(PrimitiveDateTime::assume_utc)
    }

    pub(super) fn received_before(&self) -> Option<OffsetDateTime> {
        self.to.map(PrimitiveDateTime::assume_utc)
    }

    /// The time as the form's input shows it again.
    pub(super) fn input_time(t: Option<PrimitiveDateTime>) -> String {
        t.and_then(|t| {
            t.format(if t.second() == 0 { MINUTES } else { SECONDS })
                .ok()
        })
        .unwrap_or_default()
    }

    /// The filters (not the page) as `(name, value)` pairs, for hidden
    /// inputs and links.
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(org) = &self.org {
            out.push(("org", org.to_string()));
        }
        if let Some(status) = self.status {
            out.push(("status", status.to_string()));
        }
        if let Some(destination) = self.destination {
            out.push(("destination", destination.to_string()));
        }
        if self.from.is_some() {
            out.push(("from", Self::input_time(self.from)));
        }
        if self.to.is_some() {
            out.push(("to", Self::input_time(self.to)));
        }
        out
    }

    /// `/?…` for these filters and another page position.
    pub(super) fn link(&self, page: HistoryPage) -> String {
        let mut pairs = self.pairs();
        match page {
            HistoryPage::First => {}
            HistoryPage::Older(c) => pairs.push(("older", c.to_string())),
            HistoryPage::Newer(c) => pairs.push(("newer", c.to_string())),
        }
        let mut out = String::from("/");
        for (i, (k, v)) in pairs.iter().enumerate() {
            let _ = write!(
                out,
                "{}{k}={}",
                if i == 0 { '?' } else { '&' },
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn filters_read_back_from_their_own_links() {
        let f = Filters::parse(&query(&[
            ("org", "contoso"),
            ("status", "dry_run"),
            ("destination", "dataverse"),
            ("from", "2026-05-31T09:00"),
            ("to", "2026-06-01T09:00:30"),
            ("older", ""),
        ]))
        .unwrap();
        assert_eq!(f.status, Some(DeliveryStatus::DryRun));
        assert_eq!(f.page, HistoryPage::First);
        let link = f.link(HistoryPage::First);
        assert_eq!(
            link,
            "/?org=contoso&status=dry_run&destination=dataverse&from=2026-05-31T09%3A00&to=2026-06-01T09%3A00%3A30"
        );
        let back: HashMap<String, String> = url::form_urlencoded::parse(&link.as_bytes()[2..])
            .into_owned()
            .collect();
        let again = Filters::parse(&back).unwrap();
        assert_eq!((again.org, again.status), (f.org, f.status));
    }

    #[test]
    fn a_bad_filter_says_what_is_expected() {
        let e = Filters::parse(&query(&[("status", "lost")])).unwrap_err();
        assert_eq!(
            e.0,
            "status must be one of pending, retrying, delivered, dead, dry_run"
        );
        let e = Filters::parse(&query(&[("destination", "fax")])).unwrap_err();
        assert!(
            e.0.starts_with("destination must be one of dataverse"),
            "{e}"
        );
        assert!(Filters::parse(&query(&[("org", "Not An Org")])).is_err());
        assert!(Filters::parse(&query(&[("from", "yesterday")])).is_err());
        assert!(Filters::parse(&query(&[("older", "12.x")])).is_err());
    }
}
