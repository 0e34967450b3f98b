//! How fast a backlog of queued leads drains into Dataverse when Dataverse
//! throttles, and whether leadbridge ever sends inside a Retry-After window.
//!
//! cargo bench --bench drain                    # 10,000 leads, SQLite
//! cargo bench --bench drain -- --leads 2000 --postgres postgres://postgres@127.0.0.1/test
//!
//! The fake Dataverse (the integration tests' `tests/common/dataverse.rs`,
//! served here by warp) answers after a fixed latency and allows a fixed number of requests in
//! flight; above that it answers 429 with `Retry-After: 1` at once. Every
//! request that arrives before that second has passed (beyond a small
//! allowance for requests already on the wire) counts as a violation.

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

// The integration tests' fakes of Dataverse and Entra ID.
#[allow(dead_code)]
#[path = "../tests/common/dataverse.rs"]
mod dataverse;
#[allow(dead_code)]
#[path = "../tests/common/entra.rs"]
mod entra;

use dataverse::{FakeDataverse, Plan};
use entra::{CLIENT_ID, CLIENT_SECRET, TENANT, token_body};

struct Args {
    leads: usize,
    latency: Duration,
    ceiling: usize,
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        leads: 10_000,
        latency: Duration::from_millis(20),
        ceiling: 16,
        postgres: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--leads" => a.leads = next.parse().unwrap_or(a.leads),
            "--latency-ms" => a.latency = Duration::from_millis(next.parse().unwrap_or(20)),
            "--ceiling" => a.ceiling = next.parse().unwrap_or(a.ceiling),
            "--postgres" => a.postgres = Some(next),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
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
async fn start_fake(latency: Duration, ceiling: usize) -> (String, FakeDataverse) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let base = format!("http://{}", listener.local_addr().expect("fake addr"));
    let fake = FakeDataverse::at(base.clone())
        .with_plan(Plan::ConcurrencyLimit {
            max_in_flight: ceiling,
            retry_after_s: RETRY_AFTER_S,
        })
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
    let (fake_url, fake) = start_fake(a.latency, a.ceiling).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store_url = match &a.postgres {
        Some(base) => {
            sqlx::any::install_default_drivers();
            let name = format!("lb_bench_{}", Uuid::new_v4().simple());
            let pool = sqlx::AnyPool::connect(base).await.expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create db");
            format!(
                "{}/{name}",
                base.rsplit_once('/').map_or(base.as_str(), |(p, _)| p)
            )
        }
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[delivery]
concurrency = 48
org_concurrency = 32
org_requests_per_minute = 1000000
poll_interval = "100ms"
[log]
format = "text"
level = "warn"
[organizations.contoso]
url = "{fake_url}"
mapping = "{mapping}"
endpoint_secrets = ["bench-secret-0123456789"]
[organizations.contoso.auth]
authority_host = "{fake_url}"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
"#,
            mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/contoso.yaml"),
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
    println!(
        "fake Dataverse          {} ms latency, 429 above {} in flight, Retry-After: {RETRY_AFTER_S}",
        a.latency.as_millis(),
        a.ceiling
    );
    println!("created                 {created}");
    println!("drain time              {:.2} s", drain.as_secs_f64());
    println!(
        "throughput              {:.0} leads/s",
        created as f64 / drain.as_secs_f64()
    );
    println!("requests                {}", log.len());
    println!(
        "429 answered            {}",
        log.iter().filter(|l| l.status == 429).count()
    );
    println!("peak in flight          {}", fake.peak_in_flight());
    println!(
        "Retry-After violations  {}",
        fake.retry_after_violations(ON_THE_WIRE).len()
    );
    println!(
        "peak RSS                {:.0} MiB (bench process: app + fake)",
        rss_mib()
    );
    if created < total {
        eprintln!("did not drain within 30 minutes");
        std::process::exit(1);
    }
}
