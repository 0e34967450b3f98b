//! What the benchmarks share.

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
