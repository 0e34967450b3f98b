//! What the page's forms do: log in and out, search, replay, unpause and
//! unblock. Each POST passes [`HistoryPageState::post_session`] first
//! (same origin, logged in, the session's CSRF token), except the login,
//! which checks the origin and the token.

use std::collections::HashMap;
use std::time::Instant;

use time::OffsetDateTime;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::filters::Filters;
use super::request::{RequestInfo, html, see_other};
use super::session::{COOKIE, LIFETIME, Session};
use super::{HistoryPageState, delivery_id, problem, refused, store_problem, views};
use crate::ids::DeliveryId;
use crate::lead::OrgName;
use crate::store::{Destination, HistoryPage, RetryResult};

/// At most this many deliveries in one "replay all shown".
const MAX_REPLAY: usize = 500;
/// Searches are cut to this many characters.
const MAX_SEARCH: usize = 200;

/// A form body's fields, in order (a field may repeat).
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn as_query(&self) -> HashMap<String, String> {
        self.0.iter().cloned().collect()
    }
}

/// A local path to go back to, from a form: never another site.
fn local_path(path: Option<&str>) -> &str {
    path.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or("/")
}

impl HistoryPageState {
    pub(super) fn login_form(&self, info: &RequestInfo) -> Response {
        if self.session(info).is_some() {
            return see_other("/");
        }
        html(StatusCode::OK, views::login(false))
    }

    pub(super) fn login(&self, info: &RequestInfo, form: &Form) -> Response {
        // Login CSRF: another site must not log a browser in.
        if !info.same_origin() {
            return refused(info, "Cross-site request refused.");
        }
        let Some(token) = &self.admin.settings.admin.token else {
            return problem(info, StatusCode::NOT_FOUND, "not_found", "No such page.");
        };
        let presented = form.get("token").unwrap_or_default().trim();
        let ok: bool = crate::secret::matches(token, presented.as_bytes()).into();
        if !ok || presented.is_empty() {
            tracing::warn!("history page: login with a wrong token refused");
            return html(StatusCode::UNAUTHORIZED, views::login(true));
        }
        let Some(cookie) = self.sessions.open(Instant::now()) else {
            tracing::error!("history page: no random numbers for a session");
            return problem(
                info,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Cannot open a session.",
            );
        };
        tracing::info!("history page: operator logged in");
        let mut r = see_other("/");
        let secure = if info.is_https() { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE}={cookie}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            LIFETIME.as_secs()
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    pub(super) fn logout(&self, info: &RequestInfo, form: &Form) -> Response {
        let session = match self.post_session(info, form) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        self.sessions.close(&session);
        let mut r = see_other("/login");
        let secure = if info.is_https() { "; Secure" } else { "" };
        let value = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    pub(super) fn search(&self, info: &RequestInfo, form: &Form) -> Response {
        let session = match self.post_session(info, form) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let text: String = form
            .get("q")
            .unwrap_or_default()
            .trim()
            .chars()
            .take(MAX_SEARCH)
            .collect();
        let search = Some(text).filter(|t| !t.is_empty() && form.get("clear").is_none());
        self.sessions.update(&session, |s| s.search = search);
        // The filters come back as they were (nothing personal in them).
        let back = Filters::parse(&form.as_query())
            .map(|f| f.link(HistoryPage::First))
            .unwrap_or_else(|_| "/".into());
        see_other(&back)
    }

    pub(super) async fn replay(&self, info: &RequestInfo, id: &str, form: &Form) -> Response {
        let session = match self.post_session(info, form) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let id = match delivery_id(info, id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let results = match self
            .admin
            .store
            .retry(&[id], OffsetDateTime::now_utc())
            .await
        {
            Ok(r) => r,
            Err(e) => return store_problem(info, &e),
        };
        let notice = match results.first().map(|(_, r)| *r) {
            Some(RetryResult::Queued) => {
                tracing::info!(delivery_id = %id, "delivery queued again from the history page");
                "Queued for an attempt now."
            }
            Some(RetryResult::AlreadyDelivered) => "Already delivered: it is not sent again.",
            _ => {
                return problem(
                    info,
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "No such delivery.",
                );
            }
        };
        self.sessions
            .update(&session, |s| s.notice = Some(notice.into()));
        see_other(&format!("/deliveries/{id}"))
    }

    pub(super) async fn replay_shown(&self, info: &RequestInfo, form: &Form) -> Response {
        let session = match self.post_session(info, form) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let ids: Result<Vec<DeliveryId>, _> = form.all("id").map(str::parse).collect();
        let ids = match ids {
            Ok(ids) if !ids.is_empty() && ids.len() <= MAX_REPLAY => ids,
            _ => {
                return problem(
                    info,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("Name 1 to {MAX_REPLAY} delivery ids."),
                );
            }
        };
        let results = match self
            .admin
            .store
            .retry(&ids, OffsetDateTime::now_utc())
            .await
        {
            Ok(r) => r,
            Err(e) => return store_problem(info, &e),
        };
        let count = |want: RetryResult| results.iter().filter(|(_, r)| *r == want).count();
        let queued = count(RetryResult::Queued);
        tracing::info!(queued, "deliveries queued again from the history page");
        let mut notice = format!("{queued} queued for an attempt now.");
        let delivered = count(RetryResult::AlreadyDelivered);
        if delivered > 0 {
            notice.push_str(&format!(" {delivered} already delivered, not sent again."));
        }
        let gone = count(RetryResult::NotFound);
        if gone > 0 {
            notice.push_str(&format!(" {gone} no longer stored."));
        }
        self.sessions.update(&session, |s| s.notice = Some(notice));
        see_other(local_path(form.get("back")))
    }

    /// A checked POST about one organization: its session and the name.
    fn org_post(
        &self,
        info: &RequestInfo,
        org: &str,
        form: &Form,
    ) -> Result<(Session, OrgName), Box<Response>> {
        let session = self.post_session(info, form)?;
        let org = OrgName::parse(org).map_err(|_| {
            Box::new(problem(
                info,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "That is not an organization name.",
            ))
        })?;
        Ok((session, org))
    }

    pub(super) async fn unpause(&self, info: &RequestInfo, org: &str, form: &Form) -> Response {
        let (session, org) = match self.org_post(info, org, form) {
            Ok(ok) => ok,
            Err(r) => return *r,
        };
        let done = match self
            .admin
            .store
            .unpause(&org, OffsetDateTime::now_utc())
            .await
        {
            Ok(d) => d,
            Err(e) => return store_problem(info, &e),
        };
        tracing::info!(org = %org, pauses = done.pauses, blocks = done.blocks, "organization unpaused from the history page");
        let notice = format!(
            "{org}: {} pause(s) and {} block(s) cleared, {} retrying deliveries due now.",
            done.pauses, done.blocks, done.deliveries
        );
        self.sessions.update(&session, |s| s.notice = Some(notice));
        see_other("/")
    }

    pub(super) async fn unblock(&self, info: &RequestInfo, org: &str, form: &Form) -> Response {
        let (session, org) = match self.org_post(info, org, form) {
            Ok(ok) => ok,
            Err(r) => return *r,
        };
        let Some(destination) = form
            .get("destination")
            .and_then(|d| d.parse::<Destination>().ok())
        else {
            return problem(
                info,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Name the destination to unblock.",
            );
        };
        let was = match self
            .admin
            .store
            .unblock(&org, destination, OffsetDateTime::now_utc())
            .await
        {
            Ok(w) => w,
            Err(e) => return store_problem(info, &e),
        };
        tracing::info!(org = %org, destination = %destination, was_blocked = was, "organization unblocked from the history page");
        let notice = if was {
            format!("{org} unblocked for {destination}: its retrying deliveries are due now.")
        } else {
            format!("{org} was not blocked for {destination}.")
        };
        self.sessions.update(&session, |s| s.notice = Some(notice));
        see_other("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_back_stays_on_this_site() {
        assert_eq!(local_path(Some("/?status=dead")), "/?status=dead");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }
}
