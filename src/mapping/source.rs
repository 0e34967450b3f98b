//! Where a field's value comes from: a path into the lead document
//! (`UserDetails.Email`), or a value leadbridge derives (`$source`). Shared
//! by the field parser and the template parser, which is why it has a file
//! of its own.

use strum::VariantNames;
use time::format_description::well_known::Rfc3339;

use super::RenderContext;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum SourcePath {
    Lead(String),
    Derived(Derived),
}

/// Values that are not fields of the payload but that users map all the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::VariantNames)]
pub(super) enum Derived {
    /// The source part of `LeadSource` (`AzureMarketplace`), or all of it.
    #[strum(serialize = "$source")]
    Source,
    /// `ActionCode`, or the action part of `LeadSource` when `ActionCode` is absent.
    #[strum(serialize = "$action")]
    Action,
    /// The `publisherid.offerid` part of `LeadSource`.
    #[strum(serialize = "$offer")]
    Offer,
    /// `true` for Partner Center test leads.
    #[strum(serialize = "$is_test")]
    IsTest,
    #[strum(serialize = "$lead_id")]
    LeadId,
    #[strum(serialize = "$org")]
    Org,
    #[strum(serialize = "$received_at")]
    ReceivedAt,
}

impl Derived {
    fn names() -> String {
        Self::VARIANTS.join(", ")
    }

    /// Longest text the value can be; `None`: the lead decides.
    /// In UTF-16 units; derived values are ASCII.
    pub(super) fn max_len(self) -> Option<usize> {
        match self {
            Derived::LeadId => Some(36),
            Derived::Org => Some(63),
            // RFC 3339 with nanoseconds and an offset.
            Derived::ReceivedAt => Some(35),
            Derived::IsTest => Some(5),
            Derived::Source | Derived::Action | Derived::Offer => None,
        }
    }
}

impl SourcePath {
    /// Parses `UserDetails.Email` or `$source`.
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with('$') {
            return s.parse().map(SourcePath::Derived).map_err(|_| {
                format!(
                    "unknown derived value `{s}`; expected one of {}",
                    Derived::names()
                )
            });
        }
        let ok = !s.is_empty()
            && s.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            });
        if ok {
            Ok(SourcePath::Lead(s.to_owned()))
        } else {
            Err(format!(
                "invalid source path `{s}`: use field names joined by dots (UserDetails.Email) or one of {}",
                Derived::names()
            ))
        }
    }

    pub(super) fn max_len(&self) -> Option<usize> {
        match self {
            SourcePath::Lead(_) => None,
            SourcePath::Derived(d) => d.max_len(),
        }
    }

    pub(super) fn resolve(&self, ctx: &RenderContext<'_>) -> Option<String> {
        let lead = ctx.lead;
        match self {
            SourcePath::Lead(path) => lead.lookup(path),
            SourcePath::Derived(d) => match d {
                Derived::Source => lead.lead_source.as_ref().map(|s| s.source.clone()),
                Derived::Action => lead
                    .action_code
                    .as_ref()
                    .map(|a| a.as_str().to_owned())
                    .or_else(|| lead.lead_source.as_ref().and_then(|s| s.action.clone())),
                Derived::Offer => lead.lead_source.as_ref().and_then(|s| s.offer.clone()),
                Derived::IsTest => Some(lead.is_test.to_string()),
                Derived::LeadId => Some(ctx.lead_id.to_string()),
                Derived::Org => Some(ctx.org.to_string()),
                Derived::ReceivedAt => ctx.received_at.format(&Rfc3339).ok(),
            },
        }
    }
}
