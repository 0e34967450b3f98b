//! A fake of Dataverse's Web API that answers like the real service: record
//! creation (stateful: it keeps what it created and refuses a second create
//! with the same key), OData error bodies, throttling with Retry-After and
//! Dataverse's service protection limits ([`Plan::ServiceLimits`]). The lead
//! metadata and WhoAmI are in `dataverse_metadata`. Needs nothing else from
//! `tests/common`, so that `benches/drain.rs` can include it too.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

pub const LEADS_PATH: &str = "/api/data/v9.2/leads";
pub const WHOAMI_PATH: &str = "/api/data/v9.2/WhoAmI";
pub const ENTITY_PATH: &str = "/api/data/v9.2/EntityDefinitions(LogicalName='lead')/Attributes";
pub const USER_ID: &str = "5d9a4f3e-7b1c-ef11-840a-000d3a4b2c1d";
pub const BUSINESS_UNIT_ID: &str = "0a8c2e11-6b1c-ef11-840a-000d3a4b2c1d";
pub const ORGANIZATION_ID: &str = "c7b3e9d2-6a1c-ef11-a72e-000d3a4b2c1d";

// ---- answers --------------------------------------------------------------

/// Dataverse's error code for the limit on requests per window.
pub const REQUESTS_LIMIT: &str = "0x80072322";
/// Dataverse's error code for the limit on concurrent requests.
pub const CONCURRENCY_LIMIT: &str = "0x80072326";

/// A mock of `POST /api/data/v9.2/leads`, still to be given its answer.
pub fn on_lead_create() -> MockBuilder {
    Mock::given(method("POST")).and(path(LEADS_PATH))
}

/// An answer of Dataverse as status, headers and body, for wiremock (see
/// [`Reply::template`]) or any other HTTP server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// The body and its `Content-Type`.
    pub body: Option<(Vec<u8>, &'static str)>,
}

impl Reply {
    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::to_vec(&json!({"error": {"code": code, "message": message}}))
            .unwrap_or_default();
        Self {
            status,
            headers: vec![("OData-Version", "4.0".to_owned())],
            body: Some((body, "application/json; odata.metadata=minimal")),
        }
    }

    /// A service protection limit: 429 with Retry-After.
    fn limited(code: &str, message: &str, retry_after_s: u64) -> Self {
        let mut reply = Self::error(429, code, message);
        reply
            .headers
            .push(("Retry-After", retry_after_s.to_string()));
        reply
    }

    fn throttled(retry_after_s: u64) -> Self {
        Self::too_many_requests(6000, Duration::from_secs(300), retry_after_s)
    }

    /// The limit on requests per sliding window (Dataverse: 6000 per 300 s).
    fn too_many_requests(limit: usize, window: Duration, retry_after_s: u64) -> Self {
        let message = format!(
            "Number of requests exceeded the limit of {limit} over time window of {} seconds.",
            window.as_secs()
        );
        Self::limited(REQUESTS_LIMIT, &message, retry_after_s)
    }

    fn too_many_concurrent(retry_after_s: u64) -> Self {
        Self::concurrency_exceeded(52, retry_after_s)
    }

    /// The limit on concurrent requests (Dataverse: 52).
    fn concurrency_exceeded(limit: usize, retry_after_s: u64) -> Self {
        let message = format!("Number of concurrent requests exceeded the limit of {limit}.");
        Self::limited(CONCURRENCY_LIMIT, &message, retry_after_s)
    }

    fn service_unavailable() -> Self {
        Self::error(503, "", "Service Unavailable")
    }

    fn duplicate_key() -> Self {
        Self::error(
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        )
    }

    fn created(base: &str, id: &str) -> Self {
        Self {
            status: 204,
            headers: vec![
                ("OData-Version", "4.0".to_owned()),
                ("OData-EntityId", format!("{base}{LEADS_PATH}({id})")),
            ],
            body: None,
        }
    }

    pub fn template(&self) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status);
        for (name, value) in &self.headers {
            t = t.insert_header(*name, value.as_str());
        }
        match &self.body {
            Some((body, content_type)) => t.set_body_raw(body.clone(), content_type),
            None => t,
        }
    }
}

/// An OData error as Dataverse sends it.
pub fn dataverse_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    Reply::error(status, code, message).template()
}

pub fn service_unavailable() -> ResponseTemplate {
    Reply::service_unavailable().template()
}

/// The service protection limit on the number of requests.
pub fn throttled(retry_after_s: u64) -> ResponseTemplate {
    Reply::throttled(retry_after_s).template()
}

/// The service protection limit on concurrent requests.
pub fn too_many_concurrent(retry_after_s: u64) -> ResponseTemplate {
    Reply::too_many_concurrent(retry_after_s).template()
}

/// A create whose primary key is taken.
pub fn duplicate_key() -> ResponseTemplate {
    Reply::duplicate_key().template()
}

/// 204 No Content with the new record's URL: Dataverse's answer to a create
/// without `Prefer: return=representation`.
pub fn created(base: &str, id: &str) -> ResponseTemplate {
    Reply::created(base, id).template()
}

// ---- record creation ------------------------------------------------------

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// When its answer leaves (after the latency, if it has one).
    pub answered: Instant,
    /// The error code of a refusal for a service protection limit.
    pub limit_code: Option<&'static str>,
}

/// What the fake does with the n-th request (1-based) before creating.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    AlwaysOk,
    /// Every `every`-th request gets 503.
    Flaky {
        every: u64,
    },
    /// Requests n where n % throttle_every == 0 get 429 with Retry-After;
    /// others 503 when n % flaky_every == 0.
    ThrottleAndFlaky {
        throttle_every: u64,
        retry_after_s: u64,
        flaky_every: u64,
    },
    /// A request that finds `max_in_flight` others still being answered gets
    /// 429 (concurrent requests) with Retry-After, at once.
    ConcurrencyLimit {
        max_in_flight: usize,
        retry_after_s: u64,
    },
    /// Dataverse's service protection limits for one user (all requests
    /// share them); a request over one gets 429 at once.
    ServiceLimits(ServiceLimits),
}

/// Service protection limits as Dataverse applies them to one user: a
/// number of requests per sliding window and a number of requests being
/// answered at once. (Dataverse's third limit, combined execution time,
/// is not modelled: with a fixed latency it is a concurrency limit.)
#[derive(Clone, Copy, Debug)]
pub struct ServiceLimits {
    /// Requests admitted in any `window`; a refused request does not count.
    pub requests: usize,
    pub window: Duration,
    /// Requests being answered at once.
    pub max_in_flight: usize,
    /// Retry-After of a refusal for concurrency: it clears as soon as an
    /// answer leaves, so Dataverse asks for a short wait.
    pub concurrency_retry_after_s: u64,
}

impl ServiceLimits {
    /// Dataverse's defaults: 6000 requests per 5 minutes, 52 concurrent.
    pub const DATAVERSE: Self = Self {
        requests: 6000,
        window: Duration::from_secs(300),
        max_in_flight: 52,
        concurrency_retry_after_s: 1,
    };

    /// `requests` per second, `max_in_flight` at once.
    pub fn per_second(requests: usize, max_in_flight: usize) -> Self {
        Self {
            requests,
            window: Duration::from_secs(1),
            max_in_flight,
            concurrency_retry_after_s: 1,
        }
    }
}

#[derive(Default)]
struct State {
    records: HashMap<String, Value>,
    log: Vec<Logged>,
    peak_in_flight: usize,
    /// Arrival times of the requests [`Plan::ServiceLimits`] admitted, oldest
    /// first, as far back as its window reaches.
    admitted: VecDeque<Instant>,
}

impl State {
    /// Requests whose answer has not left yet at `now` (none that arrived
    /// more than `latency` before it).
    fn in_flight(&self, now: Instant, latency: Duration) -> usize {
        self.log
            .iter()
            .rev()
            .take_while(|l| l.at + latency > now)
            .filter(|l| l.answered > now)
            .count()
    }

    /// Admits a request arriving at `at` with `in_flight` being answered
    /// (itself included), or refuses it with 429 and its Retry-After.
    fn admit(
        &mut self,
        limits: &ServiceLimits,
        at: Instant,
        in_flight: usize,
    ) -> Option<(Reply, Duration, &'static str)> {
        while self
            .admitted
            .front()
            .is_some_and(|first| *first + limits.window <= at)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() >= limits.requests {
            // The window admits again when its oldest request leaves it;
            // Retry-After is whole seconds, rounded up.
            let wait = self
                .admitted
                .front()
                .map_or(limits.window, |first| (*first + limits.window) - at);
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            let reply = Reply::too_many_requests(limits.requests, limits.window, secs);
            return Some((reply, Duration::from_secs(secs), REQUESTS_LIMIT));
        }
        if in_flight > limits.max_in_flight {
            let secs = limits.concurrency_retry_after_s;
            let reply = Reply::concurrency_exceeded(limits.max_in_flight, secs);
            return Some((reply, Duration::from_secs(secs), CONCURRENCY_LIMIT));
        }
        self.admitted.push_back(at);
        None
    }

    fn create(&mut self, base: &str, body: &[u8], keep_body: bool) -> Reply {
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(body) else {
            return Reply::error(400, "0x80040203", "Invalid argument.");
        };
        // The client may choose the key; without one Dataverse makes one.
        let id = record
            .get("leadid")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if self.records.contains_key(&id) {
            return Reply::duplicate_key();
        }
        let reply = Reply::created(base, &id);
        let record = if keep_body {
            Value::Object(record)
        } else {
            Value::Null
        };
        self.records.insert(id, record);
        reply
    }
}

/// Dataverse's record creation for `leads`: 204 with `OData-EntityId`
/// naming the client-generated `leadid`, 412 (0x80040237) for a key it
/// already has, and the failures its [`Plan`] asks for. Every request is
/// logged with its arrival time. Clones share their state.
#[derive(Clone)]
pub struct FakeDataverse {
    base: String,
    plan: Plan,
    latency: Duration,
    keep_bodies: bool,
    state: Arc<Mutex<State>>,
}

impl FakeDataverse {
    pub fn new(server: &MockServer) -> Self {
        Self::at(server.uri())
    }

    /// A fake whose records live under `base` (the organization's URL).
    pub fn at(base: String) -> Self {
        Self {
            base,
            plan: Plan::AlwaysOk,
            latency: Duration::ZERO,
            keep_bodies: true,
            state: Arc::default(),
        }
    }

    pub fn with_plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// How long each answer takes (refusals of [`Plan::ConcurrencyLimit`]
    /// and [`Plan::ServiceLimits`] excepted: they are immediate).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Keeps only the keys of created records, not their bodies (for long
    /// runs that measure memory).
    pub fn without_bodies(mut self) -> Self {
        self.keep_bodies = false;
        self
    }

    /// The answer to a create with `body` arriving now, and how long it
    /// takes to leave.
    pub fn answer(&self, body: &[u8]) -> (Reply, Duration) {
        let mut s = self.state();
        // Taken under the lock, so that the log is in arrival order.
        let at = Instant::now();
        let n = s.log.len() as u64 + 1;
        let in_flight = s.in_flight(at, self.latency) + 1;
        s.peak_in_flight = s.peak_in_flight.max(in_flight);
        let mut latency = self.latency;
        let refused = match &self.plan {
            Plan::ServiceLimits(limits) => s.admit(limits, at, in_flight),
            _ => None,
        };
        let mut limit_code = refused.as_ref().map(|r| r.2);
        let (reply, retry_after) = if let Some((reply, ra, _)) = refused {
            latency = Duration::ZERO;
            (reply, Some(ra))
        } else {
            match self.plan {
                Plan::ConcurrencyLimit {
                    max_in_flight,
                    retry_after_s,
                } if in_flight > max_in_flight => {
                    latency = Duration::ZERO;
                    limit_code = Some(CONCURRENCY_LIMIT);
                    let ra = Duration::from_secs(retry_after_s);
                    (Reply::too_many_concurrent(retry_after_s), Some(ra))
                }
                Plan::ThrottleAndFlaky {
                    throttle_every,
                    retry_after_s,
                    ..
                } if n.is_multiple_of(throttle_every) => {
                    limit_code = Some(REQUESTS_LIMIT);
                    let ra = Duration::from_secs(retry_after_s);
                    (Reply::throttled(retry_after_s), Some(ra))
                }
                Plan::Flaky { every }
                | Plan::ThrottleAndFlaky {
                    flaky_every: every, ..
                } if n.is_multiple_of(every) => {
                    (Reply::error(503, "", "Service Unavailable"), None)
                }
                _ => (s.create(&self.base, body, self.keep_bodies), None),
            }
        };
        s.log.push(Logged {
            at,
            status: reply.status,
            retry_after,
            answered: at + latency,
            limit_code,
        });
        (reply, latency)
    }

    /// Answers every `POST /api/data/v9.2/leads` on `server`, and every
    /// `GET /api/data/v9.2/leads(<id>)` from the records it holds.
    pub async fn mount(&self, server: &MockServer) {
        on_lead_create()
            .respond_with(self.clone())
            .mount(server)
            .await;
        on_lead_read()
            .respond_with(RecordReader(self.clone()))
            .mount(server)
            .await;
    }

    /// `GET leads(<id>)`: 200 with the record, or 404 as Dataverse says it.
    pub fn read(&self, id: &str) -> Reply {
        let id = id.to_lowercase();
        match self.state().records.get(&id) {
            Some(_) => Reply {
                status: 200,
                headers: vec![("OData-Version", "4.0".to_owned())],
                body: Some((
                    serde_json::to_vec(&json!({"leadid": id})).unwrap_or_default(),
                    "application/json; odata.metadata=minimal",
                )),
            },
            None => Reply::error(
                404,
                "0x80040217",
                &format!("Entity 'lead' With Id = {id} Does Not Exist"),
            ),
        }
    }

    /// Puts a record there as if an earlier create had got through.
    pub fn seed(&self, id: &str) {
        self.state().records.insert(id.to_lowercase(), Value::Null);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Created records by `leadid` (`null` [`without_bodies`](Self::without_bodies)).
    pub fn records(&self) -> HashMap<String, Value> {
        self.state().records.clone()
    }

    /// How many records were created.
    pub fn record_count(&self) -> usize {
        self.state().records.len()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// The most requests that were being answered at once.
    pub fn peak_in_flight(&self) -> usize {
        self.state().peak_in_flight
    }

    /// How many created records carry each email address.
    pub fn records_by_email(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.state().records.values() {
            if let Some(e) = r["emailaddress1"].as_str() {
                *out.entry(e.to_owned()).or_default() += 1;
            }
        }
        out
    }

    /// Requests that arrived while an earlier 429's Retry-After was running,
    /// allowing `in_flight_grace` for requests already on the way when the
    /// 429 went out: for each, how long after a 429 it came and that 429's
    /// Retry-After.
    pub fn retry_after_violations(&self, in_flight_grace: Duration) -> Vec<(Duration, Duration)> {
        let s = self.state();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, t) in s.log.iter().enumerate() {
            let Some(ra) = t.retry_after else { continue };
            for (j, later) in s.log.iter().enumerate().skip(i + 1) {
                let gap = later.at.duration_since(t.at);
                if gap >= ra {
                    break;
                }
                if gap > in_flight_grace && seen.insert(j) {
                    out.push((gap, ra));
                }
            }
        }
        out
    }
}

impl wiremock::Respond for FakeDataverse {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (reply, delay) = self.answer(&req.body);
        let template = reply.template();
        if delay.is_zero() {
            template
        } else {
            template.set_delay(delay)
        }
    }
}

/// The first create on `server` gets `answer`; a [`FakeDataverse`] answers
/// the rest (and every read).
pub async fn first_create_answered(server: &MockServer, answer: ResponseTemplate) -> FakeDataverse {
    on_lead_create()
        .respond_with(answer)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    mount_created(server).await
}

/// A mock of `GET /api/data/v9.2/leads(<id>)`, still to be given its answer.
pub fn on_lead_read() -> MockBuilder {
    Mock::given(method("GET")).and(path_regex(r"^/api/data/v9\.2/leads\([^)]+\)$"))
}

struct RecordReader(FakeDataverse);

impl wiremock::Respond for RecordReader {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id = req
            .url
            .path()
            .rsplit_once('(')
            .map(|(_, rest)| rest.trim_end_matches(')'))
            .unwrap_or_default();
        self.0.read(id).template()
    }
}

/// A fresh [`FakeDataverse`] answering every create on `server`.
pub async fn mount_created(server: &MockServer) -> FakeDataverse {
    let fake = FakeDataverse::new(server);
    fake.mount(server).await;
    fake
}
