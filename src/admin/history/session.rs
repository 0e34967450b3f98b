//! Who may see the history page: a login with the admin token opens a
//! session, held in this process's memory and named by a random cookie; each
//! session carries its own CSRF token and what the operator searches for (so
//! that the search, often an e-mail address, never travels in a URL).
//!
//! Sessions are per process: after a restart, or on another replica, the
//! operator logs in again. That is the price of keeping nothing about them
//! in the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(super) const COOKIE: &str = "leadbridge_session";

/// How long a session lasts from its login, whatever is done with it.
pub(super) const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions held at once; past it the oldest goes (only a login with the
/// token makes one, so this bounds memory, not who may log in).
const MAX_SESSIONS: usize = 1000;

/// What a session remembers.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// Put in every form; a POST must carry it back.
    pub(super) csrf: String,
    /// The search in force on the list, if any.
    pub(super) search: Option<String>,
    /// A one-time notice for the next page ("3 deliveries queued").
    pub(super) notice: Option<String>,
    /// The session cookie's digest: how this session is found again.
    key: [u8; 32],
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token, in constant time.
    pub(super) fn csrf_matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.csrf.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        bool::from(a.ct_eq(&b))
    }
}

/// The open sessions, by the SHA-256 of their cookie: the map's lookup
/// compares digests, so its timing says nothing about the cookie's value.
#[derive(Default)]
pub(super) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

/// 256 random bits, URL-safe.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The session cookie's value among a `Cookie` header's pairs.
pub(super) fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

impl Sessions {
    /// Opens a session; returns the cookie value naming it. `None` only if
    /// the system's random source fails.
    pub(super) fn open(&self, now: Instant) -> Option<String> {
        let cookie = random_token()?;
        let session = Session {
            csrf: random_token()?,
            search: None,
            notice: None,
            key: digest(&cookie),
            expires: now + LIFETIME,
        };
        let mut open = self.lock();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.values().min_by_key(|s| s.expires).map(|s| s.key)
        {
            open.remove(&oldest);
        }
        open.insert(session.key, session);
        Some(cookie)
    }

    /// The live session the cookie names.
    pub(super) fn get(&self, cookie: &str, now: Instant) -> Option<Session> {
        let key = digest(cookie);
        let mut open = self.lock();
        match open.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Changes the session, if it is still open.
    pub(super) fn update(&self, session: &Session, change: impl FnOnce(&mut Session)) {
        if let Some(s) = self.lock().get_mut(&session.key) {
            change(s);
        }
    }

    /// Takes the session's notice, once.
    pub(super) fn take_notice(&self, session: &Session) -> Option<String> {
        self.lock()
            .get_mut(&session.key)
            .and_then(|s| s.notice.take())
    }

    pub(super) fn close(&self, session: &Session) {
        self.lock().remove(&session.key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // Every change is a single insert, remove or field write: a panic
        // elsewhere cannot leave the map half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let cookie = sessions.open(now).unwrap();
        assert!(cookie.len() >= 43, "256 bits");
        let s = sessions.get(&cookie, now).expect("open");
        assert!(s.csrf_matches(&s.csrf));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&cookie));
        assert!(sessions.get("forged", now).is_none());
        assert!(sessions.get(&cookie, now + LIFETIME).is_none(), "expired");
        let cookie = sessions.open(now).unwrap();
        let s = sessions.get(&cookie, now).unwrap();
        sessions.update(&s, |s| s.notice = Some("done".into()));
        assert_eq!(sessions.take_notice(&s).as_deref(), Some("done"));
        assert_eq!(sessions.take_notice(&s), None, "once");
        sessions.close(&s);
        assert!(sessions.get(&cookie, now).is_none(), "closed");
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        assert_eq!(
            cookie_value("a=1; leadbridge_session=xyz; b=2"),
            Some("xyz")
        );
        assert_eq!(cookie_value("leadbridge_session="), None);
        assert_eq!(cookie_value("other_leadbridge_session=1"), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.open(now).unwrap();
        for n in 1..=MAX_SESSIONS {
            sessions
                .open(now + Duration::from_millis(n as u64))
                .unwrap();
        }
        assert!(sessions.get(&first, now).is_none(), "the oldest went");
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
