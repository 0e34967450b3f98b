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
use leadbridge::ids::{LeadId, RecordId};
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
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-access-token.sig";

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
    /// `None`: no admin token, `/admin/...` disabled.
    pub admin_token: Option<String>,
    pub log_format: &'static str,
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
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            log_format: "text",
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
    /// `http://<admin listener>`.
    pub admin: String,
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
        let Fakes {
            entra,
            dataverse,
            dir,
            store_url,
            config_path,
        } = Fakes::start(&cfg).await;
        Self {
            app: None,
            base: String::new(),
            admin: String::new(),
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
        self.admin = format!("http://{}", app.admin_addr());
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
    pub async fn accept_lead(&self, body: &str) -> LeadId {
        let r = self.post_lead(body).await;
        assert_eq!(r.status(), 202, "lead not accepted");
        let v: Value = r.json().await.expect("json answer");
        assert_eq!(v["status"], "accepted");
        v["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
    }

    pub async fn deliveries(&self, lead_id: LeadId) -> Vec<DeliveryView> {
        let store = self.app.as_ref().expect("running").store();
        store.deliveries_of_lead(lead_id).await.expect("store read")
    }

    /// Waits until the lead's delivery reaches `status`.
    pub async fn wait_for(
        &self,
        lead_id: LeadId,
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
    pub async fn sent_record(&self, record_id: RecordId) -> Value {
        self.requests_to(&self.dataverse, LEADS_PATH)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|v| v["leadid"] == record_id.to_string())
            .unwrap_or_else(|| panic!("no Dataverse request for record {record_id}"))
    }

    pub fn mappings(&self) -> std::sync::Arc<leadbridge::delivery::Organizations> {
        self.app.as_ref().expect("running").organizations()
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
        let store_url = test_store_url(dir.path()).await;
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
max_body_bytes = 4096

[admin]
listen = "127.0.0.1:0"
{admin_token}

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
format = "{log_format}"

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
            log_format = cfg.log_format,
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
            entra,
            dataverse,
            dir,
            store_url,
            config_path,
        }
    }
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

// ---- Dataverse metadata fake ----------------------------------------------

pub const WHOAMI_PATH: &str = "/api/data/v9.2/WhoAmI";
pub const USER_ID: &str = "5d9a4f3e-7b1c-ef11-840a-000d3a4b2c1d";
pub const BUSINESS_UNIT_ID: &str = "0a8c2e11-6b1c-ef11-840a-000d3a4b2c1d";
pub const ORGANIZATION_ID: &str = "c7b3e9d2-6a1c-ef11-a72e-000d3a4b2c1d";
pub const ENTITY_PATH: &str = "/api/data/v9.2/EntityDefinitions(LogicalName='lead')/Attributes";

/// `(logical name, AttributeType, IsValidForCreate, MaxLength)` of the lead
/// columns the fake knows, as a default organization has them.
pub const LEAD_COLUMNS: &[(&str, &str, bool, Option<u32>)] = &[
    ("leadid", "Uniqueidentifier", true, None),
    ("subject", "String", true, Some(300)),
    ("firstname", "String", true, Some(50)),
    ("lastname", "String", true, Some(50)),
    ("fullname", "String", false, Some(160)),
    ("emailaddress1", "String", true, Some(100)),
    ("telephone1", "String", true, Some(50)),
    ("mobilephone", "String", true, Some(20)),
    ("companyname", "String", true, Some(100)),
    ("jobtitle", "String", true, Some(100)),
    ("address1_country", "String", true, Some(80)),
    ("websiteurl", "String", true, Some(200)),
    ("description", "Memo", true, Some(2000)),
    ("leadsourcecode", "Picklist", true, None),
    ("ownerid", "Owner", true, None),
    ("parentaccountid", "Lookup", true, None),
    ("statecode", "State", true, None),
    ("statuscode", "Status", true, None),
    ("donotemail", "Boolean", true, None),
    ("createdon", "DateTime", false, None),
];

const LEAD_SOURCE_OPTIONS: [(i64, &str); 10] = [
    (1, "Advertisement"),
    (2, "Employee Referral"),
    (3, "External Referral"),
    (4, "Partner"),
    (5, "Public Relations"),
    (6, "Seminar"),
    (7, "Trade Show"),
    (8, "Web"),
    (9, "Word of Mouth"),
    (10, "Other"),
];

fn metadata_id(i: usize) -> String {
    format!(
        "{:08x}-c699-e311-9752-6c3be5a87df0",
        0x7919_4881u32 + i as u32
    )
}

fn odata_type(attribute_type: &str) -> String {
    let t = match attribute_type {
        "Owner" | "Lookup" | "Customer" => "Lookup",
        other => other,
    };
    format!("#Microsoft.Dynamics.CRM.{t}AttributeMetadata")
}

/// The answers of `EntityDefinitions(LogicalName='lead')/Attributes…`, shaped
/// like Dataverse's (`@odata.context`, `@odata.type`, `MetadataId`), with
/// `subject` limited to `subject_max` characters.
pub fn lead_metadata(base: &str, subject_max: u32) -> [(String, Value); 4] {
    let context = |sel: &str| {
        format!("{base}/api/data/v9.2/$metadata#EntityDefinitions('lead')/Attributes{sel}")
    };
    let all: Vec<Value> = LEAD_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, ty, create, _))| {
            json!({
                "@odata.type": odata_type(ty),
                "LogicalName": name,
                "AttributeType": ty,
                "IsValidForCreate": create,
                "MetadataId": metadata_id(i),
            })
        })
        .collect();
    let with_max = |kind: &str| -> Vec<Value> {
        LEAD_COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, (_, ty, _, _))| *ty == kind)
            .map(|(i, (name, _, _, max))| {
                let max = if *name == "subject" {
                    Some(subject_max)
                } else {
                    *max
                };
                json!({"LogicalName": name, "MaxLength": max, "MetadataId": metadata_id(i)})
            })
            .collect()
    };
    let options: Vec<Value> = LEAD_SOURCE_OPTIONS
        .iter()
        .map(|(v, label)| {
            json!({
                "Value": v,
                "Color": null,
                "IsManaged": true,
                "Label": {
                    "LocalizedLabels": [{"Label": label, "LanguageCode": 1033, "IsManaged": true}],
                    "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033, "IsManaged": true},
                },
            })
        })
        .collect();
    [
        (
            ENTITY_PATH.to_owned(),
            json!({"@odata.context": context("(LogicalName,AttributeType,IsValidForCreate)"), "value": all}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.StringAttributeMetadata"),
            json!({"@odata.context": context("/Microsoft.Dynamics.CRM.StringAttributeMetadata(LogicalName,MaxLength)"), "value": with_max("String")}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.MemoAttributeMetadata"),
            json!({"@odata.context": context("/Microsoft.Dynamics.CRM.MemoAttributeMetadata(LogicalName,MaxLength)"), "value": with_max("Memo")}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"),
            json!({
                "@odata.context": context("/Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet())"),
                "value": [{
                    "LogicalName": "leadsourcecode",
                    "MetadataId": metadata_id(13),
                    "OptionSet@odata.context": context("(13)/OptionSet"),
                    "OptionSet": {"MetadataId": "3b9c4f6e-0000-4000-8000-000000000013", "Options": options},
                }],
            }),
        ),
    ]
}

pub async fn mount_metadata(server: &MockServer, subject_max: u32) {
    for (p, body) in lead_metadata(&server.uri(), subject_max) {
        Mock::given(method("GET"))
            .and(path(p.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("OData-Version", "4.0")
                    .set_body_json(body),
            )
            .mount(server)
            .await;
    }
}

pub async fn mount_whoami(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(WHOAMI_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("OData-Version", "4.0")
                .insert_header("x-ms-dop-hint", "4")
                .set_body_json(json!({
                    "@odata.context": format!("{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", server.uri()),
                    "BusinessUnitId": BUSINESS_UNIT_ID,
                    "UserId": USER_ID,
                    "OrganizationId": ORGANIZATION_ID,
                })),
        )
        .mount(server)
        .await;
}

// ---- the binary as a subprocess -------------------------------------------

pub fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_leadbridge"));
    // The test's own environment must not reconfigure the child.
    c.env_remove("RUST_LOG").env_remove("LEADBRIDGE_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("LEADBRIDGE__") {
            c.env_remove(k);
        }
    }
    c
}

/// Output of a finished run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion off the async runtime, so that the fakes
/// in this process keep answering it.
pub async fn run_binary(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || binary().args(&args).output())
        .await
        .expect("join")
        .expect("binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `leadbridge serve` as a subprocess, every line it writes collected.
pub struct Served {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub base: String,
    pub admin: String,
}

impl Served {
    /// Starts `serve --config path` (which must log JSON) and waits until it listens.
    pub async fn start(config: &Path) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = binary()
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = std::sync::Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut me = Self {
            child,
            lines,
            base: String::new(),
            admin: String::new(),
        };
        let ready = me
            .wait_for_log(
                |v| v["message"] == "leadbridge listening",
                Duration::from_secs(30),
            )
            .await;
        me.base = format!("http://{}", ready["addr"].as_str().expect("addr"));
        me.admin = format!(
            "http://{}",
            ready["admin_addr"].as_str().expect("admin_addr")
        );
        me
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first JSON log line matching `pred`.
    pub async fn wait_for_log(&mut self, pred: impl Fn(&Value) -> bool, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| pred(v));
            if let Some(v) = found {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited with {status}:\n{}", self.lines().join("\n"));
            }
            if Instant::now() > deadline {
                panic!(
                    "no such log line within {within:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, wait for the process to finish, and return everything it wrote.
    pub async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Let the reader threads drain the pipes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.lines()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
