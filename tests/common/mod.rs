//! Test harness: the real application on a random port, a real SQLite file,
//! and wiremock fakes of Entra ID and Dataverse that answer like the real
//! services (status codes, headers, error bodies).

#![allow(dead_code)]

pub mod fake_dataverse;
pub mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use leadbridge::config::Settings;
use leadbridge::startup::Application;
use leadbridge::store::{DeliveryStatus, DeliveryView};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const SECRET: &str = "test-endpoint-secret-0123456789";
pub const SECOND_SECRET: &str = "rotated-endpoint-secret-98765";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const CLIENT_SECRET: &str = "client-secret-value-do-not-log";
pub const TOKEN_PATH: &str = "/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token";
pub const LEADS_PATH: &str = "/api/data/v9.2/leads";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// How a test wants the app configured.
pub struct TestConfig {
    pub dry_run: bool,
    pub mapping: PathBuf,
    pub max_attempts: u32,
    /// Extra `[delivery]` lines.
    pub delivery_toml: String,
    pub lease: &'static str,
    /// Extra lines at the end of `[organizations.contoso.auth]`, or new sections.
    pub extra_toml: String,
    /// Replaces the `client_secret = …` line of `[organizations.contoso.auth]`
    /// (authority_host, tenant_id and client_id stay). `{entra}` stands for the
    /// Entra fake's base URL, which is only known once it runs.
    pub credential: Option<String>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            mapping: repo_path("mappings/contoso.yaml"),
            max_attempts: 5,
            delivery_toml: String::new(),
            lease: "30s",
            extra_toml: String::new(),
            credential: None,
        }
    }
}

/// `LEADBRIDGE_TEST_BACKEND=postgres` runs the suite on PostgreSQL (a fresh
/// database per test on `LEADBRIDGE_TEST_POSTGRES_URL`); SQLite otherwise.
pub async fn test_store_url(dir: &Path) -> String {
    match std::env::var("LEADBRIDGE_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let base = std::env::var("LEADBRIDGE_TEST_POSTGRES_URL")
                .expect("LEADBRIDGE_TEST_BACKEND=postgres needs LEADBRIDGE_TEST_POSTGRES_URL");
            fresh_postgres_database(&base).await
        }
        _ => format!("sqlite://{}", dir.join("data/leadbridge.db").display()),
    }
}

pub async fn fresh_postgres_database(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("lb_test_{}", Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(base)
        .await
        .expect("PostgreSQL reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("url with a database name");
    format!("{prefix}/{name}")
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres")
}

pub struct TestApp {
    pub app: Option<Application>,
    pub base: String,
    pub entra: MockServer,
    pub dataverse: MockServer,
    pub dir: tempfile::TempDir,
    pub store_url: String,
    pub http: reqwest::Client,
    pub config_path: PathBuf,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestConfig::default()).await
    }

    pub async fn spawn_with(cfg: TestConfig) -> Self {
        let mut me = Self::prepare(cfg).await;
        me.start().await;
        me
    }

    /// Fakes, store and config file, without starting the app (for tests
    /// that run the binary as a child process).
    pub async fn prepare(cfg: TestConfig) -> Self {
        let entra = MockServer::start().await;
        let dataverse = MockServer::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let store_url = test_store_url(dir.path()).await;
        let config_path = dir.path().join("config.toml");
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[store]
url = "{store_url}"

[delivery]
concurrency = 4
poll_interval = "50ms"
max_attempts = {max_attempts}
backoff_initial = "100ms"
backoff_max = "400ms"
request_timeout = "2s"
lease = "{lease}"
shutdown_grace = "2s"
{delivery_extra}

[log]
format = "text"

[organizations.contoso]
url = "{dv}"
dry_run = {dry_run}
mapping = "{mapping}"
endpoint_secrets = ["{SECRET}", "{SECOND_SECRET}"]

[organizations.contoso.auth]
authority_host = "{entra}"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
{credential}
{extra}
"#,
            max_attempts = cfg.max_attempts,
            delivery_extra = cfg.delivery_toml,
            lease = cfg.lease,
            dv = dataverse.uri(),
            dry_run = cfg.dry_run,
            mapping = cfg.mapping.display(),
            entra = entra.uri(),
            extra = cfg.extra_toml,
            credential = cfg
                .credential
                .as_deref()
                .unwrap_or(&format!("client_secret = \"{CLIENT_SECRET}\""))
                .replace("{entra}", &entra.uri()),
        );
        std::fs::write(&config_path, toml).expect("write config");
        Self {
            app: None,
            base: String::new(),
            entra,
            dataverse,
            dir,
            store_url,
            http: reqwest::Client::new(),
            config_path,
        }
    }

    /// Runs the `leadbridge` binary with this app's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_leadbridge"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .expect("run leadbridge")
    }

    pub fn settings(&self) -> Settings {
        Settings::load_with_env(&self.config_path, Some(HashMap::new())).expect("valid test config")
    }

    /// Starts (or restarts) the application on the same store and fakes.
    pub async fn start(&mut self) {
        let app = Application::build(self.settings())
            .await
            .expect("app starts");
        self.base = format!("http://{}", app.local_addr());
        self.app = Some(app);
    }

    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    pub fn lead_url(&self, org: &str, code: &str) -> String {
        format!("{}/leads/{org}?code={code}", self.base)
    }

    pub async fn post_lead(&self, body: &str) -> reqwest::Response {
        self.http
            .post(self.lead_url("contoso", SECRET))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent")
    }

    /// Posts a lead and returns its id from the 202 answer.
    pub async fn accept_lead(&self, body: &str) -> Uuid {
        let r = self.post_lead(body).await;
        assert_eq!(r.status(), 202, "lead not accepted");
        let v: Value = r.json().await.expect("json answer");
        assert_eq!(v["status"], "accepted");
        v["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
    }

    pub async fn deliveries(&self, lead_id: Uuid) -> Vec<DeliveryView> {
        let store = self.app.as_ref().expect("running").store();
        store.deliveries_of_lead(lead_id).await.expect("store read")
    }

    /// Waits until the lead's delivery reaches `status`.
    pub async fn wait_for(
        &self,
        lead_id: Uuid,
        status: DeliveryStatus,
        within: Duration,
    ) -> DeliveryView {
        let deadline = Instant::now() + within;
        loop {
            let ds = self.deliveries(lead_id).await;
            if let Some(d) = ds.iter().find(|d| d.status == status) {
                return d.clone();
            }
            if Instant::now() > deadline {
                panic!("lead {lead_id} did not reach {status} within {within:?}: {ds:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A separate connection to the app's database, for looking behind its back.
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.store_url)
            .await
            .expect("open db")
    }

    /// Rows in the store, read straight from the database.
    pub async fn count(&self, table: &'static str) -> i64 {
        let pool = self.db().await;
        let sql = match table {
            "leads" => "SELECT COUNT(*) FROM leads",
            "deliveries" => "SELECT COUNT(*) FROM deliveries",
            "attempts" => "SELECT COUNT(*) FROM attempts",
            other => panic!("unknown table {other}"),
        };
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    }

    /// The JSON body Dataverse received for the record `record_id`.
    pub async fn sent_record(&self, record_id: Uuid) -> Value {
        self.requests_to(&self.dataverse, LEADS_PATH)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|v| v["leadid"] == record_id.to_string())
            .unwrap_or_else(|| panic!("no Dataverse request for record {record_id}"))
    }

    pub fn mappings(&self) -> std::sync::Arc<leadbridge::mapping::MappingRegistry> {
        self.app.as_ref().expect("running").mappings()
    }

    pub async fn requests_to(&self, server: &MockServer, path_: &str) -> Vec<Request> {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == path_)
            .collect()
    }
}

// ---- Entra ID fake --------------------------------------------------------

pub fn token_ok(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
}

/// An Entra error body as the v2.0 endpoint sends it.
pub fn entra_error(status: u16, error: &str, code: u32, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description}\r\nTrace ID: 0f1c2d3e-0000-4000-8000-000000000000\r\nCorrelation ID: 9a8b7c6d-0000-4000-8000-000000000000\r\nTimestamp: 2026-11-22 10:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2026-11-22 10:00:00Z",
        "trace_id": "0f1c2d3e-0000-4000-8000-000000000000",
        "correlation_id": "9a8b7c6d-0000-4000-8000-000000000000",
        "error_uri": "https://login.microsoftonline.com/error?code=".to_owned() + &code.to_string(),
    }))
}

pub async fn mount_token(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_ok(token, 3599))
        .mount(server)
        .await;
}

// ---- Dataverse fake -------------------------------------------------------

/// 204 No Content with `OData-EntityId`, echoing the client-generated key.
pub struct CreatedResponder {
    pub base: String,
}

impl wiremock::Respond for CreatedResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let id = body["leadid"]
            .as_str()
            .unwrap_or("00000000-0000-0000-0000-000000000000");
        ResponseTemplate::new(204)
            .insert_header("OData-Version", "4.0")
            .insert_header(
                "OData-EntityId",
                format!("{}{LEADS_PATH}({id})", self.base).as_str(),
            )
    }
}

pub async fn mount_created(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(LEADS_PATH))
        .respond_with(CreatedResponder { base: server.uri() })
        .mount(server)
        .await;
}

pub fn dataverse_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("OData-Version", "4.0")
        .set_body_raw(
            serde_json::to_vec(&json!({"error": {"code": code, "message": message}}))
                .unwrap_or_default(),
            "application/json; odata.metadata=minimal",
        )
}

pub fn sample_2020() -> &'static str {
    leadbridge::lead::SAMPLE_LEAD_2020
}

pub fn sample_2018() -> &'static str {
    leadbridge::lead::SAMPLE_LEAD_2018
}

/// A fresh lead each call (process-wide counter), never a duplicate.
pub fn next_lead() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(1_000_000);
    lead_n(N.fetch_add(1, Ordering::Relaxed))
}

/// The seed sample with a distinct email, so it is not a duplicate of another.
pub fn lead_n(n: usize) -> String {
    sample_2020().replace("someone@contoso.com", &format!("someone.{n}@contoso.com"))
}

// ---- helpers --------------------------------------------------------------

/// Polls `done` until it holds; panics with `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fields of a form-encoded body.
pub fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub fn fixture(name: &str) -> PathBuf {
    repo_path("tests/fixtures").join(name)
}

/// A directory laid out and updated the way the kubelet does a ConfigMap
/// volume: `..<timestamp>/` holds the files, `..data` links to it, and each
/// `<key>` is a symlink to `..data/<key>`. An update writes a new timestamped
/// directory, points a `..data_tmp` symlink at it, renames that over `..data`
/// (atomic) and removes the old directory.
pub struct ConfigMapVolume {
    pub dir: PathBuf,
    current: Option<String>,
    updates: u32,
}

impl ConfigMapVolume {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).expect("volume dir");
        let mut me = Self {
            dir: dir.to_owned(),
            current: None,
            updates: 0,
        };
        me.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("key symlink");
        }
        me
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    pub fn update(&mut self, files: &[(&str, &str)]) {
        self.updates += 1;
        let stamp = format!("..2026_11_22_10_00_{:02}.{:09}", self.updates, 4242);
        let target = self.dir.join(&stamp);
        std::fs::create_dir(&target).expect("timestamped dir");
        for (name, content) in files {
            std::fs::write(target.join(name), content).expect("write key");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).expect("..data_tmp symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        if let Some(old) = self.current.replace(stamp) {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old dir");
        }
    }
}
