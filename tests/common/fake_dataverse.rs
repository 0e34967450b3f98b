//! A stateful Dataverse fake: it keeps the records it created, refuses a
//! second create with the same key as Dataverse does (412, 0x80040237), and
//! can be told to fail (503) or throttle (429 + Retry-After) like the real
//! service under load. Every request is logged with its arrival time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::LEADS_PATH;

#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub status: u16,
    pub retry_after: Option<Duration>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Value>,
    log: Vec<Logged>,
    count: u64,
}

/// What the fake does with the n-th request (1-based), before storing.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    AlwaysOk,
    /// Every `every`-th request gets 503.
    Flaky {
        every: u64,
    },
    /// Requests n where n % every == 0 get 429 with Retry-After; others 503 when n % flaky == 0.
    ThrottleAndFlaky {
        throttle_every: u64,
        retry_after_s: u64,
        flaky_every: u64,
    },
}

#[derive(Clone)]
pub struct FakeDataverse {
    base: String,
    plan: Plan,
    latency: Duration,
    state: Arc<Mutex<State>>,
}

impl FakeDataverse {
    pub fn new(base: String, plan: Plan) -> Self {
        Self {
            base,
            plan,
            latency: Duration::ZERO,
            state: Arc::default(),
        }
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Created records by `leadid`.
    pub fn records(&self) -> HashMap<String, Value> {
        self.state
            .lock()
            .map(|s| s.records.clone())
            .unwrap_or_default()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// How many created records carry each email address.
    pub fn records_by_email(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.records().values() {
            if let Some(e) = r["emailaddress1"].as_str() {
                *out.entry(e.to_owned()).or_default() += 1;
            }
        }
        out
    }

    /// Requests that arrived while an earlier 429's Retry-After was running,
    /// allowing `in_flight_grace` for requests already on the way when the
    /// 429 went out.
    pub fn retry_after_violations(&self, in_flight_grace: Duration) -> Vec<(Duration, Duration)> {
        let log = self.log();
        let mut out = Vec::new();
        for (i, t) in log.iter().enumerate() {
            let Some(ra) = t.retry_after else { continue };
            for later in &log[i + 1..] {
                let gap = later.at.duration_since(t.at);
                if gap > in_flight_grace && gap < ra {
                    out.push((gap, ra));
                }
            }
        }
        out
    }
}

impl wiremock::Respond for FakeDataverse {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let at = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return ResponseTemplate::new(500);
        };
        s.count += 1;
        let n = s.count;
        let reply = |status: u16, code: &str, message: &str| {
            ResponseTemplate::new(status)
                .set_body_json(json!({"error": {"code": code, "message": message}}))
        };
        let (status, mut template, retry_after) = match self.plan {
            Plan::ThrottleAndFlaky { throttle_every, retry_after_s, .. } if n % throttle_every == 0 => (
                429,
                reply(429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.")
                    .insert_header("Retry-After", retry_after_s.to_string().as_str()),
                Some(Duration::from_secs(retry_after_s)),
            ),
            Plan::Flaky { every } | Plan::ThrottleAndFlaky { flaky_every: every, .. } if n % every == 0 => {
                (503, reply(503, "", "Service Unavailable"), None)
            }
            _ => {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                let id = body["leadid"].as_str().unwrap_or_default().to_owned();
                if req.url.path() != LEADS_PATH || id.is_empty() {
                    (400, reply(400, "0x80040203", "Invalid argument."), None)
                } else if s.records.contains_key(&id) {
                    (412, reply(412, "0x80040237", "A record with matching key values already exists."), None)
                } else {
                    s.records.insert(id.clone(), body);
                    let entity = format!("{}{LEADS_PATH}({id})", self.base);
                    (204, ResponseTemplate::new(204).insert_header("OData-EntityId", entity.as_str()), None)
                }
            }
        };
        s.log.push(Logged {
            at,
            status,
            retry_after,
        });
        if !self.latency.is_zero() {
            template = template.set_delay(self.latency);
        }
        template
    }
}
