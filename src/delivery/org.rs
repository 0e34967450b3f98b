//! One value per organization holding everything an attempt needs of it:
//! its settings, the mapping in force, and the delivery state that must be
//! shared by all of its attempts (concurrency limit, request rate, column
//! metadata; pauses live in the store, shared by every replica). Built at start; a mapping reload builds a new value
//! around the same state, so an attempt that took one keeps a consistent
//! view from start to end.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::concurrency::AdaptiveLimit;
use super::metadata::MetadataCache;
use crate::config::{
    Credentials, DeliverySettings, MailTransport, Organization, Settings, SmtpSettings,
};
use crate::dataverse::DataverseClient;
use crate::lead::OrgName;
use crate::mail::{GraphMailer, SmtpMailer};
use crate::mapping::{Mapping, MappingError};
use crate::outbound::{ErrorKind, RemoteError};
use crate::store::Destination;

/// An organization as the delivery worker sees it.
pub struct OrgRuntime {
    pub config: Arc<Organization>,
    /// `None` for an email-only organization (no Dynamics `url`).
    pub mapping: Option<Arc<Mapping>>,
    pub(super) state: Arc<OrgState>,
}

/// What outlives a mapping reload.
pub(super) struct OrgState {
    pub(super) mapping_file: PathBuf,
    pub(super) limit: Arc<AdaptiveLimit>,
    /// The optional fixed request budget (`delivery.org_requests_per_minute`);
    /// none by default, because Dataverse's 429s and their Retry-After say
    /// exactly when to slow down, and a fixed cap can only guess lower.
    pub(super) rate: Option<DefaultDirectRateLimiter>,
    pub(super) metadata: MetadataCache,
    /// The email queue's own limit: a mail server that hangs can hold this
    /// many attempts, never the slots of the Dynamics records.
    pub(super) email_limit: Arc<AdaptiveLimit>,
    /// `transport = "smtp"`: its settings, and the pooled transport built
    /// from them on first use (inside the runtime, which lettre's pool needs).
    smtp_settings: Option<SmtpSettings>,
    smtp: OnceLock<Result<SmtpMailer, RemoteError>>,
    /// The organization's Entra app asking for Graph tokens (`transport = "graph"`).
    graph_credentials: Option<Credentials>,
    /// How long an attempt waits, after another one got a 429, for the
    /// organization's pause to reach the store (see [`OrgState::before_send`]).
    store_catch_up: Duration,
}

/// Long enough for a busy store to commit a pause (tens of milliseconds
/// under load), short enough that a waiting attempt holds its slot and lease
/// only briefly: then the store's pause postpones it properly.
const STORE_CATCH_UP: Duration = Duration::from_secs(1);

/// Notification attempts of one organization at once (per replica).
const EMAIL_CONCURRENCY: usize = 4;

impl OrgRuntime {
    pub fn name(&self) -> &OrgName {
        &self.config.name
    }

    pub(crate) fn mapping_file(&self) -> &std::path::Path {
        &self.state.mapping_file
    }
}

impl OrgState {
    fn new(org: &Organization, delivery: &DeliverySettings) -> Self {
        let mapping_file = org.mapping.clone();
        let burst = u32::try_from(delivery.org_concurrency)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        let rate = delivery.org_rate_cap().map(|per_minute| {
            RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Self {
            mapping_file,
            limit: Arc::new(AdaptiveLimit::new(delivery.org_concurrency)),
            rate,
            metadata: MetadataCache::default(),
            email_limit: Arc::new(AdaptiveLimit::new(EMAIL_CONCURRENCY)),
            smtp_settings: org.email.as_ref().and_then(|e| match &e.transport {
                MailTransport::Smtp(smtp) => Some(smtp.clone()),
                MailTransport::Graph { .. } => None,
            }),
            smtp: OnceLock::new(),
            graph_credentials: org
                .email
                .as_ref()
                .and_then(|e| e.uses_graph())
                .zip(org.auth.as_ref())
                .map(|(graph, creds)| creds.for_scope(&GraphMailer::scope(graph))),
            // Never longer than the pause itself can be (backoff_max bounds it).
            store_catch_up: STORE_CATCH_UP
                .min(delivery.retry_for_destination("dataverse").backoff_max),
        }
    }

    /// The concurrency limit of one of the organization's queues.
    pub(super) fn limit_for(&self, destination: Destination) -> &Arc<AdaptiveLimit> {
        match destination {
            Destination::Dataverse => &self.limit,
            Destination::Email => &self.email_limit,
        }
    }

    pub(super) fn smtp(&self) -> Result<&SmtpMailer, RemoteError> {
        let Some(settings) = &self.smtp_settings else {
            return Err(RemoteError::new(
                ErrorKind::OrganizationWide,
                "no SMTP transport configured",
            ));
        };
        self.smtp
            .get_or_init(|| SmtpMailer::new(settings))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(super) fn graph_credentials(&self) -> Option<&Credentials> {
        self.graph_credentials.as_ref()
    }

    /// Right before a create: the optional fixed request budget; what the
    /// last 429s were, for the concurrency limit to settle its cut
    /// ([`AdaptiveLimit::review`]); then, if a 429 of this organization
    /// came a moment ago (its pause may not be in the store yet), a wait
    /// until the store must have it, so that the pause check that follows
    /// postpones this attempt instead of letting it out inside Retry-After
    /// (see `dataverse::quiet`).
    pub(super) async fn before_send(&self, dataverse: &DataverseClient, org_url: &url::Url) {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        self.limit.review(dataverse.last_throttles(org_url));
        let wait = dataverse.hold_for_pause(org_url, self.store_catch_up);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Every configured organization, by name.
pub struct Organizations {
    orgs: RwLock<BTreeMap<OrgName, Arc<OrgRuntime>>>,
    /// Counts reloads that put a different mapping in force, so callers (and
    /// tests) can tell that a change on disk has been taken up.
    generation: AtomicU64,
    /// Counts reloads refused because the file was unreadable or invalid.
    rejected: AtomicU64,
}

impl Organizations {
    /// Loads every organization's mapping; all failures are reported together.
    pub fn load(settings: &Settings) -> Result<Self, Vec<MappingError>> {
        let mut orgs = BTreeMap::new();
        let mut errors = Vec::new();
        for org in settings.organizations.values() {
            // An email-only organization has no record to map.
            let mapping = match org.url.is_some().then(|| Mapping::load(&org.mapping)) {
                Some(Ok(mapping)) => Some(Arc::new(mapping)),
                Some(Err(e)) => {
                    errors.push(e);
                    continue;
                }
                None => None,
            };
            let runtime = OrgRuntime {
                config: Arc::new(org.clone()),
                mapping,
                state: Arc::new(OrgState::new(org, &settings.delivery)),
            };
            orgs.insert(org.name.clone(), Arc::new(runtime));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            orgs: RwLock::new(orgs),
            generation: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn get(&self, name: &OrgName) -> Option<Arc<OrgRuntime>> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<OrgRuntime>> {
        self.read().values().cloned().collect()
    }

    /// How many reloads have changed a mapping so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many reloads have been refused (the old mapping stayed in force).
    pub fn rejected_reloads(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// Re-reads one organization's mapping file; on error the old mapping
    /// stays in force. `Ok(true)` when the mapping in force changed.
    pub(crate) fn reload_mapping(&self, name: &OrgName) -> Result<bool, MappingError> {
        let Some(current) = self.get(name).filter(|o| o.mapping.is_some()) else {
            return Ok(false);
        };
        let fresh = match Mapping::load(current.mapping_file()) {
            Ok(m) => m,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        let mut orgs = self.orgs.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = orgs.get_mut(name) else {
            return Ok(false);
        };
        if entry.mapping.as_deref() == Some(&fresh) {
            return Ok(false);
        }
        *entry = Arc::new(OrgRuntime {
            config: Arc::clone(&entry.config),
            mapping: Some(Arc::new(fresh)),
            state: Arc::clone(&entry.state),
        });
        // Bumped under the write lock: whoever sees the new generation also
        // sees the new mapping.
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<OrgName, Arc<OrgRuntime>>> {
        // Writers swap whole entries, so a poisoned lock is still consistent.
        self.orgs.read().unwrap_or_else(PoisonError::into_inner)
    }
}
