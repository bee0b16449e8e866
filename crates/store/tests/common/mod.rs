//! A database of a test's own on the local stack's MariaDB.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use mysql_async::prelude::Queryable;
use sluice_store::Store;
use sluice_testkit::Database;

/// A fresh database and a store pointed at it.
pub struct TestDb {
    db: Database,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let db = Database::create().await;
        TestDb {
            store: Store::new(&db.url).unwrap(),
            db,
        }
    }

    pub async fn tables(&self) -> Vec<String> {
        let mut conn = self.store.pool().get_conn().await.unwrap();
        conn.query("SHOW TABLES").await.unwrap()
    }

    pub async fn drop(self) {
        self.store.close().await;
        self.db.drop().await;
    }
}
