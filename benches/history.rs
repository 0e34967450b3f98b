//! The delivery history page with a long history: how long the admin
//! listener takes to answer a page (first, filtered, deep, searched), beside
//! the JSON listing `GET /admin/deliveries` in the same run, and the same
//! pages again without the indexes of migration 0005.
//!
//! cargo bench --bench history                                  # SQLite
//! cargo bench --bench history -- --postgres postgres://postgres@127.0.0.1:5432/test
//! cargo bench --bench history -- --deliveries 100000 --requests 50
//!
//! Requests are sequential (one operator), timed by the client; the worker
//! is not running.

use std::time::{Duration, Instant};

mod common;
// The integration tests' data set for the page: the same leads, the same spread.
#[allow(dead_code)]
#[path = "../tests/common/history_page.rs"]
mod history_page;

const SECRET: &str = "bench-secret-0123456789";
const TOKEN: &str = "bench-admin-token-0123456789";

struct Args {
    deliveries: usize,
    requests: usize,
    postgres: Option<String>,
}

fn args() -> Args {
    let f = common::Flags::from_args();
    Args {
        deliveries: f.get("deliveries").unwrap_or(100_000),
        requests: f.get("requests").unwrap_or(50),
        postgres: f.text("postgres"),
    }
}

struct Client {
    http: reqwest::Client,
    admin: String,
    cookie: String,
    csrf: String,
}

impl Client {
    async fn get(&self, path: &str, bearer: bool) -> String {
        let mut req = self.http.get(format!("{}{path}", self.admin));
        req = if bearer {
            req.bearer_auth(TOKEN)
        } else {
            req.header("cookie", &self.cookie)
        };
        let r = req.send().await.expect("answer");
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.expect("body")
    }

    async fn search(&self, text: &str) {
        let r = self
            .http
            .post(format!("{}/search", self.admin))
            .header("cookie", &self.cookie)
            .header("origin", &self.admin)
            .form(&[("csrf", self.csrf.as_str()), ("q", text)])
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 303);
    }

    /// The path of the page `depth` pages older than `path`.
    async fn deep(&self, path: &str, depth: usize) -> String {
        let mut at = path.to_owned();
        for _ in 0..depth {
            let body = self.get(&at, false).await;
            at = body
                .split(r#"rel="next" href=""#)
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(|s| s.replace("&amp;", "&"))
                .expect("an older page");
        }
        at
    }
}

/// p50, p99 and max of `requests` sequential GETs of `path`, after two
/// warm-up requests.
async fn measure(c: &Client, name: &str, path: &str, bearer: bool, requests: usize) {
    let _ = c.get(path, bearer).await;
    let _ = c.get(path, bearer).await;
    let mut all = Vec::with_capacity(requests);
    let mut rows = 0;
    for _ in 0..requests {
        let started = Instant::now();
        let body = c.get(path, bearer).await;
        all.push(started.elapsed());
        rows = if bearer {
            body.matches("\"lead_id\"").count()
        } else {
            body.matches("<tr class=").count()
        };
    }
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   rows {rows}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(all[all.len() - 1]),
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let store_url = common::store_url(dir.path(), a.postgres.as_deref()).await;
    let app = common::dry_run_app(
        dir.path(),
        &store_url,
        SECRET,
        "",
        &format!("token = \"{TOKEN}\""),
    )
    .await;
    let started = Instant::now();
    history_page::fill_history(app.store().as_ref(), a.deliveries).await;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&store_url).await.expect("db");
    for sql in [
        "UPDATE deliveries SET status = 'dead', last_error = 'HTTP 400' WHERE created_at % 97 = 0",
        "UPDATE deliveries SET status = 'delivered' WHERE created_at % 3 = 0 AND status = 'pending'",
    ] {
        sqlx::query(sql).execute(&db).await.expect("statuses");
    }
    println!(
        "backend {}, {} deliveries (stored in {:.1} s), {} requests per row",
        if a.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        a.deliveries,
        started.elapsed().as_secs_f64(),
        a.requests
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let admin = format!("http://{}", app.admin_addr());
    let login = http
        .post(format!("{admin}/login"))
        .header("origin", &admin)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let mut c = Client {
        http,
        admin,
        cookie,
        csrf: String::new(),
    };
    let list = c.get("/", false).await;
    let at = list.find(r#"name="csrf" value=""#).expect("csrf") + 19;
    c.csrf = list[at..at + list[at..].find('"').expect("csrf end")].to_owned();

    for indexes in ["with the indexes of 0005", "without them"] {
        println!("-- {indexes}");
        let n = a.requests;
        measure(
            &c,
            "baseline: GET /admin/deliveries?limit=50",
            "/admin/deliveries?limit=50",
            true,
            n,
        )
        .await;
        measure(
            &c,
            "baseline: … ?status=dead&limit=50",
            "/admin/deliveries?status=dead&limit=50",
            true,
            n,
        )
        .await;
        measure(&c, "page: /", "/", false, n).await;
        measure(&c, "page: /?status=dead", "/?status=dead", false, n).await;
        measure(
            &c,
            "page: /?org=fabrikam&status=delivered",
            "/?org=fabrikam&status=delivered",
            false,
            n,
        )
        .await;
        let deep = c.deep("/", 100).await;
        measure(
            &c,
            "page: / 100 pages deep (5,000 rows in)",
            &deep,
            false,
            n,
        )
        .await;
        let deep = c.deep("/?status=dead", 10).await;
        measure(&c, "page: /?status=dead 10 pages deep", &deep, false, n).await;
        c.search("company 7").await;
        measure(&c, "page: / searching 'company 7' (common)", "/", false, n).await;
        c.search("person99999@").await;
        measure(
            &c,
            "page: / searching one address (rare)",
            "/",
            false,
            n.min(10),
        )
        .await;
        c.search("").await;
        for index in [
            "deliveries_history",
            "deliveries_history_org",
            "deliveries_history_status",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {index}")))
                .execute(&db)
                .await
                .expect("drop index");
        }
    }
    db.close().await;
    app.stop().await;
}
