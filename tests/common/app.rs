//! The application in this process, on the [`Fakes`]: started, stopped and
//! restarted on the same store; its worker driven by the test.

use super::*;

/// The application running in this process on [`Fakes`] (which it derefs to).
pub struct TestApp {
    pub fakes: Fakes,
    pub app: Option<Application>,
    /// How [`TestApp::start`] builds the app: [`TestConfig::worker`].
    pub worker: WorkerMode,
    pub base: String,
    /// `http://<admin listener>`.
    pub admin: String,
    pub http: reqwest::Client,
}

impl std::ops::Deref for TestApp {
    type Target = Fakes;

    fn deref(&self) -> &Fakes {
        &self.fakes
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestConfig::default()).await
    }

    /// An app whose organization is in dry run: nothing goes to Microsoft.
    pub async fn spawn_dry_run() -> Self {
        Self::spawn_with(TestConfig {
            dry_run: true,
            ..Default::default()
        })
        .await
    }

    /// An app that renders with the mapping file at `mapping`.
    pub async fn spawn_with_mapping(mapping: &Path) -> Self {
        Self::spawn_with(TestConfig {
            mapping: mapping.to_owned(),
            ..Default::default()
        })
        .await
    }

    pub async fn spawn_with(cfg: TestConfig) -> Self {
        let mut me = Self::prepare(cfg).await;
        me.start().await;
        me
    }

    /// Fakes, store and config file, without starting the app (for tests
    /// that run the binary as a child process).
    pub async fn prepare(cfg: TestConfig) -> Self {
        Self {
            fakes: Fakes::start(&cfg).await,
            app: None,
            worker: cfg.worker,
            base: String::new(),
            admin: String::new(),
            http: reqwest::Client::new(),
        }
    }

    pub fn settings(&self) -> Settings {
        Settings::load_with_env(&self.config_path, Some(HashMap::new())).expect("valid test config")
    }

    /// Starts (or restarts) the application on the same store and fakes.
    pub async fn start(&mut self) {
        let app = Application::build_with(self.settings(), self.worker)
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
        lead_url(&self.base, org, code)
    }

    /// GET `path` on the public listener.
    pub async fn get_public(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.expect("request sent")
    }

    /// GET `path` on the admin listener, without a token.
    pub async fn get_admin(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.admin);
        self.http.get(url).send().await.expect("request sent")
    }

    pub async fn post_lead(&self, body: &str) -> reqwest::Response {
        self.post_lead_for("contoso", body).await
    }

    /// POSTs a lead to `org`'s endpoint with its secret (`SECRET`).
    pub async fn post_lead_for(&self, org: &str, body: &str) -> reqwest::Response {
        post_lead_to(&self.http, &self.lead_url(org, SECRET), body.to_owned())
            .send()
            .await
            .expect("request sent")
    }

    /// Posts a lead and returns its id from the 202 answer.
    pub async fn accept_lead(&self, body: &str) -> LeadId {
        self.accept_lead_for("contoso", body).await
    }

    /// Posts a lead to `org`'s endpoint (its secret is `SECRET`) and returns
    /// its id from the 202 answer.
    pub async fn accept_lead_for(&self, org: &str, body: &str) -> LeadId {
        let r = self.post_lead_for(org, body).await;
        assert_eq!(r.status(), 202, "lead not accepted");
        let v: Value = r.json().await.expect("json answer");
        assert_eq!(v["status"], "accepted");
        v["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
    }

    pub async fn deliveries(&self, lead_id: LeadId) -> Vec<DeliveryView> {
        let store = self.running().store();
        store.deliveries_of_lead(lead_id).await.expect("store read")
    }

    /// The running application's store.
    pub fn running_store(&self) -> std::sync::Arc<dyn leadbridge::store::Store> {
        self.running().store()
    }

    fn running(&self) -> &Application {
        self.app.as_ref().expect("running")
    }

    /// One pass of the delivery worker: claims what is due now, runs those
    /// attempts to the end and records them; how many it claimed.
    pub async fn run_worker_once(&self) -> usize {
        assert_eq!(
            self.worker,
            WorkerMode::Manual,
            "run_worker_once needs TestConfig::worker = WorkerMode::Manual"
        );
        self.running().run_worker_once().await
    }

    /// Worker passes until one finds nothing due; how many deliveries they
    /// claimed in all (a delivery tried three times counts three).
    pub async fn deliver_due(&self) -> usize {
        const MAX_PASSES: usize = 100;
        let mut claimed = 0;
        for _ in 0..MAX_PASSES {
            match self.run_worker_once().await {
                0 => return claimed,
                n => claimed += n,
            }
        }
        panic!("still deliveries due after {MAX_PASSES} worker passes ({claimed} claimed)");
    }

    /// The lead's one delivery.
    pub async fn delivery(&self, lead_id: LeadId) -> DeliveryView {
        let mut ds = self.deliveries(lead_id).await;
        assert_eq!(
            ds.len(),
            1,
            "lead {lead_id}: one delivery expected: {ds:#?}"
        );
        ds.remove(0)
    }

    /// The lead's one delivery, which must be in `status` now.
    pub async fn delivery_in(&self, lead_id: LeadId, status: DeliveryStatus) -> DeliveryView {
        let d = self.delivery(lead_id).await;
        assert_eq!(d.status, status, "lead {lead_id}: {d:#?}");
        d
    }

    /// Waits until the background worker has brought the lead's delivery to
    /// `status` ([`WorkerMode::Background`] only: in manual mode nothing
    /// would move it).
    pub async fn wait_for(
        &self,
        lead_id: LeadId,
        status: DeliveryStatus,
        within: Duration,
    ) -> DeliveryView {
        assert_eq!(
            self.worker,
            WorkerMode::Background,
            "wait_for needs the background worker; with WorkerMode::Manual use deliver_due"
        );
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

    pub fn mappings(&self) -> std::sync::Arc<leadbridge::delivery::Organizations> {
        self.running().organizations()
    }
}
