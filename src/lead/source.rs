//! `LeadSource` and `ActionCode`: the two fields whose values carry structure.

use std::fmt;

/// What the customer did. Unknown codes are kept, not rejected: Microsoft adds
/// codes without notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionCode {
    /// `INS`: install / "Get it now".
    Install,
    /// `PLT`: partner-led trial, "Contact me".
    PartnerLedTrial,
    /// `DNC`: do not contact; a heads-up only.
    DoNotContact,
    /// `Create`: purchase in the Azure portal.
    Create,
    /// `StartTestDrive`.
    StartTestDrive,
    Other(String),
}

impl ActionCode {
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "INS" => Self::Install,
            "PLT" => Self::PartnerLedTrial,
            "DNC" => Self::DoNotContact,
            "CREATE" => Self::Create,
            "STARTTESTDRIVE" => Self::StartTestDrive,
            _ => Self::Other(s.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Install => "INS",
            Self::PartnerLedTrial => "PLT",
            Self::DoNotContact => "DNC",
            Self::Create => "Create",
            Self::StartTestDrive => "StartTestDrive",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for ActionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `LeadSource`, split when it has the documented `Source-Action|Offer` shape
/// (`AzureMarketplace-INS|publisherid.offerid`). The offer id exists only inside
/// this string, so it is worth parsing; the raw value is always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadSource {
    pub raw: String,
    /// `AzureMarketplace`, `AzurePortal`, `SPZA`, `TestDrive`, … (the whole raw
    /// value when it has no structure).
    pub source: String,
    pub action: Option<String>,
    /// `publisherid.offerid`.
    pub offer: Option<String>,
}

impl LeadSource {
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        let (head, offer) = match raw.split_once('|') {
            Some((head, offer)) => (head.trim(), non_empty(offer)),
            None => (raw, None),
        };
        // Only split the action off when a `|` proves the structured shape, or
        // the suffix is a plain code: "AppSource (SPZA)" must stay whole.
        let (source, action) = match head.rsplit_once('-') {
            Some((src, act))
                if !src.trim().is_empty()
                    && !act.is_empty()
                    && act.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                (src.trim().to_owned(), Some(act.to_owned()))
            }
            _ => (head.to_owned(), None),
        };
        Self {
            raw: raw.to_owned(),
            source,
            action,
            offer,
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_documented_shape() {
        let s = LeadSource::parse("AzureMarketplace-INS|contoso.contoso-crm");
        assert_eq!(s.source, "AzureMarketplace");
        assert_eq!(s.action.as_deref(), Some("INS"));
        assert_eq!(s.offer.as_deref(), Some("contoso.contoso-crm"));
        assert_eq!(s.raw, "AzureMarketplace-INS|contoso.contoso-crm");
    }

    #[test]
    fn keeps_plain_sources_whole() {
        for raw in ["AzureMarketplace", "AppSource (SPZA)", "SPZA"] {
            let s = LeadSource::parse(raw);
            assert_eq!(s.source, raw);
            assert_eq!(s.action, None);
            assert_eq!(s.offer, None);
        }
    }

    #[test]
    fn tolerates_partial_shapes() {
        let s = LeadSource::parse("TestDrive-StartTestDrive");
        assert_eq!(s.source, "TestDrive");
        assert_eq!(s.action.as_deref(), Some("StartTestDrive"));
        let s = LeadSource::parse("SPZA|pub.offer");
        assert_eq!(s.source, "SPZA");
        assert_eq!(s.offer.as_deref(), Some("pub.offer"));
        let s = LeadSource::parse("AzurePortal-Create|");
        assert_eq!(s.offer, None);
    }

    #[test]
    fn action_codes() {
        assert_eq!(ActionCode::parse("ins"), ActionCode::Install);
        assert_eq!(ActionCode::parse("PLT"), ActionCode::PartnerLedTrial);
        assert_eq!(ActionCode::parse("Create").as_str(), "Create");
        assert_eq!(ActionCode::parse("XYZ"), ActionCode::Other("XYZ".into()));
    }
}
