//! A database of a test's own on the local stack's MariaDB, for tests that
//! assert what a whole table holds (the payer's books, the migrations).

use mysql_async::prelude::Queryable;

use crate::{mysql_url, unique_name};

/// `sluice_test_<random>`, created empty; [`Database::drop`] removes it.
#[derive(Debug)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// `mysql://…/<name>`.
    pub url: String,
}

impl Database {
    /// Creates a fresh database beside the pool's.
    pub async fn create() -> Database {
        let name = unique_name("sluice_test_");
        run(&format!("CREATE DATABASE `{name}`")).await;
        let base = mysql_url();
        let server = &base[..base.rfind('/').expect("a MySQL URL ends in /database")];
        Database {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// Drops it.
    pub async fn drop(self) {
        run(&format!("DROP DATABASE `{}`", self.name)).await;
    }
}

async fn run(statement: &str) {
    let pool = mysql_async::Pool::new(mysql_url().as_str());
    let mut conn = pool
        .get_conn()
        .await
        .expect("MariaDB of the local stack is reachable (install/stack.sh up)");
    conn.query_drop(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    drop(conn);
    let _ = pool.disconnect().await;
}
