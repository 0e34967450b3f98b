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
