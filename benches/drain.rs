//! How fast a backlog of queued leads drains into Dataverse when Dataverse
//! throttles, and whether leadbridge ever sends inside a Retry-After window.
//!
//! cargo bench --bench drain                    # 10,000 leads, SQLite
//! cargo bench --bench drain -- --leads 2000 --postgres postgres://postgres@127.0.0.1/test
//! cargo bench --bench drain -- --scenario strict      # 30 requests/s, 8 concurrent, 600 leads
//! cargo bench --bench drain -- --scenario dataverse   # 6000 per 5 min, 52 concurrent, 1500 leads
//!
//! The fake Dataverse (the integration tests' `tests/common/dataverse.rs`,
//! served here by warp) answers after a fixed latency. Without a scenario it
//! allows a fixed number of requests in flight (`--ceiling`) and answers
//! 429 with `Retry-After: 1` above it, and leadbridge runs with fixed
//! settings above that ceiling. With `--scenario` it applies Dataverse's
//! service protection limits for one user (`Plan::ServiceLimits`: requests
//! per sliding window, concurrent requests; Retry-After rounded up to whole
//! seconds) and leadbridge runs with its default `[delivery]` settings
//! (plus any `--set key=value`). Every request that arrives while an
//! announced Retry-After runs (beyond a small allowance for requests already
//! on the wire) counts as a violation.
//!
//! The ideal drain time the limits allow, for n leads, latency L, C
//! concurrent, N requests per window W: the last request cannot start
//! before floor((n - 1) / N) × W (each window admits N), nor can n requests
//! be answered in less than ceil(n / C) × L, so
//! ideal = max(ceil(n / C) × L, floor((n - 1) / N) × W + L).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leadbridge::config::Settings;
use leadbridge::lead::{OrgName, SAMPLE_LEAD_2020, fingerprint};
use leadbridge::startup::Application;
use leadbridge::store::{Destination, NewLead};
use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue};
use warp::reply::Reply;

mod common;

// The integration tests' fakes of Dataverse and Entra ID.
#[allow(dead_code)]
#[path = "../tests/common/dataverse.rs"]
mod dataverse;
#[allow(dead_code)]
#[path = "../tests/common/entra.rs"]
mod entra;

use dataverse::{FakeDataverse, Plan, ServiceLimits};
use entra::{CLIENT_ID, CLIENT_SECRET, TENANT, token_body};

/// Preset limits of the fake and backlog size.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A strict ceiling: 30 requests per second, 8 concurrent, 600 leads.
    Strict,
    /// Dataverse's default limits: 6000 per 5 minutes, 52 concurrent,
    /// 1500 leads.
    Dataverse,
}

struct Args {
    leads: usize,
    latency: Duration,
    ceiling: usize,
    postgres: Option<String>,
    /// With a scenario: service protection limits and default settings.
    limits: Option<ServiceLimits>,
    scenario: Option<Scenario>,
    /// `key=value` lines added to `[delivery]` (scenarios only).
    set: Vec<String>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let flags = common::Flags::from_args();
    let flag = |name: &str| flags.text(name.trim_start_matches("--"));
    let number = |name: &str| flags.get::<u64>(name.trim_start_matches("--"));
    let scenario = match flag("--scenario").as_deref() {
        Some("strict") => Some(Scenario::Strict),
        Some("dataverse") => Some(Scenario::Dataverse),
        Some(other) => panic!("unknown scenario {other}; expected strict or dataverse"),
        None => None,
    };
    let (leads, latency_ms, mut limits) = match scenario {
        Some(Scenario::Strict) => (600, 50, Some(ServiceLimits::per_second(30, 8))),
        Some(Scenario::Dataverse) => (1500, 50, Some(ServiceLimits::DATAVERSE)),
        None => (10_000, 20, None),
    };
    if let Some(l) = limits.as_mut() {
        if let Some(n) = number("--window-requests") {
            l.requests = n as usize;
        }
        if let Some(w) = number("--window-s") {
            l.window = Duration::from_secs(w);
        }
        if let Some(c) = number("--max-in-flight") {
            l.max_in_flight = c as usize;
        }
    }
    let set = argv
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--set")
        .filter_map(|(i, _)| argv.get(i + 1).cloned())
        .collect();
    Args {
        leads: number("--leads").map_or(leads, |n| n as usize),
        latency: Duration::from_millis(number("--latency-ms").unwrap_or(latency_ms)),
        ceiling: number("--ceiling").map_or(16, |n| n as usize),
        postgres: flag("--postgres"),
        limits,
        scenario,
        set,
    }
}

/// The shortest drain the limits allow (see the module documentation).
fn ideal(leads: usize, latency: Duration, limits: &ServiceLimits) -> Duration {
    let leads = leads.max(1);
    let rounds = leads.div_ceil(limits.max_in_flight.max(1));
    let by_concurrency = latency.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX));
    let windows = (leads - 1) / limits.requests.max(1);
    let by_rate = limits
        .window
        .saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
        + latency;
    by_concurrency.max(by_rate)
}

const RETRY_AFTER_S: u64 = 1;
/// Requests sent before the client could see a 429 may still arrive after it.
const ON_THE_WIRE: Duration = Duration::from_millis(50);

/// The Dataverse fake's answer as a warp response, sent after its delay.
async fn send(fake: FakeDataverse, body: Bytes) -> warp::reply::Response {
    let (reply, delay) = fake.answer(&body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    to_response(reply)
}

fn to_response(reply: dataverse::Reply) -> warp::reply::Response {
    let (body, content_type) = reply.body.unwrap_or_default();
    let mut response = body.into_response();
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    let headers = response.headers_mut();
    headers.remove(CONTENT_TYPE);
    if !content_type.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in reply.headers {
        headers.insert(name, HeaderValue::from_str(&value).expect("header value"));
    }
    response
}

/// Entra ID and Dataverse on one small warp server: wiremock would keep a
/// copy of every request, which would swamp the peak RSS this measures.
async fn start_fake(latency: Duration, plan: Plan) -> (String, FakeDataverse) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let base = format!("http://{}", listener.local_addr().expect("fake addr"));
    let fake = FakeDataverse::at(base.clone())
        .with_plan(plan)
        .with_latency(latency)
        .without_bodies();
    let token = warp::path!(String / "oauth2" / "v2.0" / "token")
        .and(warp::post())
        .map(|_tenant: String| warp::reply::json(&token_body("bench-token", 3599)).into_response());
    let leads_fake = fake.clone();
    let leads = warp::path!("api" / "data" / "v9.2" / "leads")
        .and(warp::post())
        .and(warp::body::bytes())
        .then(move |body| send(leads_fake.clone(), body));
    // `GET leads(<id>)`: a duplicate key is verified by reading the record.
    let reads_fake = fake.clone();
    let reads = warp::path!("api" / "data" / "v9.2" / String)
        .and(warp::get())
        .and_then(move |segment: String| {
            let fake = reads_fake.clone();
            async move {
                match segment
                    .strip_prefix("leads(")
                    .and_then(|rest| rest.strip_suffix(')'))
                {
                    Some(id) => Ok(to_response(fake.read(id))),
                    None => Err(warp::reject::not_found()),
                }
            }
        });
    let routes = token
        .or(leads)
        .unify()
        .or(reads)
        .unify()
        .recover(|_| async { Ok::<_, Infallible>(StatusCode::NOT_FOUND.into_response()) });
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    (base, fake)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let a = args();
    let plan = match a.limits {
        Some(limits) => Plan::ServiceLimits(limits),
        None => Plan::ConcurrencyLimit {
            max_in_flight: a.ceiling,
            retry_after_s: RETRY_AFTER_S,
        },
    };
    let (fake_url, fake) = start_fake(a.latency, plan).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store_url = common::store_url(dir.path(), a.postgres.as_deref()).await;
    let config = dir.path().join("bench.toml");
    let delivery = if a.scenario.is_some() {
        // The application's defaults, unless told otherwise.
        a.set.join("\n")
    } else {
        // Deliberately above the fake's ceiling: leadbridge has to find it.
        "concurrency = 48\norg_concurrency = 32\norg_requests_per_minute = 1000000\npoll_interval = \"100ms\"".to_owned()
    };
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[delivery]
{delivery}
[log]
format = "text"
level = "warn"
[organizations.contoso]
url = "{fake_url}"
allow_http = true
mapping = "{mapping}"
endpoint_secrets = ["bench-secret-0123456789"]
[organizations.contoso.auth]
authority_host = "{fake_url}"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
"#,
            mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/contoso.yaml"),
            delivery = delivery,
        ),
    )
    .expect("write config");
    let settings = Settings::load_with_env(&config, Some(Default::default())).expect("config");
    leadbridge::telemetry::init(&settings.log);

    // The backlog: queued before the worker starts.
    let store = leadbridge::store::connect(&store_url).await.expect("store");
    let org = OrgName::parse("contoso").expect("org");
    let fill = Instant::now();
    for n in 0..a.leads {
        let payload =
            SAMPLE_LEAD_2020.replace("someone@contoso.com", &format!("someone.{n}@contoso.com"));
        let doc: serde_json::Value = serde_json::from_str(&payload).expect("json");
        let lead = NewLead {
            id: leadbridge::ids::LeadId::generate(),
            org: org.clone(),
            received_at: OffsetDateTime::now_utc(),
            request_id: Uuid::new_v4().to_string(),
            is_test: false,
            fingerprint: fingerprint(&doc),
            payload,
            destinations: vec![Destination::Dataverse],
        };
        store.insert_lead(&lead, None).await.expect("insert");
    }
    let fill_time = fill.elapsed();
    drop(store);

    let started = Instant::now();
    let app = Application::build(settings).await.expect("app");
    let total = a.leads as u64;
    let deadline = started + Duration::from_secs(1800);
    while (fake.record_count() as u64) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed();
    app.stop().await;

    let created = fake.record_count() as u64;
    let log = fake.log();
    println!(
        "backend                 {}",
        if a.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    println!(
        "leads queued            {} (inserted in {:.1} s)",
        a.leads,
        fill_time.as_secs_f64()
    );
    match &a.limits {
        Some(l) => println!(
            "fake Dataverse          {} ms latency, {} requests per {} s, {} concurrent; leadbridge: default [delivery]{}",
            a.latency.as_millis(),
            l.requests,
            l.window.as_secs(),
            l.max_in_flight,
            if a.set.is_empty() {
                String::new()
            } else {
                format!(" + {}", a.set.join(", "))
            }
        ),
        None => println!(
            "fake Dataverse          {} ms latency, 429 above {} in flight, Retry-After: {RETRY_AFTER_S}",
            a.latency.as_millis(),
            a.ceiling
        ),
    }
    println!("created                 {created}");
    println!("drain time              {:.2} s", drain.as_secs_f64());
    println!(
        "throughput              {:.0} creates/s",
        created as f64 / drain.as_secs_f64()
    );
    println!("requests                {}", log.len());
    let refused = |code: &str| log.iter().filter(|l| l.limit_code == Some(code)).count();
    println!(
        "429 answered            {} ({} for requests per window, {} for concurrency)",
        log.iter().filter(|l| l.status == 429).count(),
        refused(dataverse::REQUESTS_LIMIT),
        refused(dataverse::CONCURRENCY_LIMIT),
    );
    println!(
        "duplicate-key answers   {}",
        log.iter().filter(|l| l.status == 412).count()
    );
    println!("peak in flight          {}", fake.peak_in_flight());
    let violating = fake.retry_after_violations(ON_THE_WIRE);
    let violations = violating.len();
    println!("Retry-After violations  {violations}");
    if let Some((gap, ra)) = violating.iter().max() {
        println!(
            "                        the latest {} ms into a Retry-After of {} s",
            gap.as_millis(),
            ra.as_secs()
        );
    }
    let each_once = created == total && fake.records().len() == a.leads;
    println!("each lead created once  {each_once}");
    if let Some(l) = &a.limits {
        let ideal = ideal(a.leads, a.latency, l);
        let ratio = drain.as_secs_f64() / ideal.as_secs_f64();
        println!(
            "ideal drain time        {:.2} s ({:.0} creates/s)",
            ideal.as_secs_f64(),
            a.leads as f64 / ideal.as_secs_f64()
        );
        println!("ratio to ideal          {ratio:.2}");
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        match a.scenario {
            Some(Scenario::Strict) => println!(
                "target                  drain <= 1.25 x ideal: {}",
                verdict(ratio <= 1.25 && violations == 0 && each_once)
            ),
            Some(Scenario::Dataverse) => println!(
                "target                  >= 150 creates/s: {}",
                verdict(
                    created as f64 / drain.as_secs_f64() >= 150.0 && violations == 0 && each_once
                )
            ),
            None => {}
        }
    }
    println!(
        "peak RSS                {:.0} MiB (bench process: app + fake)",
        rss_mib()
    );
    if created < total {
        eprintln!("did not drain within 30 minutes");
        std::process::exit(1);
    }
}
