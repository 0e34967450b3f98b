//! `leadbridge check --live`: for every live organization, get a token, call
//! `WhoAmI`, read the target entity's column metadata and measure the
//! mapping against it. The report is data, so that `--json` and the text
//! output cannot say different things; the parent module prints it.

use serde::Serialize;

use leadbridge::auth::TokenProvider;
use leadbridge::config::{Organization, Settings};
use leadbridge::dataverse::{DataverseClient, WhoAmI};
use leadbridge::delivery::Organizations;
use leadbridge::mapping::{Finding, Severity};

use super::email::{self, EmailCheck, EmailReport};

/// One organization's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    pub organization: String,
    /// `None`: email only, no Dynamics destination.
    pub url: Option<String>,
    pub dry_run: bool,
    pub mapping: String,
    /// `None` for an offline check.
    pub live: Option<LiveResult>,
    /// `None` without `[organizations.<org>.email]`.
    pub email: Option<EmailReport>,
}

/// What talking to the organization showed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LiveResult {
    /// Dry-run organizations have no credentials to check.
    Skipped { reason: String },
    /// A step failed; later steps were not tried.
    Failed { step: Step, error: String },
    Checked {
        who_am_i: WhoAmI,
        /// The entity's logical name (`lead`).
        entity: String,
        /// How many columns the metadata listed.
        columns: usize,
        findings: Vec<Finding>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Token,
    WhoAmI,
    Metadata,
}

impl Step {
    pub fn describe(self) -> &'static str {
        match self {
            Step::Token => "getting a token from Entra ID",
            Step::WhoAmI => "calling WhoAmI",
            Step::Metadata => "reading column metadata",
        }
    }
}

impl OrgReport {
    pub fn offline(org: &Organization) -> Self {
        Self {
            organization: org.name.to_string(),
            url: org.url.as_ref().map(ToString::to_string),
            dry_run: org.dry_run,
            mapping: org.mapping.display().to_string(),
            live: None,
            email: EmailReport::offline(org),
        }
    }

    /// Errors that make `check` exit 1.
    pub fn errors(&self) -> usize {
        let email = usize::from(matches!(
            self.email.as_ref().and_then(|e| e.live.as_ref()),
            Some(EmailCheck::Failed { .. })
        ));
        email
            + match &self.live {
                Some(LiveResult::Failed { .. }) => 1,
                Some(LiveResult::Checked { findings, .. }) => findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .count(),
                _ => 0,
            }
    }

    pub fn warnings(&self) -> usize {
        match &self.live {
            Some(LiveResult::Checked { findings, .. }) => findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
            _ => 0,
        }
    }
}

/// Checks every organization against Dataverse, one after the other.
pub async fn live(
    settings: &Settings,
    mappings: &Organizations,
    http: reqwest::Client,
) -> Vec<OrgReport> {
    let tokens = TokenProvider::new(http.clone());
    let dataverse = DataverseClient::new(http);
    let mut out = Vec::new();
    for org in settings.organizations.values() {
        let mut report = OrgReport::offline(org);
        report.live = Some(check_org(org, mappings, &tokens, &dataverse).await);
        if let Some(e) = report.email.as_mut() {
            e.live = email::check(org, &tokens).await;
        }
        out.push(report);
    }
    out
}

async fn check_org(
    org: &Organization,
    mappings: &Organizations,
    tokens: &TokenProvider,
    dataverse: &DataverseClient,
) -> LiveResult {
    let failed = |step, error: String| LiveResult::Failed { step, error };
    let Some(org_url) = org.url.as_ref() else {
        return LiveResult::Skipped {
            reason: "email only: no Dynamics destination".into(),
        };
    };
    let creds = match (&org.auth, org.dry_run) {
        (Some(c), false) => c,
        _ => {
            return LiveResult::Skipped {
                reason: "dry run: leadbridge never calls Dataverse for this organization".into(),
            };
        }
    };
    let Some(mapping) = mappings.get(&org.name).and_then(|o| o.mapping.clone()) else {
        return failed(Step::Metadata, "no mapping loaded".into());
    };
    let token = match tokens.token(creds).await {
        Ok(t) => t,
        Err(e) => return failed(Step::Token, e.to_string()),
    };
    let who_am_i = match dataverse.who_am_i(org_url, &token).await {
        Ok(w) => w,
        Err(e) => return failed(Step::WhoAmI, e.to_string()),
    };
    let meta = match dataverse
        .entity_metadata(org_url, mapping.entity_set(), &token)
        .await
    {
        Ok(m) => m,
        Err(e) => return failed(Step::Metadata, e.to_string()),
    };
    LiveResult::Checked {
        who_am_i,
        entity: meta.logical_name.clone(),
        columns: meta.attributes.len(),
        findings: mapping.check_against(&meta),
    }
}
