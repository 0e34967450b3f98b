//! Durable intake under concurrency: leads per second and latency when many
//! clients POST at once, each lead answered 202 only after it is committed,
//! against a bare warp handler on the same machine in the same run (what
//! the HTTP stack alone costs).
//!
//! cargo bench --bench intake                                  # SQLite
//! cargo bench --bench intake -- --postgres postgres://postgres@127.0.0.1:5432/test
//! cargo bench --bench intake -- --clients 32 --leads 20000
//!
//! The delivery worker is not running (manual mode): this measures intake.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leadbridge::lead::SAMPLE_LEAD_2020;
use uuid::Uuid;
use warp::Filter;

mod common;

const SECRET: &str = "bench-secret-0123456789";

struct Args {
    clients: usize,
    leads: usize,
    postgres: Option<String>,
}

fn args() -> Args {
    let f = common::Flags::from_args();
    Args {
        clients: f.get("clients").unwrap_or(32),
        leads: f.get("leads").unwrap_or(20_000),
        postgres: f.text("postgres"),
    }
}

struct Run {
    leads_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    accepted: usize,
}

/// Numbers the leads across runs: each one is a new document, never a duplicate.
static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// `clients` tasks POST distinct leads to `url` until `leads` were sent.
async fn load(url: &str, clients: usize, leads: usize) -> Run {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, next) = (http.clone(), url.to_owned(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0;
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= leads {
                    break;
                }
                let n = SERIAL.fetch_add(1, Ordering::Relaxed);
                let body = SAMPLE_LEAD_2020
                    .replace("someone@contoso.com", &format!("someone.{n}@contoso.com"));
                let sent = Instant::now();
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                latencies.push(sent.elapsed());
                if r.is_ok_and(|r| r.status() == 202) {
                    accepted += 1;
                }
            }
            (latencies, accepted)
        });
    }
    let mut all = Vec::with_capacity(leads);
    let mut accepted = 0;
    while let Some(Ok((l, a))) = tasks.join_next().await {
        all.extend(l);
        accepted += a;
    }
    let took = started.elapsed();
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Run {
        leads_per_s: all.len() as f64 / took.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: all.last().copied().unwrap_or_default(),
        accepted,
    }
}

fn print(name: &str, r: &Run) {
    println!(
        "{name:<28} {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms   202: {}",
        r.leads_per_s,
        r.p50.as_secs_f64() * 1000.0,
        r.p99.as_secs_f64() * 1000.0,
        r.max.as_secs_f64() * 1000.0,
        r.accepted
    );
}

/// The HTTP stack alone: a warp handler that reads the body and answers
/// 202 with a JSON id, storing nothing.
async fn bare_handler() -> String {
    let route = warp::path!("leads" / String)
        .and(warp::post())
        .and(warp::body::bytes())
        .map(|_org: String, _body: bytes::Bytes| {
            warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"id": Uuid::new_v4(), "status": "accepted"})),
                warp::http::StatusCode::ACCEPTED,
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/leads/contoso?code={SECRET}")
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::store_url(dir.path(), a.postgres.as_deref()).await;
    let app = common::dry_run_app(
        dir.path(),
        &store,
        SECRET,
        "auth_failures_per_minute = 0",
        "",
    )
    .await;
    let leadbridge_url = format!("http://{}/leads/contoso?code={SECRET}", app.local_addr());
    let bare_url = bare_handler().await;

    println!(
        "backend {}, {} clients, {} requests each run",
        if a.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        a.clients,
        a.leads
    );
    // Warm-up, then the two alternately, twice.
    let _ = load(&bare_url, a.clients, 1000).await;
    let _ = load(&leadbridge_url, a.clients, 1000).await;
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let bare = load(&bare_url, a.clients, a.leads).await;
        print(&format!("bare warp handler ({round})"), &bare);
        let durable = load(&leadbridge_url, a.clients, a.leads).await;
        print(&format!("leadbridge, durable ({round})"), &durable);
        ratios.push(durable.leads_per_s / bare.leads_per_s);
        if durable.accepted != a.leads {
            eprintln!("only {} of {} accepted", durable.accepted, a.leads);
            std::process::exit(1);
        }
    }
    println!(
        "durable / bare          {}",
        ratios
            .iter()
            .map(|r| format!("{:.1} %", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    app.stop().await;
}
