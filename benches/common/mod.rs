//! What the benchmarks share; each one uses a part of it.

#![allow(dead_code)]

/// A store for one run: a SQLite file in `dir`, or a fresh database on the
/// PostgreSQL server `postgres` names (its base URL).
pub async fn store_url(dir: &std::path::Path, postgres: Option<&str>) -> String {
    match postgres {
        Some(base) => {
            sqlx::any::install_default_drivers();
            let name = format!("lb_bench_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::AnyPool::connect(base).await.expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create db");
            format!("{}/{name}", base.rsplit_once('/').map_or(base, |(p, _)| p))
        }
        None => format!("sqlite://{}", dir.join("bench.db").display()),
    }
}

/// `--name value` pairs after `cargo bench --bench X --`; anything else
/// (cargo's own `--bench`) is skipped.
pub struct Flags(std::collections::HashMap<String, String>);

impl Flags {
    pub fn from_args() -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut map = std::collections::HashMap::new();
        let mut it = argv.iter().peekable();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--")
                && let Some(value) = it.next_if(|v| !v.starts_with("--"))
            {
                map.insert(name.to_owned(), value.clone());
            }
        }
        Self(map)
    }

    /// The flag's value; `None` when absent or unparsable.
    pub fn get<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.0.get(name).and_then(|v| v.parse().ok())
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// The application with one dry-run organization `contoso` (the shipped
/// mapping, endpoint secret `secret`), no worker running, logging warnings
/// only. `server` and `admin` are extra lines for those tables.
pub async fn dry_run_app(
    dir: &std::path::Path,
    store_url: &str,
    secret: &str,
    server: &str,
    admin: &str,
) -> leadbridge::startup::Application {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
{server}
[admin]
listen = "127.0.0.1:0"
{admin}
[store]
url = "{store_url}"
[log]
format = "text"
level = "warn"
[organizations.contoso]
url = "https://contoso.crm4.dynamics.com"
dry_run = true
mapping = "{mapping}"
endpoint_secrets = ["{secret}"]
"#,
            mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/contoso.yaml"),
        ),
    )
    .expect("write config");
    let settings = leadbridge::config::Settings::load_with_env(&config, Some(Default::default()))
        .expect("config");
    leadbridge::telemetry::init(&settings.log);
    leadbridge::startup::Application::build_with(settings, leadbridge::startup::WorkerMode::Manual)
        .await
        .expect("app")
}
