//! Organization-wide failures: credentials Entra refuses, a fresh token
//! Dataverse refuses, a privilege the application user lacks, an
//! environment that does not resolve. Every lead of the organization would
//! fail alike, so instead of dead-lettering them one by one the organization
//! is blocked (in the store, for every replica): its deliveries wait, and
//! one of them probes every `delivery.block_probe_interval` whether the cause
//! is gone. A probe that gets any answer of the lead's own lifts the block
//! and the waiting deliveries go out at once; so does
//! `leadbridge deliveries unpause`, and a restart (a new configuration)
//! probes at once.

use time::OffsetDateTime;

use super::Deps;
use super::attempt::{Completed, Sent};
use super::retry;
use crate::outbound::ErrorKind;
use crate::store::ClaimedDelivery;

/// Blocks the organization on an organization-wide failure; lifts the block
/// when a probe shows the organization works again.
pub(super) async fn observe(deps: &Deps, d: &ClaimedDelivery, probe: bool, completed: &Completed) {
    let now = OffsetDateTime::now_utc();
    match &completed.result {
        Err(e) if e.kind() == ErrorKind::OrganizationWide => {
            let reason = completed.redactor.redact(&e.to_string());
            let interval = deps.settings.block_probe_interval;
            let probe_at = retry::later(now, interval);
            match deps
                .store
                .block(&d.org, d.destination, &reason, now, probe_at)
                .await
            {
                Ok(true) => {
                    crate::metrics::organization_blocked(d.org.as_str(), true);
                    deps.alerts.blocked(d, &reason);
                    tracing::error!(
                        reason = %reason,
                        probe_every_s = interval.as_secs(),
                        "organization blocked: its deliveries wait (none is dead-lettered for this) \
                         until the cause is fixed; a probe resumes delivery by itself"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record the organization's block"),
            }
        }
        // Not tried, or no word on the organization yet: the next probe asks again.
        Ok(Sent::Paused(_)) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Transient { .. } | ErrorKind::Throttled { .. }
            ) => {}
        _ if probe => match deps.store.unblock(&d.org, d.destination, now).await {
            Ok(true) => {
                // The gauge is per organization: 0 once no destination is blocked.
                let still = match deps.store.blocks().await {
                    Ok(blocks) => blocks.iter().any(|b| b.org == d.org),
                    Err(_) => false,
                };
                crate::metrics::organization_blocked(d.org.as_str(), still);
                deps.alerts.unblocked(d);
                tracing::info!("organization unblocked: its waiting deliveries go out now");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot lift the organization's block"),
        },
        _ => {}
    }
}
