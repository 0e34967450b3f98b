//! What the delivery history page asks of the store: one page of deliveries
//! at a time, newest first, filtered and searched, paged by a keyset (the
//! last row's time and id) so that page 2,000 costs what page 1 costs.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use super::{DeliveryStatus, DeliveryView, Destination, from_millis, to_millis};
use crate::ids::DeliveryId;
use crate::lead::OrgName;

/// A position in the newest-first order: a delivery's creation time (when
/// its lead was received) and, for equal times, its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub at: OffsetDateTime,
    pub id: DeliveryId,
}

impl fmt::Display for HistoryCursor {
    /// `<unix ms>.<delivery id>`: short, opaque enough, and free of personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", to_millis(self.at), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a position in the delivery history")]
pub struct InvalidCursor;

impl FromStr for HistoryCursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, id) = s.split_once('.').ok_or(InvalidCursor)?;
        let ms: i64 = ms.parse().map_err(|_| InvalidCursor)?;
        Ok(Self {
            at: from_millis(ms).map_err(|_| InvalidCursor)?,
            id: id.parse().map_err(|_| InvalidCursor)?,
        })
    }
}

/// Which page of the filtered history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryPage {
    /// The newest deliveries.
    #[default]
    First,
    /// The deliveries right after (older than) the cursor.
    Older(HistoryCursor),
    /// The deliveries right before (newer than) the cursor, still returned
    /// newest first.
    Newer(HistoryCursor),
}

/// A filtered, searched page of the delivery history. Every filter left
/// `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub org: Option<OrgName>,
    pub status: Option<DeliveryStatus>,
    pub destination: Option<Destination>,
    /// Received at or after.
    pub received_from: Option<OffsetDateTime>,
    /// Received before.
    pub received_before: Option<OffsetDateTime>,
    /// Text the stored lead must contain (an e-mail address, a company),
    /// case-insensitively for ASCII.
    pub search: Option<String>,
    pub page: HistoryPage,
    /// At most this many rows (at least 1).
    pub limit: u32,
}

/// One row of the history: the delivery and the lead document it delivers.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub delivery: DeliveryView,
    /// The lead as received (JSON text).
    pub payload: String,
    pub cursor: HistoryCursor,
}

/// A Retry-After pause in force: the organization's queue for the
/// destination waits until `until`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pause {
    pub org: OrgName,
    pub destination: Destination,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_refuses_anything_else() {
        let c = HistoryCursor {
            at: from_millis(1_700_000_000_123).unwrap(),
            id: DeliveryId::generate(),
        };
        assert_eq!(c.to_string().parse::<HistoryCursor>(), Ok(c));
        for bad in ["", "123", "abc.def", "12.not-a-uuid", "1e99.x"] {
            assert_eq!(bad.parse::<HistoryCursor>(), Err(InvalidCursor), "{bad}");
        }
    }
}
