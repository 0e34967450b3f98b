//! Test harness: the real application on a random port, a real SQLite file
//! (or PostgreSQL database), and wiremock fakes of Entra ID and Dataverse
//! that answer like the real services (status codes, headers, error bodies).
//!
//! - [`binary`]: the `leadbridge` binary as a child process.
//! - [`dataverse`]: the Dataverse fake (record creation, errors, service
//!   protection limits); [`dataverse_metadata`]: its metadata and WhoAmI.
//! - [`entra`]: the Entra ID token endpoint fake.
//! - [`smtp`]: a real SMTP server on loopback, in process.

#![allow(dead_code)]

pub mod app;
pub mod binary;
pub mod dataverse;
pub mod dataverse_metadata;
pub mod entra;
pub mod history_page;
pub mod smtp;
pub mod webdriver;

pub use app::*;
pub use binary::*;
pub use dataverse::*;
pub use dataverse_metadata::*;
pub use entra::*;
pub use smtp::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use leadbridge::config::Settings;
use leadbridge::ids::{LeadId, RecordId};
use leadbridge::startup::Application;
pub use leadbridge::startup::WorkerMode;
use leadbridge::store::{DeliveryStatus, DeliveryView};
use serde_json::Value;
use uuid::Uuid;
use wiremock::{MockServer, Request};

pub const SECRET: &str = "test-endpoint-secret-0123456789";
pub const SECOND_SECRET: &str = "rotated-endpoint-secret-98765";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn fixture(name: &str) -> PathBuf {
    repo_path("tests/fixtures").join(name)
}

/// A mapping file with `yaml` in a directory of its own (gone with the
/// returned guard).
pub fn mapping_file(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("contoso.yaml");
    std::fs::write(&path, yaml).expect("write mapping");
    (dir, path)
}

/// `[delivery] backoff_initial` and `backoff_max` of [`TestConfig::retry_at_once`]:
/// a failed attempt's retry is due by the next worker pass.
pub const RETRY_AT_ONCE: (&str, &str) = ("1ns", "1ns");

/// How a test wants the app configured.
pub struct TestConfig {
    /// Who runs deliveries in a [`TestApp`]. [`WorkerMode::Manual`] (the
    /// default): nothing is attempted until the test calls
    /// [`TestApp::deliver_due`] or [`TestApp::run_worker_once`], so what a
    /// test sees does not depend on timing. [`WorkerMode::Background`]: the
    /// worker's own loop, for tests about that loop (throttling,
    /// Retry-After, shutdown), which wait with [`TestApp::wait_for`]. The
    /// binary in a child process ([`Served`], [`Fakes::cli`]) always runs its
    /// own worker, whatever this says.
    pub worker: WorkerMode,
    pub dry_run: bool,
    pub mapping: PathBuf,
    pub max_attempts: u32,
    /// `[delivery] concurrency`: deliveries one worker pass claims at most.
    pub concurrency: usize,
    /// `[delivery] backoff_initial` and `backoff_max` (100 ms and 400 ms).
    pub backoff: (&'static str, &'static str),
    /// Extra `[delivery]` lines.
    pub delivery_toml: String,
    /// Extra `[server]` lines.
    pub server_toml: String,
    /// `[server] max_body_bytes` (4096).
    pub max_body_bytes: usize,
    /// `[delivery] lease`; `None` leaves the product default (30 s).
    pub lease: Option<&'static str>,
    /// `[delivery] request_timeout` (2 s).
    pub request_timeout: &'static str,
    /// The store; `None`: [`test_store_url`] (the backend under test).
    pub store_url: Option<String>,
    /// Extra lines at the end of `[organizations.contoso.auth]`, or new
    /// sections; `{entra}` and `{dataverse}` stand for the fakes' base URLs.
    pub extra_toml: String,
    /// Replaces the `client_secret = …` line of `[organizations.contoso.auth]`
    /// (authority_host, tenant_id and client_id stay). `{entra}` stands for the
    /// Entra fake's base URL, which is only known once it runs.
    pub credential: Option<String>,
    /// `None`: no admin token, `/admin/...` disabled.
    pub admin_token: Option<String>,
    pub log_format: &'static str,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            worker: WorkerMode::Manual,
            dry_run: false,
            mapping: repo_path("mappings/contoso.yaml"),
            max_attempts: 5,
            concurrency: 4,
            backoff: ("100ms", "400ms"),
            delivery_toml: String::new(),
            server_toml: String::new(),
            max_body_bytes: 4096,
            lease: None,
            request_timeout: "2s",
            store_url: None,
            extra_toml: String::new(),
            credential: None,
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            log_format: "text",
        }
    }
}

impl TestConfig {
    /// The defaults with JSON logs, which [`Served`] needs: it reads the
    /// listening addresses from them.
    pub fn json_logs() -> Self {
        Self {
            log_format: "json",
            ..Default::default()
        }
    }

    /// The defaults with [`RETRY_AT_ONCE`]: [`TestApp::deliver_due`] runs a
    /// delivery's retries to its outcome, with no wait in between.
    pub fn retry_at_once() -> Self {
        Self {
            backoff: RETRY_AT_ONCE,
            ..Default::default()
        }
    }

    /// The defaults with the worker's own loop running deliveries.
    pub fn background_worker() -> Self {
        Self {
            worker: WorkerMode::Background,
            ..Default::default()
        }
    }
}

// ---- store ------------------------------------------------------------------

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

/// A fresh PostgreSQL database for a test that needs PostgreSQL whatever
/// the backend under test (several replicas): on
/// `LEADBRIDGE_TEST_POSTGRES_URL`, which CI always sets. `None` (the test
/// skips) only outside CI: under `CI=true` a missing PostgreSQL fails the
/// test, so that CI never passes without running it.
pub async fn postgres_database(test: &str) -> Option<String> {
    match std::env::var("LEADBRIDGE_TEST_POSTGRES_URL") {
        Ok(base) => Some(fresh_postgres_database(&base).await),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test} needs PostgreSQL: CI must set LEADBRIDGE_TEST_POSTGRES_URL")
        }
        Err(_) => {
            eprintln!("{test} skipped: it needs PostgreSQL (LEADBRIDGE_TEST_POSTGRES_URL)");
            None
        }
    }
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres")
}

// ---- fakes and config ---------------------------------------------------------

/// Entra ID and Dataverse fakes, a store and a config file pointing at them.
pub struct Fakes {
    pub entra: MockServer,
    pub dataverse: MockServer,
    pub dir: tempfile::TempDir,
    pub store_url: String,
    pub config_path: PathBuf,
}

impl Fakes {
    pub async fn start(cfg: &TestConfig) -> Self {
        let entra = MockServer::start().await;
        let dataverse = MockServer::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let store_url = match &cfg.store_url {
            Some(url) => url.clone(),
            None => test_store_url(dir.path()).await,
        };
        let config_path = dir.path().join("config.toml");
        let admin_token = cfg
            .admin_token
            .as_deref()
            .map(|t| format!("token = \"{t}\""))
            .unwrap_or_default();
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {max_body_bytes}
{server_extra}

[admin]
listen = "127.0.0.1:0"
{admin_token}

[store]
url = "{store_url}"

[delivery]
concurrency = {concurrency}
poll_interval = "50ms"
max_attempts = {max_attempts}
backoff_initial = "{backoff_initial}"
backoff_max = "{backoff_max}"
request_timeout = "{request_timeout}"
{lease}
shutdown_grace = "2s"
{delivery_extra}

[log]
format = "{log_format}"

[organizations.contoso]
url = "{dv}"
# The fakes of Dataverse and Entra ID speak plain http.
allow_http = true
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
            concurrency = cfg.concurrency,
            backoff_initial = cfg.backoff.0,
            backoff_max = cfg.backoff.1,
            delivery_extra = cfg.delivery_toml,
            server_extra = cfg.server_toml,
            max_body_bytes = cfg.max_body_bytes,
            request_timeout = cfg.request_timeout,
            lease = cfg
                .lease
                .map(|l| format!("lease = \"{l}\""))
                .unwrap_or_default(),
            log_format = cfg.log_format,
            dv = dataverse.uri(),
            dry_run = cfg.dry_run,
            mapping = cfg.mapping.display(),
            entra = entra.uri(),
            extra = cfg
                .extra_toml
                .replace("{entra}", &entra.uri())
                .replace("{dataverse}", &dataverse.uri()),
            credential = cfg
                .credential
                .as_deref()
                .unwrap_or(&format!("client_secret = \"{CLIENT_SECRET}\""))
                .replace("{entra}", &entra.uri()),
        );
        std::fs::write(&config_path, toml).expect("write config");
        Self {
            entra,
            dataverse,
            dir,
            store_url,
            config_path,
        }
    }

    /// Writes `contents` to `name` in this test's directory.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Runs `leadbridge <args> --config <this config>` to completion.
    pub async fn cli(&self, args: &[&str]) -> Run {
        run_with_config(&self.config_path, args).await
    }

    /// Every `POST …/leads` Dataverse received.
    pub async fn create_requests(&self) -> Vec<Request> {
        requests_to(&self.dataverse, LEADS_PATH).await
    }

    /// The JSON bodies of the creates, in order.
    pub async fn create_bodies(&self) -> Vec<Value> {
        self.create_requests()
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("a JSON create"))
            .collect()
    }

    /// The body of the latest create.
    pub async fn last_create_body(&self) -> Value {
        self.create_bodies().await.pop().expect("a create")
    }

    /// The JSON body Dataverse received for the record `record_id`.
    pub async fn sent_record(&self, record_id: RecordId) -> Value {
        self.create_requests()
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|v| v["leadid"] == record_id.to_string())
            .unwrap_or_else(|| panic!("no Dataverse request for record {record_id}"))
    }

    /// Every request to Entra ID's token endpoint.
    pub async fn token_requests(&self) -> Vec<Request> {
        requests_to(&self.entra, TOKEN_PATH).await
    }
}

/// Every request `server` received.
pub async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("the fakes record requests")
}

/// The requests to `path_` that `server` received.
pub async fn requests_to(server: &MockServer, path_: &str) -> Vec<Request> {
    received(server)
        .await
        .into_iter()
        .filter(|r| r.url.path() == path_)
        .collect()
}

// ---- leads ----------------------------------------------------------------------

pub fn sample_2020() -> &'static str {
    leadbridge::lead::SAMPLE_LEAD_2020
}

pub fn sample_2018() -> &'static str {
    leadbridge::lead::SAMPLE_LEAD_2018
}

/// The record the shipped mapping makes of a seed sample, without the
/// `leadid` each delivery generates.
pub fn seed_sample_record(sample: &str) -> Value {
    let mut v = serde_json::json!({
        "firstname": "Some",
        "lastname": "One",
        "emailaddress1": "someone@contoso.com",
        "telephone1": "16175555555",
        "address1_country": "USA",
        "companyname": "Contoso",
        "jobtitle": "Esquire",
        "subject": "Test Microsoft",
    });
    if sample.contains("Description") {
        v["description"] = serde_json::json!("Test run through Power Automate");
    }
    v
}

/// A fresh lead each call (process-wide counter), never a duplicate.
pub fn next_lead() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(1_000_000);
    lead_n(N.fetch_add(1, Ordering::Relaxed))
}

/// The email address of [`lead_n`]`(n)`.
pub fn email_n(n: usize) -> String {
    format!("someone.{n}@contoso.com")
}

/// The seed sample with a distinct email, so it is not a duplicate of another.
pub fn lead_n(n: usize) -> String {
    sample_2020().replace("someone@contoso.com", &email_n(n))
}

/// The marketplace's URL for `org`'s leads on the listener at `base`.
pub fn lead_url(base: &str, org: &str, code: &str) -> String {
    format!("{base}/leads/{org}?code={code}")
}

/// A lead POSTed as JSON to `url`, as the marketplace sends it.
pub fn post_lead_to(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Content-Type", "application/json")
        .body(body)
}

// ---- helpers --------------------------------------------------------------------

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
