//! Both stores at once, for tests written against the `Store` trait: each test gets a fresh SQLite
//! file and, when PostgreSQL is reachable, a fresh PostgreSQL database, both removed at its end.
//!
//! The PostgreSQL half follows [`TestDb::create_postgres`]: without a reachable PostgreSQL it is
//! skipped and says so plainly (under CI, `CI=true`, that is a failure instead), and in the SQLite
//! pass of `scripts/test` it is left to the PostgreSQL pass, which runs both halves.

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
        StoreUnderTest::open_in(TestDb::create_on(backend).await, backend).await
    }

    /// The store in `db` (a database on `backend`), opened and migrated.
    async fn open_in(db: TestDb, backend: Backend) -> StoreUnderTest {
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

/// A fresh PostgreSQL store, or `None` when [`TestDb::create_postgres`] skips it.
pub async fn postgres() -> Option<StoreUnderTest> {
    let db = TestDb::create_postgres().await?;
    Some(StoreUnderTest::open_in(db, Backend::Postgres).await)
}
