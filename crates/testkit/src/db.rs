//! Fresh databases on the PostgreSQL server of `DATABASE_URL`.

use crate::names::unique_name;
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use url::Url;

/// A database created for one test on the server of `DATABASE_URL` (any database there serves
/// to create it); dropped, with every session on it, when the `TestDb` is dropped, unless
/// [`TestDb::keep`] handed it over.
#[derive(Debug)]
pub struct TestDb {
    admin_url: String,
    /// The database's name.
    pub name: String,
    /// Its URL (`DATABASE_URL` with this database).
    pub url: String,
    kept: bool,
}

fn parse(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"))
}

impl TestDb {
    /// Creates the database.
    pub async fn create() -> Self {
        let admin_url = std::env::var("DATABASE_URL").expect(
            "DATABASE_URL must point at a PostgreSQL server (a database there is used to create \
             test databases); scripts/test provides one",
        );
        let name = unique_name("carechain_test");
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to DATABASE_URL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create the test database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = parse(&admin_url);
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.to_string(),
            kept: false,
        }
    }

    /// Leaves the database in place after the test and returns its URL: for tests whose
    /// servers may still hold connections when the test ends.
    pub fn keep(mut self) -> String {
        self.kept = true;
        std::mem::take(&mut self.url)
    }

    /// A pool of at most two connections to the database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database {}: {e}", self.name))
    }

    /// The URL with 127.0.0.1:`port` in place of the server (for a proxy in front of it).
    pub fn url_via(&self, port: u16) -> String {
        let mut url = parse(&self.url);
        url.set_host(Some("127.0.0.1"))
            .expect("a database URL has a host");
        url.set_port(Some(port)).expect("a database URL has a port");
        url.to_string()
    }

    /// The server's port.
    pub fn server_port(&self) -> u16 {
        parse(&self.url).port().unwrap_or(5432)
    }

    /// Ends every session on this database (what a server restart does to its clients).
    pub async fn terminate_sessions(&self) {
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to DATABASE_URL: {e}"));
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("terminate the sessions on {}: {e}", self.name));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a
        // runtime of its own drops the database.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A fresh database that stays after the test (see [`TestDb::keep`]); returns its URL.
pub async fn fresh_database() -> String {
    TestDb::create().await.keep()
}
