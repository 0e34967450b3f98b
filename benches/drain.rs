//! How fast a backlog of queued leads drains into Dataverse when Dataverse
//! throttles, and whether leadbridge ever sends inside a Retry-After window.
//!
//! cargo bench --bench drain                    # 10,000 leads, SQLite
//! cargo bench --bench drain -- --leads 2000 --postgres postgres://postgres@127.0.0.1/test
//!
//! The fake Dataverse answers after a fixed latency and allows a fixed number
//! of requests in flight; above that it answers 429 with `Retry-After: 1` and
//! counts every request that arrives before that second has passed (beyond a
//! small allowance for requests already on the wire) as a violation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leadbridge::config::Settings;
use leadbridge::lead::{OrgName, SAMPLE_LEAD_2020, fingerprint};
use leadbridge::startup::Application;
use leadbridge::store::{Destination, NewLead};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use uuid::Uuid;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

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

#[derive(Default)]
struct Fake {
    in_flight: AtomicUsize,
    created: AtomicU64,
    requests: AtomicU64,
    throttled: AtomicU64,
    violations: AtomicU64,
    /// When the last 429's Retry-After runs out, and when it was sent.
    blocked: Mutex<Option<(Instant, Instant)>>,
    peak: AtomicUsize,
}

const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Requests sent before the client could see a 429 may still arrive after it.
const ON_THE_WIRE: Duration = Duration::from_millis(50);

async fn dataverse(fake: Arc<Fake>, latency: Duration, ceiling: usize) -> warp::reply::Response {
    fake.requests.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    {
        let blocked = fake.blocked.lock().await;
        if let Some((until, sent)) = *blocked
            && now < until
            && now.duration_since(sent) > ON_THE_WIRE
        {
            fake.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
    let n = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.peak.fetch_max(n, Ordering::Relaxed);
    let reply = if n > ceiling {
        fake.throttled.fetch_add(1, Ordering::Relaxed);
        *fake.blocked.lock().await = Some((now + RETRY_AFTER, now));
        warp::reply::with_header(
            warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"error": {"code": "0x80072326", "message": "Number of concurrent requests exceeded the limit of 52."}})),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            "Retry-After",
            "1",
        )
        .into_response()
    } else {
        tokio::time::sleep(latency).await;
        fake.created.fetch_add(1, Ordering::Relaxed);
        warp::reply::with_header(
            StatusCode::NO_CONTENT,
            "OData-EntityId",
            "http://fake/api/data/v9.2/leads(00000000-0000-0000-0000-000000000000)",
        )
        .into_response()
    };
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    reply
}

async fn start_fake(fake: Arc<Fake>, latency: Duration, ceiling: usize) -> SocketAddr {
    let token = warp::path!(String / "oauth2" / "v2.0" / "token").and(warp::post()).map(|_t: String| {
        warp::reply::json(&serde_json::json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "bench-token"
        }))
        .into_response()
    });
    let leads = warp::path!("api" / "data" / "v9.2" / "leads")
        .and(warp::post())
        .and(warp::any().map(move || Arc::clone(&fake)))
        .then(move |fake| dataverse(fake, latency, ceiling));
    let routes = token
        .or(leads)
        .unify()
        .recover(|_| async { Ok::<_, Infallible>(StatusCode::NOT_FOUND.into_response()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("fake addr");
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
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
    let fake = Arc::new(Fake::default());
    let fake_addr = start_fake(Arc::clone(&fake), a.latency, a.ceiling).await;
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
url = "http://{fake_addr}"
mapping = "{mapping}"
endpoint_secrets = ["bench-secret-0123456789"]
[organizations.contoso.auth]
authority_host = "http://{fake_addr}"
tenant_id = "t"
client_id = "c"
client_secret = "s"
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
    while fake.created.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed();
    app.stop().await;

    let created = fake.created.load(Ordering::Relaxed);
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
        "fake Dataverse          {} ms latency, 429 above {} in flight, Retry-After: 1",
        a.latency.as_millis(),
        a.ceiling
    );
    println!("created                 {created}");
    println!("drain time              {:.2} s", drain.as_secs_f64());
    println!(
        "throughput              {:.0} leads/s",
        created as f64 / drain.as_secs_f64()
    );
    println!(
        "requests                {}",
        fake.requests.load(Ordering::Relaxed)
    );
    println!(
        "429 answered            {}",
        fake.throttled.load(Ordering::Relaxed)
    );
    println!(
        "peak in flight          {}",
        fake.peak.load(Ordering::Relaxed)
    );
    println!(
        "Retry-After violations  {}",
        fake.violations.load(Ordering::Relaxed)
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
