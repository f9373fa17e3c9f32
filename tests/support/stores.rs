//! Both stores at once, for tests written against the `Store` trait: each test gets a fresh SQLite
//! file and, when PostgreSQL is reachable, a fresh PostgreSQL database, both removed at its end.
//!
//! Without a reachable PostgreSQL the PostgreSQL half is skipped and says so plainly on stderr;
//! under CI (`CI=true`) it is a failure instead, so that a green run always means both stores.

use std::sync::Arc;

use casino_router::config::Config;
use casino_router::store::{self, Store};

use super::{Backend, TestDb};

/// One store under test and the database it lives in.
pub struct StoreUnderTest {
    /// `sqlite` or `postgres`, for assertion messages.
    pub name: &'static str,
    /// The store, opened (and migrated) by `casino_router::store::open`.
    pub store: Arc<dyn Store>,
    /// Removed when this is dropped.
    pub db: TestDb,
}

impl StoreUnderTest {
    /// A fresh database on `backend`, opened and migrated.
    pub async fn open(backend: Backend) -> StoreUnderTest {
        let db = TestDb::create_on(backend).await;
        let config = Config { database: db.database_config(), db_pool_size: 4, ..Config::default() };
        let store = store::open(&config).await.unwrap_or_else(|e| panic!("opening {backend:?}: {e}"));
        let name = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        StoreUnderTest { name, store, db }
    }
}

/// Fresh stores for one test: SQLite always, PostgreSQL too when it is reachable (see the module
/// doc for when it is not).
pub async fn both() -> Vec<StoreUnderTest> {
    let mut stores = vec![StoreUnderTest::open(Backend::Sqlite).await];
    stores.extend(postgres().await);
    stores
}

/// A fresh PostgreSQL store, or `None` (having said so on stderr) when PostgreSQL is not reachable
/// outside CI. Under CI an unreachable PostgreSQL fails the test.
pub async fn postgres() -> Option<StoreUnderTest> {
    let url = super::maintenance_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => Some(StoreUnderTest::open(Backend::Postgres).await),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL is not reachable at {url} ({e}), and CI requires it")
        }
        Err(e) => {
            eprintln!("PostgreSQL is not reachable at {url} ({e}): the PostgreSQL half of this test was SKIPPED");
            None
        }
    }
}
