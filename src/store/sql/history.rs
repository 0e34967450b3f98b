//! The delivery history page's queries: a filtered, searched page of
//! deliveries by keyset on `(created_at, id)` (indexed by migration 0005,
//! alone and after `org` and `status`), the lead document, and the pauses
//! in force.
//!
//! The statement is assembled from fixed fragments for the filters in use,
//! every value bound: a filter left out is absent from the SQL rather than
//! `($n = '' OR …)`, which would keep both SQLite and PostgreSQL from using
//! the index it is for.

use std::fmt::Write as _;

use sqlx::Row;
use time::OffsetDateTime;

use super::SqlStore;
use super::rows::{VIEW, view};
use crate::ids::LeadId;
use crate::store::{
    HistoryCursor, HistoryEntry, HistoryPage, HistoryQuery, Pause, StoreError, from_millis,
    parse_name, parse_org, to_millis,
};

/// A value bound to the history statement.
enum Bind {
    Text(String),
    Int(i64),
}

/// `%text%` for LIKE, with LIKE's own wildcards taken literally.
fn contains_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl SqlStore {
    pub(super) async fn history(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut sql = format!("{VIEW} WHERE 1 = 1");
        let mut binds = Vec::new();
        let mut push = |sql: &mut String, fragment: &str, value: Bind| {
            binds.push(value);
            let _ = write!(
                sql,
                " AND {}",
                fragment.replace("$?", &format!("${}", binds.len()))
            );
        };
        if let Some(org) = &query.org {
            push(&mut sql, "d.org = $?", Bind::Text(org.as_str().to_owned()));
        }
        if let Some(status) = query.status {
            push(
                &mut sql,
                "d.status = $?",
                Bind::Text(status.as_str().to_owned()),
            );
        }
        if let Some(destination) = query.destination {
            push(
                &mut sql,
                "d.destination = $?",
                Bind::Text(destination.as_str().to_owned()),
            );
        }
        if let Some(from) = query.received_from {
            push(&mut sql, "d.created_at >= $?", Bind::Int(to_millis(from)));
        }
        if let Some(before) = query.received_before {
            push(&mut sql, "d.created_at < $?", Bind::Int(to_millis(before)));
        }
        if let Some(text) = query.search.as_deref().filter(|t| !t.is_empty()) {
            // Both ignore ASCII case without lowering every payload first:
            // SQLite's LIKE does by default, PostgreSQL's ILIKE by definition.
            let like = match self.dialect {
                super::Dialect::Sqlite => "l.payload LIKE $? ESCAPE '\\'",
                super::Dialect::Postgres => "l.payload ILIKE $? ESCAPE '\\'",
            };
            push(&mut sql, like, Bind::Text(contains_pattern(text)));
        }
        let (keyset, order) = match query.page {
            HistoryPage::First => (None, "DESC"),
            HistoryPage::Older(c) => (Some(("<", c)), "DESC"),
            HistoryPage::Newer(c) => (Some((">", c)), "ASC"),
        };
        if let Some((op, cursor)) = keyset {
            // A row value: both backends walk the (…, created_at, id) index
            // from the cursor on.
            binds.push(Bind::Int(to_millis(cursor.at)));
            binds.push(Bind::Text(cursor.id.to_string()));
            let n = binds.len();
            let _ = write!(sql, " AND (d.created_at, d.id) {op} (${}, ${n})", n - 1);
        }
        binds.push(Bind::Int(i64::from(query.limit.max(1))));
        let _ = write!(
            sql,
            " ORDER BY d.created_at {order}, d.id {order} LIMIT ${}",
            binds.len()
        );
        let sql = sql.replacen("SELECT d.id,", "SELECT l.payload, d.created_at, d.id,", 1);
        let sql = self.sql(&sql);
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let delivery = view(r)?;
                Ok(HistoryEntry {
                    cursor: HistoryCursor {
                        at: from_millis(r.try_get("created_at")?)?,
                        id: delivery.id,
                    },
                    payload: r.try_get("payload")?,
                    delivery,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if matches!(query.page, HistoryPage::Newer(_)) {
            out.reverse();
        }
        Ok(out)
    }

    pub(super) async fn lead_payload(&self, lead_id: LeadId) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar(self.sql("SELECT payload FROM leads WHERE id = $1"))
                .bind(lead_id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn pauses(&self, now: OffsetDateTime) -> Result<Vec<Pause>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT org, destination, paused_until FROM throttles WHERE paused_until > $1 \
             ORDER BY org, destination",
        ))
        .bind(to_millis(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Pause {
                    org: parse_org(&r.try_get::<String, _>("org")?)?,
                    destination: parse_name(
                        "destination",
                        &r.try_get::<String, _>("destination")?,
                    )?,
                    until: from_millis(r.try_get("paused_until")?)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::super::tests::{LEASE, lead, stores};
    use super::contains_pattern;
    use crate::lead::OrgName;
    use crate::store::{
        AttemptOutcome, DeliveryStatus, Destination, HistoryPage, HistoryQuery, NewLead, Store,
    };

    fn lead_of(org: &str, at: OffsetDateTime, email: &str) -> NewLead {
        let mut l = lead(at, email);
        l.org = OrgName::parse(org).unwrap();
        l.payload = format!(r#"{{"UserDetails":{{"Email":"{email}","Company":"Co 100%"}}}}"#);
        l
    }

    #[test]
    fn like_wildcards_in_a_search_are_literal() {
        assert_eq!(contains_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }

    /// Pages walk the whole filtered history once, in order, both ways;
    /// every filter narrows it.
    #[tokio::test]
    async fn pages_filters_and_search_cover_the_history_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        for (name, s) in stores(&dir).await {
            let base = OffsetDateTime::now_utc() - Duration::from_secs(3600);
            let mut leads = Vec::new();
            for n in 0..25u64 {
                let org = if n % 5 == 0 { "fabrikam" } else { "contoso" };
                // Pairs share a time: the id decides between them.
                let at = base + Duration::from_secs(n / 2);
                leads.push(lead_of(org, at, &format!("person{n}@example.com")));
            }
            s.insert_leads(&leads, None).await.unwrap();
            // One dead letter.
            let c = s
                .claim_due(OffsetDateTime::now_utc(), LEASE, 1, &[])
                .await
                .unwrap();
            let dead = AttemptOutcome::Dead {
                error: "HTTP 400".into(),
                http_status: Some(400),
            };
            s.record_attempt(&c[0], OffsetDateTime::now_utc(), &dead)
                .await
                .unwrap();

            let mut seen = Vec::new();
            let mut q = HistoryQuery {
                limit: 7,
                ..Default::default()
            };
            let mut pages = Vec::new();
            loop {
                let page = s.history(&q).await.unwrap();
                if page.is_empty() {
                    break;
                }
                seen.extend(page.iter().map(|e| e.delivery.id));
                q.page = HistoryPage::Older(page.last().unwrap().cursor);
                pages.push(page);
            }
            assert_eq!(seen.len(), 25, "{name}");
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 25, "{name}: no row twice");
            let times: Vec<_> = pages
                .iter()
                .flatten()
                .map(|e| (e.cursor.at, e.cursor.id))
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] > w[1]),
                "{name}: newest first"
            );
            // Back from the second page to the first.
            q.page = HistoryPage::Newer(pages[1][0].cursor);
            let back = s.history(&q).await.unwrap();
            let first: Vec<_> = pages[0].iter().map(|e| e.delivery.id).collect();
            assert_eq!(
                back.iter().map(|e| e.delivery.id).collect::<Vec<_>>(),
                first,
                "{name}"
            );

            let count = |q: HistoryQuery| {
                let s = &s;
                async move {
                    s.history(&HistoryQuery { limit: 100, ..q })
                        .await
                        .unwrap()
                        .len()
                }
            };
            let fabrikam = OrgName::parse("fabrikam").unwrap();
            assert_eq!(
                count(HistoryQuery {
                    org: Some(fabrikam),
                    ..Default::default()
                })
                .await,
                5,
                "{name}"
            );
            assert_eq!(
                count(HistoryQuery {
                    status: Some(DeliveryStatus::Dead),
                    ..Default::default()
                })
                .await,
                1,
                "{name}"
            );
            assert_eq!(
                count(HistoryQuery {
                    destination: Some(Destination::Dataverse),
                    ..Default::default()
                })
                .await,
                25,
                "{name}"
            );
            assert_eq!(
                count(HistoryQuery {
                    received_from: Some(base + Duration::from_secs(2)),
                    received_before: Some(base + Duration::from_secs(4)),
                    ..Default::default()
                })
                .await,
                4,
                "{name}"
            );
            let search = |t: &str| HistoryQuery {
                search: Some(t.into()),
                ..Default::default()
            };
            assert_eq!(
                count(search("PERSON17@example")).await,
                1,
                "{name}: case-insensitive"
            );
            assert_eq!(count(search("co 100%")).await, 25, "{name}");
            assert_eq!(
                count(search("person1_@")).await,
                0,
                "{name}: _ is no wildcard"
            );
            assert_eq!(count(search("nobody")).await, 0, "{name}");
        }
    }

    #[tokio::test]
    async fn pauses_in_force_and_lead_documents_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for (name, s) in stores(&dir).await {
            let now = OffsetDateTime::now_utc();
            let org = OrgName::parse("contoso").unwrap();
            assert!(s.pauses(now).await.unwrap().is_empty(), "{name}");
            s.pause(&org, Destination::Dataverse, now + Duration::from_secs(60))
                .await
                .unwrap();
            let pauses = s.pauses(now).await.unwrap();
            assert_eq!(pauses.len(), 1, "{name}");
            assert_eq!(pauses[0].org, org);
            assert!(
                s.pauses(now + Duration::from_secs(61))
                    .await
                    .unwrap()
                    .is_empty(),
                "{name}: over"
            );

            let l = lead_of("contoso", now, "a@example.com");
            s.insert_lead(&l, None).await.unwrap();
            assert_eq!(
                s.lead_payload(l.id).await.unwrap(),
                Some(l.payload.clone()),
                "{name}"
            );
            assert_eq!(
                s.lead_payload(crate::ids::LeadId::generate())
                    .await
                    .unwrap(),
                None
            );
        }
    }
}
