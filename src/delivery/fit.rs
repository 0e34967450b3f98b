//! Fitting a rendered record to the organization's real columns: values cut
//! to their MaxLength, from column metadata cached per organization. Failing
//! to get metadata leaves the record as rendered: a lead is never held up by
//! it for more than one bounded fetch.

use super::Deps;
use super::org::OrgRuntime;
use crate::auth::AccessToken;
use crate::mapping::Record;
use crate::outbound::ErrorKind;

pub(super) async fn to_columns(
    deps: &Deps,
    org: &OrgRuntime,
    token: &AccessToken,
    record: &mut Record,
) {
    let name = org.name();
    let fetch = || async {
        deps.dataverse
            .entity_metadata(&org.config.url, &record.entity_set, token)
            .await
            .map_err(|e| {
                if matches!(e.kind, ErrorKind::Throttled { .. }) {
                    crate::metrics::throttled("dataverse");
                }
                e.to_string()
            })
    };
    let Some(meta) = org
        .state
        .metadata
        .get_or_fetch(name, &record.entity_set, fetch)
        .await
    else {
        return;
    };
    for cut in org.mapping.fit_to_limits(&mut record.body, &meta) {
        crate::metrics::value_truncated(name.as_str(), &cut.column);
        tracing::warn!(
            column = %cut.column,
            length = cut.length,
            max_length = cut.max_length,
            ellipsis = cut.ellipsis,
            "value longer than the Dataverse column allows; cut to its MaxLength"
        );
    }
}
