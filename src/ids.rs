//! Typed identifiers. Each is a UUID underneath, but a lead id cannot be
//! passed where a delivery id or a record id is expected: the three travel
//! together through intake, the store and the worker, and swapping two of
//! them would compile silently if they were bare `Uuid`s.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $new:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id.
            pub fn generate() -> Self {
                Self(Uuid::$new())
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// A lead as received; time-ordered (v7), so ids sort by arrival.
    LeadId,
    now_v7
);
typed_id!(
    /// One destination's delivery of a lead.
    DeliveryId,
    now_v7
);
typed_id!(
    /// The primary key leadbridge gives the record it creates in Dataverse.
    /// Drawn once per delivery, so a retried create hits the same key.
    RecordId,
    new_v4
);
typed_id!(
    /// Proves that a worker still holds the claim on a delivery.
    LeaseToken,
    new_v4
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = LeadId::generate();
        assert_eq!(id.to_string().parse::<LeadId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<DeliveryId>().is_err());
        assert_eq!(
            serde_json::to_value(id).ok(),
            Some(serde_json::Value::String(id.to_string()))
        );
    }
}
