//! What Dataverse says about itself: `WhoAmI` (are the credentials and the
//! application user right) and an entity's column metadata (which columns
//! exist, their MaxLength, option-set values). `check --live` reports from
//! it; the delivery worker keeps a per-organization copy to cut values to the
//! real MaxLength.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{DataverseClient, DataverseError, ErrorKind, classify, collection_base};
use crate::auth::AccessToken;
use crate::config::Organization;
use crate::lead::OrgName;
use crate::mapping::{Attribute, EntityMetadata, Mapping, OptionValue, Record};

/// A cached copy is used for this long, then fetched again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// After a failed fetch, deliveries go on without metadata for this long
/// before the next try, so an outage does not add a fetch to every attempt.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5 * 60);
/// The most a delivery waits for a metadata fetch.
const FETCH_BUDGET: Duration = Duration::from_secs(10);

/// `GET WhoAmI`: who leadbridge is in this organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhoAmI {
    pub user_id: String,
    pub business_unit_id: String,
    pub organization_id: String,
    /// `x-ms-dop-hint`: the degree of parallelism Dataverse recommends.
    pub dop_hint: Option<u32>,
}

/// Builds the metadata from the four `Attributes` answers (all columns,
/// then the String, Memo and Picklist casts). Pure, for tests.
pub fn parse_entity_metadata(
    logical_name: &str,
    all: &Value,
    strings: &Value,
    memos: &Value,
    picklists: &Value,
) -> Result<EntityMetadata, String> {
    let mut attributes = BTreeMap::new();
    for item in values(all)? {
        let Some(name) = item.get("LogicalName").and_then(Value::as_str) else {
            continue;
        };
        attributes.insert(
            name.to_owned(),
            Attribute {
                attribute_type: item
                    .get("AttributeType")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown")
                    .to_owned(),
                valid_for_create: item
                    .get("IsValidForCreate")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                max_length: None,
                options: None,
            },
        );
    }
    for item in values(strings)?.iter().chain(values(memos)?) {
        let name = item.get("LogicalName").and_then(Value::as_str);
        let max = item
            .get("MaxLength")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        if let (Some(name), Some(max)) = (name, max)
            && let Some(a) = attributes.get_mut(name)
        {
            a.max_length = Some(max);
        }
    }
    for item in values(picklists)? {
        let Some(name) = item.get("LogicalName").and_then(Value::as_str) else {
            continue;
        };
        let options = item
            .pointer("/OptionSet/Options")
            .and_then(Value::as_array)
            .map(|opts| {
                opts.iter()
                    .filter_map(|o| {
                        Some(OptionValue {
                            value: o.get("Value")?.as_i64()?,
                            label: o
                                .pointer("/Label/UserLocalizedLabel/Label")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(a) = attributes.get_mut(name) {
            a.options = Some(options);
        }
    }
    if attributes.is_empty() {
        return Err(format!(
            "Dataverse listed no columns for entity {logical_name}"
        ));
    }
    Ok(EntityMetadata {
        logical_name: logical_name.to_owned(),
        attributes,
    })
}

fn values(v: &Value) -> Result<&Vec<Value>, String> {
    v.get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| "unexpected metadata answer: no `value` list".to_owned())
}

/// Picklist casts need `$expand=OptionSet` for their values.
const ATTRIBUTE_QUERIES: [&str; 4] = [
    "Attributes?$select=LogicalName,AttributeType,IsValidForCreate",
    "Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength",
    "Attributes/Microsoft.Dynamics.CRM.MemoAttributeMetadata?$select=LogicalName,MaxLength",
    "Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
];

impl DataverseClient {
    /// `GET WhoAmI`: the cheapest proof that token, application user and
    /// organization URL fit together.
    pub async fn who_am_i(
        &self,
        org_url: &Url,
        token: &AccessToken,
    ) -> Result<WhoAmI, DataverseError> {
        let (headers, body) = self
            .get_json(format!("{}/WhoAmI", collection_base(org_url)), token)
            .await?;
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(WhoAmI {
            user_id: text("UserId"),
            business_unit_id: text("BusinessUnitId"),
            organization_id: text("OrganizationId"),
            dop_hint: headers
                .get("x-ms-dop-hint")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        })
    }

    /// The columns of the entity behind `entity_set`.
    pub async fn entity_metadata(
        &self,
        org_url: &Url,
        entity_set: &str,
        token: &AccessToken,
    ) -> Result<EntityMetadata, DataverseError> {
        let base = collection_base(org_url);
        let logical_name = self.logical_name(&base, entity_set, token).await?;
        let definition = format!("{base}/EntityDefinitions(LogicalName='{logical_name}')");
        // One after the other: a daily fetch need not be fast, and a failing
        // organization gets one request, not four.
        let [all, strings, memos, picklists] = ATTRIBUTE_QUERIES;
        let get = |q: &str| self.get_json(format!("{definition}/{q}"), token);
        let all = get(all).await?.1;
        let strings = get(strings).await?.1;
        let memos = get(memos).await?.1;
        let picklists = get(picklists).await?.1;
        parse_entity_metadata(&logical_name, &all, &strings, &memos, &picklists).map_err(
            |message| DataverseError {
                kind: ErrorKind::Transient,
                status: None,
                code: None,
                message,
            },
        )
    }

    /// Entity sets are plural (`leads`), metadata is keyed by the logical
    /// name (`lead`): ask Dataverse, except for the default entity set.
    async fn logical_name(
        &self,
        base: &str,
        entity_set: &str,
        token: &AccessToken,
    ) -> Result<String, DataverseError> {
        if entity_set == crate::mapping::DEFAULT_ENTITY_SET {
            return Ok("lead".to_owned());
        }
        let (_, body) = self
            .get_json(
                format!(
                    "{base}/EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq '{entity_set}'"
                ),
                token,
            )
            .await?;
        body.pointer("/value/0/LogicalName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DataverseError {
                kind: ErrorKind::Permanent,
                status: None,
                code: None,
                message: format!("no entity has the entity set name `{entity_set}`"),
            })
    }

    async fn get_json(
        &self,
        url: String,
        token: &AccessToken,
    ) -> Result<(HeaderMap, Value), DataverseError> {
        let mut builder = self.http.get(url).bearer_auth(token.bearer());
        for (k, v) in super::CreateRequest::headers().into_iter().take(3) {
            builder = builder.header(k, v);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| DataverseError::network(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(classify(status, &headers, &body));
        }
        let value = serde_json::from_slice(&body).map_err(|e| DataverseError {
            kind: ErrorKind::Transient,
            status: Some(status.as_u16()),
            code: None,
            message: format!("unreadable answer: {e}"),
        })?;
        Ok((headers, value))
    }

    /// Cuts rendered text to its column's real MaxLength, using metadata
    /// cached per organization (fetched on first use, refreshed daily).
    /// Failing to get metadata leaves the record as rendered: delivery never
    /// waits on it for more than one bounded fetch. The only error is the
    /// token the fetch needs, which the create right after needs too.
    pub async fn fit_to_columns(
        &self,
        org: &Organization,
        token: Option<&AccessToken>,
        mapping: &Mapping,
        record: &mut Record,
    ) {
        // Dry runs have no token, and need no metadata.
        let Some(token) = token else {
            return;
        };
        let fetch = || async {
            self.entity_metadata(&org.url, &record.entity_set, token)
                .await
                .map_err(|e| e.to_string())
        };
        let Some(meta) = self
            .metadata
            .get_or_fetch(&org.name, &record.entity_set, fetch)
            .await
        else {
            return;
        };
        for cut in mapping.fit_to_limits(&mut record.body, &meta) {
            crate::metrics::value_truncated(&org.name, &cut.column);
            tracing::warn!(
                column = %cut.column,
                length = cut.length,
                max_length = cut.max_length,
                ellipsis = cut.ellipsis,
                "value longer than the Dataverse column allows; cut to its MaxLength"
            );
        }
    }
}

/// Per (organization, entity set) copies of [`EntityMetadata`].
#[derive(Default)]
pub struct MetadataCache {
    slots: Mutex<HashMap<(OrgName, String), Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held by the one caller that fetches; the others do not wait for it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct SlotState {
    metadata: Option<Arc<EntityMetadata>>,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
}

impl SlotState {
    fn needs_fetch(&self, now: Instant) -> bool {
        let fresh = self
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < REFRESH_AFTER);
        let failed_recently = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) < RETRY_FAILED_AFTER);
        !fresh && !failed_recently
    }
}

impl MetadataCache {
    /// The cached metadata, fetched first when missing or a day old. Only one
    /// caller fetches at a time; the others go on with what is cached (maybe
    /// nothing). A failed or slow fetch yields what was cached before.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        org: &OrgName,
        entity_set: &str,
        fetch: F,
    ) -> Option<Arc<EntityMetadata>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EntityMetadata, String>>,
    {
        let slot = self.slot(org, entity_set);
        let current = lock(&slot.state).clone();
        if !current.needs_fetch(Instant::now()) {
            return current.metadata;
        }
        let Ok(_guard) = slot.fetching.try_lock() else {
            return current.metadata;
        };
        // Someone may have finished a fetch between the read and the lock.
        let current = lock(&slot.state).clone();
        if !current.needs_fetch(Instant::now()) {
            return current.metadata;
        }
        let result = tokio::time::timeout(FETCH_BUDGET, fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_BUDGET:?}")));
        let mut state = lock(&slot.state);
        match result {
            Ok(meta) => {
                tracing::info!(
                    org = %org,
                    entity = %meta.logical_name,
                    columns = meta.attributes.len(),
                    "fetched Dataverse column metadata"
                );
                crate::metrics::metadata_fetched(org, true);
                state.metadata = Some(Arc::new(meta));
                state.fetched_at = Some(Instant::now());
                state.failed_at = None;
            }
            Err(error) => {
                tracing::warn!(
                    org = %org,
                    entity_set,
                    error = %error,
                    "cannot fetch Dataverse column metadata; delivering without MaxLength checks"
                );
                crate::metrics::metadata_fetched(org, false);
                state.failed_at = Some(Instant::now());
            }
        }
        state.metadata.clone()
    }

    /// Whether [`MetadataCache::get_or_fetch`] would fetch now (so the
    /// caller knows to get a token first).
    pub fn wants_fetch(&self, org: &OrgName, entity_set: &str) -> bool {
        lock(&self.slot(org, entity_set).state).needs_fetch(Instant::now())
    }

    fn slot(&self, org: &OrgName, entity_set: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        Arc::clone(
            slots
                .entry((org.clone(), entity_set.to_owned()))
                .or_default(),
        )
    }
}

/// The guarded data is replaced in single assignments, so a poisoned lock
/// still holds a consistent value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn sample() -> EntityMetadata {
        parse_entity_metadata(
            "lead",
            &json!({"value": [
                {"LogicalName": "subject", "AttributeType": "String", "IsValidForCreate": true},
                {"LogicalName": "description", "AttributeType": "Memo", "IsValidForCreate": true},
                {"LogicalName": "fullname", "AttributeType": "String", "IsValidForCreate": false},
                {"LogicalName": "leadsourcecode", "AttributeType": "Picklist", "IsValidForCreate": true},
                {"LogicalName": "ownerid", "AttributeType": "Owner", "IsValidForCreate": true},
            ]}),
            &json!({"value": [
                {"LogicalName": "subject", "MaxLength": 300},
                {"LogicalName": "fullname", "MaxLength": 160},
            ]}),
            &json!({"value": [{"LogicalName": "description", "MaxLength": 2000}]}),
            &json!({"value": [{"LogicalName": "leadsourcecode", "OptionSet": {"Options": [
                {"Value": 8, "Label": {"UserLocalizedLabel": {"Label": "Web"}}},
                {"Value": 10, "Label": {"UserLocalizedLabel": {"Label": "Other"}}},
            ]}}]}),
        )
        .unwrap()
    }

    #[test]
    fn combines_the_four_answers() {
        let m = sample();
        assert_eq!(m.max_length("subject"), Some(300));
        assert_eq!(m.max_length("description"), Some(2000));
        assert_eq!(m.max_length("leadsourcecode"), None);
        assert!(!m.attribute("fullname").unwrap().valid_for_create);
        assert!(m.attribute("ownerid").unwrap().is_lookup());
        let opts = m
            .attribute("leadsourcecode")
            .unwrap()
            .options
            .clone()
            .unwrap();
        assert_eq!(
            opts,
            vec![
                OptionValue {
                    value: 8,
                    label: "Web".into()
                },
                OptionValue {
                    value: 10,
                    label: "Other".into()
                }
            ]
        );
        assert!(
            parse_entity_metadata("lead", &json!({}), &json!({}), &json!({}), &json!({})).is_err()
        );
    }

    #[tokio::test]
    async fn fetches_once_then_serves_the_cache_and_backs_off_after_failures() {
        let cache = MetadataCache::default();
        let org = OrgName::parse("contoso").unwrap();
        let calls = AtomicU32::new(0);
        let ok = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(sample())
        };
        assert!(cache.wants_fetch(&org, "leads"));
        assert!(cache.get_or_fetch(&org, "leads", ok).await.is_some());
        assert!(!cache.wants_fetch(&org, "leads"));
        assert!(cache.get_or_fetch(&org, "leads", ok).await.is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "second call is cached");

        let other = OrgName::parse("fabrikam").unwrap();
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<EntityMetadata, _>("HTTP 503".to_owned())
        };
        assert!(cache.get_or_fetch(&other, "leads", failing).await.is_none());
        assert!(!cache.wants_fetch(&other, "leads"));
        assert!(cache.get_or_fetch(&other, "leads", failing).await.is_none());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a failure is not retried at once"
        );
    }

    #[tokio::test]
    async fn callers_do_not_wait_for_a_fetch_in_progress() {
        let cache = Arc::new(MetadataCache::default());
        let org = OrgName::parse("contoso").unwrap();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let cache = Arc::clone(&cache);
            let org = org.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&org, "leads", || async move {
                        let _ = wait.await;
                        Ok(sample())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Waiting for the slow fetch would never end: it is released below.
        let meanwhile = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_or_fetch(&org, "leads", || async { Ok(sample()) }),
        )
        .await
        .expect("a second caller does not wait for the fetch in progress");
        assert!(meanwhile.is_none(), "nothing cached yet");
        let _ = release.send(());
        assert!(slow.await.unwrap().is_some());
        assert!(
            cache
                .get_or_fetch(&org, "leads", || async { Err("unused".to_owned()) })
                .await
                .is_some()
        );
    }
}
