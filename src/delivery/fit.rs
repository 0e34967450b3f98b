//! Fitting a rendered record to the organization's real columns right
//! before it is sent ([`crate::mapping::Fitted`]: single-line text, e-mail
//! addresses that fit, MaxLength), from column metadata cached per
//! organization. Failing to get metadata fits the record by the mapping
//! alone: a lead is never held up by it for more than one bounded fetch.

use super::Deps;
use super::org::OrgRuntime;
use crate::auth::AccessToken;
use crate::mapping::{Mapping, Record};
use crate::outbound::ErrorKind;

pub(super) async fn to_columns(
    deps: &Deps,
    org: &OrgRuntime,
    (org_url, mapping): (&url::Url, &Mapping),
    token: &AccessToken,
    record: &mut Record,
) {
    let name = org.name();
    let fetch = || async {
        deps.dataverse
            .entity_metadata(org_url, &record.entity_set, token)
            .await
            .map_err(|e| {
                if matches!(e.kind, ErrorKind::Throttled { .. }) {
                    crate::metrics::throttled("dataverse");
                }
                e.to_string()
            })
    };
    let meta = org
        .state
        .metadata
        .get_or_fetch(name, &record.entity_set, fetch)
        .await;
    let fitted = mapping.fit(&mut record.body, meta.as_deref());
    for cut in &fitted.cuts {
        crate::metrics::value_truncated(name.as_str(), &cut.column);
        tracing::warn!(
            column = %cut.column,
            length = cut.length,
            max_length = cut.max_length,
            ellipsis = cut.ellipsis,
            "value longer than the Dataverse column allows; cut to its MaxLength"
        );
    }
    for moved in &fitted.moved_emails {
        tracing::warn!(
            column = %moved.column,
            reason = %moved.reason,
            "e-mail address kept out of its column (never cut); it is in the description"
        );
    }
    if !fitted.flattened.is_empty() {
        tracing::debug!(columns = ?fitted.flattened, "line breaks or control characters became spaces");
    }
}
