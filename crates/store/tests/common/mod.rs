//! A database of a test's own on the local stack's MariaDB.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use mysql_async::prelude::Queryable;
use sluice_store::Store;
use sluice_testkit::{mysql_url, unique_name};

/// A fresh database `sluice_test_<random>` and a store pointed at it.
pub struct TestDb {
    name: String,
    admin: Store,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = Store::new(&mysql_url()).unwrap();
        let name = unique_name("sluice_test_");
        admin
            .pool()
            .get_conn()
            .await
            .expect("MariaDB of the local stack is reachable (install/stack.sh up)")
            .query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        let base = mysql_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        TestDb {
            name,
            admin,
            store: Store::new(&url).unwrap(),
        }
    }

    pub async fn tables(&self) -> Vec<String> {
        let mut conn = self.store.pool().get_conn().await.unwrap();
        conn.query("SHOW TABLES").await.unwrap()
    }

    pub async fn drop(self) {
        self.store.close().await;
        let mut conn = self.admin.pool().get_conn().await.unwrap();
        conn.query_drop(format!("DROP DATABASE `{}`", self.name))
            .await
            .unwrap();
        drop(conn);
        self.admin.close().await;
    }
}
