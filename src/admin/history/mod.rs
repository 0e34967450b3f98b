//! The delivery history page at `/` on the admin listener (never the public
//! one): the deliveries newest first with filters and search, one delivery
//! with its lead, rendered record and attempts, Replay, and the blocked or
//! paused organizations with Unblock and Unpause. Server-rendered HTML (maud,
//! compiled in) and one stylesheet served from here: no script, no CDN.
//!
//! - Off, like the admin API, when no `admin.token` is configured (404).
//! - A login form takes the admin token and opens a [`session`]; every page
//!   but the login answers a redirect to it without one, and shows no lead
//!   data.
//! - Every POST must come from this site (`Origin`, or `Referer`, naming the
//!   host it was sent to) and carry the session's CSRF token.
//! - Personal data (names, e-mail addresses) is shown, never put in a URL or
//!   a log line: the search is POSTed and kept in the session; every answer
//!   is `Cache-Control: no-store`.
//! - Replay is the store's `retry`, unpause and unblock are its `unpause`
//!   and `unblock`: the same as `leadbridge deliveries retry | unpause`.

mod actions;
mod detail_view;
mod filters;
mod list_view;
mod request;
mod session;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::{AdminState, error_reply};
use crate::email;
use crate::ids::DeliveryId;
use crate::lead::{Lead, OrgName};
use crate::mapping::RenderContext;
use crate::store::{DeliveryView, Destination, HistoryPage, HistoryQuery, StoreError};
use actions::Form;
use filters::Filters;
use request::{RequestInfo, finish, html, see_other};
use session::{Session, Sessions};
use views::Chrome;

/// Where the stylesheet is served.
const STYLESHEET: &str = "/assets/history.css";
const CSS: &str = include_str!("history.css");

/// Deliveries on one page of the list.
const PAGE_SIZE: u32 = 50;
/// A form body larger than this is refused (a "replay all shown" of a
/// full page is about 3 KiB).
const FORM_LIMIT: u64 = 64 * 1024;

/// The page's own state: the admin state and the open sessions.
struct HistoryPageState {
    admin: Arc<AdminState>,
    sessions: Sessions,
}

/// Every route of the page; they answer only while an admin token is configured.
pub(super) fn routes(admin: Arc<AdminState>) -> BoxedFilter<(Response,)> {
    let enabled = admin.settings.admin.token.is_some();
    let state = Arc::new(HistoryPageState {
        admin,
        sessions: Sessions::default(),
    });
    let on = warp::any()
        .and_then(move || async move {
            if enabled {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one();
    let with = warp::any().map(move || Arc::clone(&state));
    // A POST without Content-Length has no form (or a chunked one, which no
    // browser sends for a form): an empty one, which fails the CSRF check.
    let no_body = warp::header::optional::<u64>("content-length").and_then(
        |length: Option<u64>| async move {
            match length {
                None => Ok(Bytes::new()),
                Some(_) => Err(warp::reject::not_found()),
            }
        },
    );
    let form = warp::body::content_length_limit(FORM_LIMIT)
        .and(warp::body::bytes())
        .or(no_body)
        .unify();
    type S = Arc<HistoryPageState>;

    let list = warp::path::end()
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(request::info())
        .and(with.clone())
        .then(
            |q: HashMap<String, String>, i: RequestInfo, s: S| async move { s.list(&i, &q).await },
        );
    let detail = warp::path!("deliveries" / String)
        .and(warp::get())
        .and(request::info())
        .and(with.clone())
        .then(|id: String, i: RequestInfo, s: S| async move { s.detail(&i, &id).await });
    let stylesheet = warp::path!("assets" / "history.css")
        .and(warp::get())
        .map(|| {
            let mut r = CSS.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            r
        });
    let login_form = warp::path!("login")
        .and(warp::get())
        .and(request::info())
        .and(with.clone())
        .map(|i: RequestInfo, s: S| s.login_form(&i));
    let post = |p: BoxedFilter<()>| {
        p.and(warp::post())
            .and(request::info())
            .and(form)
            .and(with.clone())
    };
    let login = post(warp::path!("login").boxed())
        .map(|i: RequestInfo, b: Bytes, s: S| s.login(&i, &Form::parse(&b)));
    let logout = post(warp::path!("logout").boxed())
        .map(|i: RequestInfo, b: Bytes, s: S| s.logout(&i, &Form::parse(&b)));
    let search = post(warp::path!("search").boxed())
        .map(|i: RequestInfo, b: Bytes, s: S| s.search(&i, &Form::parse(&b)));
    let replay_shown =
        post(warp::path!("replay").boxed()).then(|i: RequestInfo, b: Bytes, s: S| async move {
            s.replay_shown(&i, &Form::parse(&b)).await
        });
    let replay = warp::path!("deliveries" / String / "replay")
        .and(post(warp::any().boxed()))
        .then(|id: String, i: RequestInfo, b: Bytes, s: S| async move {
            s.replay(&i, &id, &Form::parse(&b)).await
        });
    let unpause = warp::path!("organizations" / String / "unpause")
        .and(post(warp::any().boxed()))
        .then(|org: String, i: RequestInfo, b: Bytes, s: S| async move {
            s.unpause(&i, &org, &Form::parse(&b)).await
        });
    let unblock = warp::path!("organizations" / String / "unblock")
        .and(post(warp::any().boxed()))
        .then(|org: String, i: RequestInfo, b: Bytes, s: S| async move {
            s.unblock(&i, &org, &Form::parse(&b)).await
        });
    on.and(
        list.or(detail)
            .unify()
            .or(stylesheet)
            .unify()
            .or(login_form)
            .unify()
            .or(login)
            .unify()
            .or(logout)
            .unify()
            .or(search)
            .unify()
            .or(replay_shown)
            .unify()
            .or(replay)
            .unify()
            .or(unpause)
            .unify()
            .or(unblock)
            .unify(),
    )
    .map(finish)
    .boxed()
}

/// A delivery id from a path, or the page's 400.
fn delivery_id(info: &RequestInfo, id: &str) -> Result<DeliveryId, Box<Response>> {
    id.parse().map_err(|_| {
        Box::new(problem(
            info,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "That is not a delivery id.",
        ))
    })
}

/// A problem as a page for a browser, as `{error, message}` JSON otherwise.
fn problem(info: &RequestInfo, status: StatusCode, error: &str, message: &str) -> Response {
    if info.wants_html() {
        let title = status.canonical_reason().unwrap_or("Error");
        html(status, views::problem(title, message))
    } else {
        error_reply(status, error, message)
    }
}

fn store_problem(info: &RequestInfo, e: &StoreError) -> Response {
    tracing::warn!(error = %e, "history page request failed on the store");
    problem(
        info,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The store did not answer; try again.",
    )
}

fn refused(info: &RequestInfo, message: &str) -> Response {
    problem(info, StatusCode::FORBIDDEN, "forbidden", message)
}

impl HistoryPageState {
    fn session(&self, info: &RequestInfo) -> Option<Session> {
        let cookie = info.cookie.as_deref().and_then(session::cookie_value)?;
        self.sessions.get(cookie, Instant::now())
    }

    /// The session of a POST that may change something: from this site,
    /// logged in, with the session's CSRF token.
    fn post_session(&self, info: &RequestInfo, form: &Form) -> Result<Session, Box<Response>> {
        if !info.same_origin() {
            tracing::warn!("history page: cross-site POST refused");
            return Err(Box::new(refused(info, "Cross-site request refused.")));
        }
        let Some(session) = self.session(info) else {
            return Err(Box::new(refused(
                info,
                "Log in first: the session is missing or expired.",
            )));
        };
        if !session.csrf_matches(form.get("csrf").unwrap_or_default()) {
            tracing::warn!("history page: POST without the session's CSRF token refused");
            return Err(Box::new(refused(
                info,
                "The form is out of date: reload the page and try again.",
            )));
        }
        Ok(session)
    }

    async fn chrome_parts(
        &self,
        session: &Session,
    ) -> Result<
        (
            Vec<crate::store::Block>,
            Vec<crate::store::Pause>,
            Option<String>,
        ),
        StoreError,
    > {
        let store = &self.admin.store;
        let blocks = store.blocks().await?;
        let pauses = store.pauses(OffsetDateTime::now_utc()).await?;
        Ok((blocks, pauses, self.sessions.take_notice(session)))
    }

    async fn list(&self, info: &RequestInfo, q: &HashMap<String, String>) -> Response {
        let Some(session) = self.session(info) else {
            return see_other("/login");
        };
        let filters = match Filters::parse(q) {
            Ok(f) => f,
            Err(e) => return problem(info, StatusCode::BAD_REQUEST, "bad_request", &e.0),
        };
        let query = HistoryQuery {
            org: filters.org.clone(),
            status: filters.status,
            destination: filters.destination,
            received_from: filters.received_from(),
            received_before: filters.received_before(),
            search: session.search.clone(),
            page: filters.page,
            limit: PAGE_SIZE + 1,
        };
        let mut entries = match self.admin.store.history(&query).await {
            Ok(e) => e,
            Err(e) => return store_problem(info, &e),
        };
        let full = entries.len() > PAGE_SIZE as usize;
        let (newer, older) = match filters.page {
            HistoryPage::First | HistoryPage::Older(_) => {
                entries.truncate(PAGE_SIZE as usize);
                let newer = match filters.page {
                    HistoryPage::First => None,
                    _ => entries.first().map(|e| HistoryPage::Newer(e.cursor)),
                };
                let older = entries
                    .last()
                    .filter(|_| full)
                    .map(|e| HistoryPage::Older(e.cursor));
                (newer, older)
            }
            HistoryPage::Newer(_) => {
                if full {
                    entries.remove(0);
                }
                let newer = entries
                    .first()
                    .filter(|_| full)
                    .map(|e| HistoryPage::Newer(e.cursor));
                (newer, entries.last().map(|e| HistoryPage::Older(e.cursor)))
            }
        };
        let (blocks, pauses, notice) = match self.chrome_parts(&session).await {
            Ok(parts) => parts,
            Err(e) => return store_problem(info, &e),
        };
        let orgs: Vec<OrgName> = self.admin.settings.organizations.keys().cloned().collect();
        let now = OffsetDateTime::now_utc();
        let page = list_view::ListPage {
            filters: &filters,
            search: session.search.as_deref(),
            orgs: &orgs,
            entries: &entries,
            newer,
            older,
            now,
        };
        let chrome = Chrome {
            csrf: &session.csrf,
            notice: notice.as_deref(),
            blocks: &blocks,
            pauses: &pauses,
            now,
        };
        html(StatusCode::OK, list_view::render(&page, &chrome))
    }

    async fn detail(&self, info: &RequestInfo, id: &str) -> Response {
        let Some(session) = self.session(info) else {
            return see_other("/login");
        };
        let id = match delivery_id(info, id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let store = &self.admin.store;
        let delivery = match store.delivery(id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return problem(
                    info,
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "No such delivery.",
                );
            }
            Err(e) => return store_problem(info, &e),
        };
        let (attempts, payload) =
            match tokio::try_join!(store.attempts(id), store.lead_payload(delivery.lead_id)) {
                Ok(both) => both,
                Err(e) => return store_problem(info, &e),
            };
        let (blocks, pauses, notice) = match self.chrome_parts(&session).await {
            Ok(parts) => parts,
            Err(e) => return store_problem(info, &e),
        };
        let blocks: Vec<_> = blocks
            .into_iter()
            .filter(|b| b.org == delivery.org)
            .collect();
        let pauses: Vec<_> = pauses
            .into_iter()
            .filter(|p| p.org == delivery.org)
            .collect();
        let rendered = self.rendered(&delivery, payload.as_deref());
        let now = OffsetDateTime::now_utc();
        let page = detail_view::DetailPage {
            delivery: &delivery,
            attempts: &attempts,
            payload: payload.map(|p| pretty(&p)),
            rendered,
            now,
        };
        let chrome = Chrome {
            csrf: &session.csrf,
            notice: notice.as_deref(),
            blocks: &blocks,
            pauses: &pauses,
            now,
        };
        html(StatusCode::OK, detail_view::render(&page, &chrome))
    }

    /// What the delivery would send now, rendered with the configuration
    /// in force (what a replay sends): the Dataverse record, or the mail.
    fn rendered(&self, d: &DeliveryView, payload: Option<&str>) -> Result<String, String> {
        let Some(org) = self.admin.organizations.get(&d.org) else {
            return Err(format!(
                "The organization {} is not configured any more.",
                d.org
            ));
        };
        let payload = payload.ok_or("The lead is no longer stored.")?;
        let lead = serde_json::from_str::<Value>(payload)
            .map_err(|e| e.to_string())
            .and_then(|v| Lead::parse(&v).map_err(|e| e.to_string()))
            .map_err(|e| format!("The stored lead cannot be read: {e}"))?;
        let ctx = RenderContext {
            lead: &lead,
            lead_id: d.lead_id,
            org: &d.org,
            received_at: d.received_at,
        };
        match d.destination {
            Destination::Dataverse => {
                let Some(mapping) = &org.mapping else {
                    return Err(format!("{} has no Dynamics 365 mapping now.", d.org));
                };
                let record = mapping.render(&ctx).with_primary_key(d.record_id);
                let body = serde_json::to_string_pretty(&record.body).map_err(|e| e.to_string())?;
                Ok(format!("POST {}\n\n{body}", record.entity_set))
            }
            Destination::Email => {
                let Some(settings) = &org.config.email else {
                    return Err(format!("{} sends no notification mail now.", d.org));
                };
                let message =
                    email::compose(&settings.templates, &settings.recipients, &ctx, d.record_id);
                Ok(message.preview())
            }
        }
    }
}

/// Pretty-printed JSON, or the text as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_stays_as_sent_when_it_is_not_json() {
        assert_eq!(pretty("{\"a\":1}"), "{\n  \"a\": 1\n}");
        assert_eq!(pretty("not json"), "not json");
    }
}
