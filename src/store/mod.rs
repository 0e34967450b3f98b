//! Durable state: leads and their deliveries (the outbox).
//!
//! Intake writes a lead and one delivery per destination in one transaction
//! and answers only after the commit; the worker claims due deliveries with a
//! lease and records each attempt. One implementation serves both backends:
//! SQLite (embedded default) and PostgreSQL (several replicas).

mod group_commit;
mod history;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::ids::{DeliveryId, LeadId, LeaseToken, RecordId};
use crate::lead::OrgName;

pub use group_commit::GroupCommit;
pub use history::{HistoryCursor, HistoryEntry, HistoryPage, HistoryQuery, InvalidCursor, Pause};
pub(crate) use sql::SqlStore;

/// An enum stored by name and shown to operators under the same name: the
/// snake_case variant, in the database, JSON, the CLI and metric labels.
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray)]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

named_enum! {
    /// Where a lead is delivered to.
    pub enum Destination {
        Dataverse,
        /// The notification mail of `[organizations.<org>.email]`.
        Email,
    }
}

named_enum! {
    /// Where a delivery stands.
    pub enum DeliveryStatus {
        Pending,
        Retrying,
        Delivered,
        Dead,
        /// Rendered and logged by a dry-run organization, never sent: it can
        /// be queued for real once the organization is live.
        DryRun,
    }
}

/// A lead accepted by intake, about to be stored.
#[derive(Debug, Clone)]
pub struct NewLead {
    pub id: LeadId,
    pub org: OrgName,
    pub received_at: OffsetDateTime,
    pub request_id: String,
    pub is_test: bool,
    /// The JSON document as received.
    pub payload: String,
    /// Identifies "the same document" for de-duplication (see `lead::fingerprint`).
    pub fingerprint: String,
    pub destinations: Vec<Destination>,
}

/// What storing a lead came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same document arrived for the same organization within the window.
    Duplicate {
        original: LeadId,
    },
}

/// A delivery reserved for one worker until its lease runs out.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub lead_id: LeadId,
    pub org: OrgName,
    pub destination: Destination,
    pub record_id: RecordId,
    /// Attempts made before this one, in all.
    pub attempts: u32,
    /// Attempts made in the current retry run (a replay starts a new run).
    pub retry_attempts: u32,
    pub retry_started_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub request_id: String,
    pub payload: String,
    pub lease_token: LeaseToken,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        remote_ref: String,
        http_status: Option<u16>,
    },
    Retry {
        error: String,
        http_status: Option<u16>,
        next_attempt_at: OffsetDateTime,
    },
    Dead {
        error: String,
        http_status: Option<u16>,
    },
    /// Not sent (dry run); `remote_ref` names the record it would have been.
    DryRun { remote_ref: String },
}

/// A delivery as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub lead_id: LeadId,
    pub org: OrgName,
    pub destination: Destination,
    pub status: DeliveryStatus,
    pub record_id: RecordId,
    pub remote_ref: Option<String>,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its organization is blocked for this destination (see [`Block`]).
    pub blocked: bool,
}

/// One recorded attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptView {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub outcome: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub org: Option<OrgName>,
    pub limit: u32,
}

/// What a replay request did to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryResult {
    /// Queued for an attempt now.
    Queued,
    AlreadyDelivered,
    NotFound,
}

/// An organization whose every request to a destination fails the same way
/// (credentials refused, a privilege missing, the environment gone) until
/// someone fixes the cause. Its deliveries wait instead of dead-lettering;
/// one at a time probes, from `probe_at`, whether the cause is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    pub org: OrgName,
    pub destination: Destination,
    /// The failure that blocked it, as the delivery history shows it.
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub probe_at: OffsetDateTime,
}

/// What clearing an organization's pause did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpaused {
    /// Pauses removed (one per destination that was paused).
    pub pauses: u64,
    /// Blocks lifted (one per destination that was blocked).
    pub blocks: u64,
    /// Retrying deliveries of the organization made due now.
    pub deliveries: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub leads: u64,
    pub fingerprints: u64,
}

/// The queue at a glance, for the metrics gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Deliveries not yet made: pending or retrying.
    pub waiting: u64,
    /// When the oldest of those was created.
    pub oldest_waiting_since: Option<OffsetDateTime>,
    /// Dead-lettered deliveries.
    pub dead: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported store url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The group-commit task is gone (the process is shutting down).
    #[error("store writer stopped")]
    Stopped,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores each lead and one pending delivery per destination, all in one
    /// transaction, unless the same document arrived for the organization
    /// within `dedupe_window` (earlier leads of the batch included). Returns
    /// only after the commit is durable: one fsync for the whole batch
    /// ([`GroupCommit`] gathers the batches).
    async fn insert_leads(
        &self,
        leads: &[NewLead],
        dedupe_window: Option<Duration>,
    ) -> Result<Vec<Inserted>, StoreError>;

    /// [`insert_leads`](Store::insert_leads) for one lead.
    async fn insert_lead(
        &self,
        lead: &NewLead,
        dedupe_window: Option<Duration>,
    ) -> Result<Inserted, StoreError> {
        self.insert_leads(std::slice::from_ref(lead), dedupe_window)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a stored lead without a result".into()))
    }

    /// Reserves up to `limit` due deliveries for `lease`, skipping paused
    /// and blocked organizations and the queues in `skip` (an organization's
    /// destination at its concurrency limit).
    /// Deliveries whose lease expired (a worker died) are due again.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip: &[(OrgName, Destination)],
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt and moves the delivery on. Returns `false` when the
    /// lease was lost meanwhile (the attempt is still recorded).
    async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        at: OffsetDateTime,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError>;

    /// Gives a claimed delivery back without an attempt, due again at `due`
    /// (now when `None`): shutdown, or a pause that began after the claim.
    async fn release(
        &self,
        delivery: &ClaimedDelivery,
        due: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;

    /// Extends a claim still held under `delivery.lease_token` to `now + lease`.
    /// Returns `false` when the claim is gone (recorded, released, or taken
    /// over by another worker after it expired): the attempt must stop.
    async fn renew_lease(
        &self,
        delivery: &ClaimedDelivery,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Hands every claim back to the queue, due as they were; returns how many.
    /// Only for a store no other process can be working on: the single-writer
    /// SQLite store when `serve` opens it, where any claim left is a dead
    /// process's (see [`single_process`]). Never on a shared PostgreSQL
    /// database, where other replicas hold live claims.
    async fn release_all_claims(&self) -> Result<u64, StoreError>;

    /// Pauses an organization's queue for a destination until `until`
    /// (Retry-After); a later pause never shortens an earlier one.
    async fn pause(
        &self,
        org: &OrgName,
        destination: Destination,
        until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Until when the organization's queue is paused, if it is.
    async fn paused_until(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Clears every pause and block of the organization and makes its
    /// retrying deliveries due now (those not claimed at this moment): an
    /// operator's "resume", e.g. after a `Retry-After` that was far too long.
    async fn unpause(&self, org: &OrgName, now: OffsetDateTime) -> Result<Unpaused, StoreError>;

    /// When the next waiting delivery becomes due, if any: not before its
    /// organization's pause ends; never for a blocked organization (its
    /// probes come at the poll interval).
    async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryView>, StoreError>;

    async fn attempts(&self, delivery_id: DeliveryId) -> Result<Vec<AttemptView>, StoreError>;

    async fn deliveries_of_lead(&self, lead_id: LeadId) -> Result<Vec<DeliveryView>, StoreError>;

    /// Newest first.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryView>, StoreError>;

    /// Queues deliveries for an attempt now with a fresh retry budget; the
    /// attempt renders with the mapping in force then.
    async fn retry(
        &self,
        ids: &[DeliveryId],
        now: OffsetDateTime,
    ) -> Result<Vec<(DeliveryId, RetryResult)>, StoreError>;

    /// Queues every delivery in `status` (dead or dry run; of one
    /// organization) again; returns how many.
    async fn retry_all(
        &self,
        status: DeliveryStatus,
        org: Option<&OrgName>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Deletes leads received before `leads_before` whose deliveries are
    /// finished, and fingerprints older than `fingerprints_before`.
    async fn purge(
        &self,
        leads_before: OffsetDateTime,
        fingerprints_before: OffsetDateTime,
    ) -> Result<Purged, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    /// Counts for the queue gauges; run at each metrics scrape.
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    /// Blocks the organization for `destination`: [`claim_due`](Store::claim_due)
    /// passes its deliveries over, and [`take_probes`](Store::take_probes)
    /// lets one through from `probe_at`. A block already there keeps its
    /// `since` and takes the new reason. Returns whether it is a new block.
    async fn block(
        &self,
        org: &OrgName,
        destination: Destination,
        reason: &str,
        now: OffsetDateTime,
        probe_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Lifts the block and makes the organization's retrying deliveries for
    /// `destination` due now. Returns whether there was a block.
    async fn unblock(
        &self,
        org: &OrgName,
        destination: Destination,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Every block, oldest first.
    async fn blocks(&self) -> Result<Vec<Block>, StoreError>;

    /// For each block whose probe is due: moves its next probe to
    /// `next_probe` and claims one waiting delivery of it for `lease`, due or
    /// not (oldest first), as the probe. Replicas taking probes at once take
    /// each one once.
    async fn take_probes(
        &self,
        now: OffsetDateTime,
        next_probe: OffsetDateTime,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Makes every block's probe due now: at start, the configuration may
    /// have changed and the cause be gone.
    async fn probe_blocks_now(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// One page of the delivery history for the history page: newest first,
    /// filtered and searched as `query` says, from its keyset position.
    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The lead document as received.
    async fn lead_payload(&self, lead_id: LeadId) -> Result<Option<String>, StoreError>;

    /// Every Retry-After pause still in force at `now`, by organization.
    async fn pauses(&self, now: OffsetDateTime) -> Result<Vec<Pause>, StoreError>;
}

/// Opens the store named by `store.url`, creating and migrating it as needed.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// Whether the store at `url` serves one process only (SQLite): at start,
/// nothing in it can legitimately be claimed.
pub fn single_process(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// When a lease taken at `now` ends; saturating, so that an absurd lease
/// cannot overflow the clock.
pub(crate) fn lease_end(now: OffsetDateTime, lease: Duration) -> OffsetDateTime {
    now.saturating_add(time::Duration::try_from(lease).unwrap_or(time::Duration::MAX))
}

pub(crate) fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

pub(crate) fn parse_id<T: std::str::FromStr<Err = uuid::Error>>(s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("id {s:?}: {e}")))
}

/// A stored enum name (status, destination) read back.
pub(crate) fn parse_name<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown {what} {s:?}")))
}

pub(crate) fn parse_org(s: &str) -> Result<OrgName, StoreError> {
    OrgName::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}
