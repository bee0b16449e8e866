//! The store against the real MariaDB of the local stack (install/stack.sh up).
//! Each test works in a database of its own, dropped at the end.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use mysql_async::prelude::Queryable;
use sluice_store::{BlockStatus, BlockWork, MIGRATIONS, Migration, Store, StoreError};

mod common;
use common::TestDb;

#[tokio::test]
async fn migrations_create_every_table_once() {
    let db = TestDb::new().await;
    let applied = db.store.migrate().await.unwrap();
    assert_eq!(
        applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    let tables = db.tables().await;
    for t in [
        "users",
        "mining_workers",
        "found_blocks",
        "schema_migrations",
        "stats_pool_hour",
        "stats_pool_day",
        "stats_users_hour",
        "stats_users_day",
        "stats_workers_hour",
        "stats_workers_day",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    // A second run is a no-op.
    assert!(db.store.migrate().await.unwrap().is_empty());
    db.drop().await;
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let db = TestDb::new().await;
    let other = db.store.clone();
    let (a, b) = tokio::join!(db.store.migrate(), other.migrate());
    let (mut a, b) = (a.unwrap(), b.unwrap());
    a.extend(b);
    a.sort_unstable();
    assert_eq!(a, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
    db.drop().await;
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let mut edited: Vec<Migration> = MIGRATIONS.to_vec();
    edited[0].sql = "CREATE TABLE users (id INT) /* edited */";
    let err = db.store.migrate_with(&edited).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("forward-only"));
    db.drop().await;
}

#[tokio::test]
async fn a_user_s_known_workers_are_listed_newest_first_with_their_last_share_in_utc() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let mut conn = db.store.pool().get_conn().await.unwrap();
    // statshttpd writes last_share_time as UTC literals.
    conn.query_drop(
        "INSERT INTO mining_workers (user_id, worker_id, worker_name, accept_count, \
         last_share_ip, last_share_time) VALUES \
         (7, 0, '', 30, '', '2026-12-06 10:00:00'), \
         (7, 11, 'rig1', 10, '192.0.2.1', '2026-12-06 09:00:00'), \
         (7, 12, 'rig2', 20, '192.0.2.2', '2026-12-06 10:00:00'), \
         (7, 13, 'never', 0, '', NULL), \
         (7, 14, 'old', 5, '', '2026-11-01 00:00:00'), \
         (8, 21, 'not-yours', 1, '', '2026-12-06 10:00:00')",
    )
    .await
    .unwrap();
    drop(conn);
    let ten_utc = 1_796_551_200; // 2026-12-06T10:00:00Z
    let since = ten_utc - 7 * 86_400;
    let listed = db.store.known_workers(7, since, 100).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|w| w.worker_name.as_str()).collect();
    assert_eq!(
        names,
        ["rig2", "rig1"],
        "newest first, the user row, the never seen and the old left out"
    );
    assert_eq!(listed[0].last_share_secs, Some(ten_utc));
    assert_eq!(listed[1].last_share_secs, Some(ten_utc - 3_600));
    assert_eq!(
        (listed[1].accept_count, listed[1].last_share_ip.as_str()),
        (10, "192.0.2.1")
    );
    assert_eq!(db.store.known_workers(7, since, 1).await.unwrap().len(), 1);
    db.drop().await;
}

#[tokio::test]
async fn users_are_found_case_insensitively() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    assert_eq!(db.store.user_by_name("alice").await.unwrap(), None);
    let alice = db.store.ensure_user("alice").await.unwrap();
    assert!(!alice.disabled);
    assert_eq!(
        db.store.ensure_user("alice").await.unwrap(),
        alice,
        "idempotent"
    );
    assert_eq!(
        db.store.user_by_name("ALICE").await.unwrap(),
        Some(alice.clone())
    );
    // A name that would break a string-built query is just a name.
    let odd = db
        .store
        .ensure_user("bob'; DROP TABLE users; --")
        .await
        .unwrap();
    assert_ne!(odd.id, alice.id);
    assert!(db.tables().await.iter().any(|t| t == "users"));
    db.drop().await;
}

#[tokio::test]
async fn a_solo_miner_is_registered_solo_and_a_pooled_name_stays_pooled() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let solo = db.store.ensure_solo_user(address).await.unwrap();
    assert!(solo.solo);
    assert_eq!(db.store.ensure_solo_user(address).await.unwrap(), solo);
    let (changed, _) = db.store.users_changed_since(0).await.unwrap();
    assert_eq!(
        changed,
        vec![solo.clone()],
        "the refresh reads the flag too"
    );
    // Registered pooled first: a solo login later keeps it pooled.
    let pooled = db
        .store
        .ensure_user("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc")
        .await
        .unwrap();
    assert!(!pooled.solo);
    let again = db
        .store
        .ensure_solo_user("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc")
        .await
        .unwrap();
    assert_eq!(again, pooled);
    db.drop().await;
}

#[tokio::test]
async fn changed_users_are_read_from_a_watermark() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let alice = db.store.ensure_user("alice").await.unwrap();
    let bob = db.store.ensure_user("bob").await.unwrap();
    let (all, newest) = db.store.users_changed_since(0).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(newest > 1_700_000_000, "{newest}");
    // Alice's row is old; Bob is disabled now: only Bob is read again.
    let mut conn = db.store.pool().get_conn().await.unwrap();
    conn.exec_drop(
        "UPDATE users SET updated_at = '2020-01-01 00:00:00' WHERE id = ?",
        (alice.id,),
    )
    .await
    .unwrap();
    conn.exec_drop("UPDATE users SET disabled = 1 WHERE id = ?", (bob.id,))
        .await
        .unwrap();
    drop(conn);
    let (changed, next) = db.store.users_changed_since(newest).await.unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!((changed[0].id, changed[0].disabled), (bob.id, true));
    assert!(next >= newest);
    // Nothing changed after the newest change: the watermark stays.
    let (_, again) = db.store.users_changed_since(next + 3600).await.unwrap();
    assert_eq!(again, next + 3600);
    db.drop().await;
}

#[tokio::test]
async fn a_dead_server_is_a_clear_error() {
    // Nothing listens on port 1.
    let store = Store::new("mysql://sluice:sluice@127.0.0.1:1/sluice").unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(
        err.to_string().starts_with("mysql at 127.0.0.1:1:"),
        "{err}"
    );
}

#[test]
fn every_sql_file_is_compiled_in() {
    let dir = sluice_testkit::repo_root().join("sql");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".sql"))
        .collect();
    files.sort();
    let listed: Vec<String> = MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.name))
        .collect();
    assert_eq!(files, listed);
    let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "numbered without gaps"
    );
}

#[tokio::test]
async fn a_found_block_is_one_row_whose_node_results_merge() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let block = sluice_store::FoundBlock {
        height: 7,
        hash: "00".repeat(31) + "07",
        prev_hash: "00".repeat(31) + "06",
        user_id: 3,
        worker_id: -42,
        worker_name: "rig1".into(),
        job_id: 99,
        reward: 5_000_001_000,
        fees: 1_000,
        size: 1234,
        tx_count: 3,
        submit_results: answers(&[("a", "pending"), ("b", "pending")]),
        is_orphaned: false,
        solo_address: None,
    };
    db.store.record_found_block(&block).await.unwrap();
    // The same blkmaker later, and a second blkmaker with another node.
    let later = sluice_store::FoundBlock {
        submit_results: answers(&[("a", "accepted"), ("b", "duplicate")]),
        ..block.clone()
    };
    db.store.record_found_block(&later).await.unwrap();
    let other = sluice_store::FoundBlock {
        submit_results: answers(&[("c", "accepted")]),
        worker_name: "ignored on a duplicate".into(),
        ..block.clone()
    };
    db.store.record_found_block(&other).await.unwrap();

    assert_eq!(db.store.found_block_count(&block.hash).await.unwrap(), 1);
    let row = db.store.found_block(&block.hash).await.unwrap().unwrap();
    let results = row.submit_results.clone();
    assert_eq!(
        results,
        [("a", "accepted"), ("b", "duplicate"), ("c", "accepted")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into()
    );
    assert_eq!(
        row,
        sluice_store::FoundBlock {
            submit_results: row.submit_results.clone(),
            ..block
        }
    );
    assert!(db.store.found_block("ff").await.unwrap().is_none());
    db.drop().await;
}

#[tokio::test]
async fn a_block_s_standing_changes_once_and_its_work_is_listed_with_it() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let block = |height: u32| sluice_store::FoundBlock {
        height,
        hash: format!("{height:064x}"),
        prev_hash: "00".repeat(32),
        user_id: 3,
        worker_id: 1,
        worker_name: "rig1".into(),
        job_id: 1,
        reward: 1,
        fees: 0,
        size: 1,
        tx_count: 1,
        submit_results: Default::default(),
        is_orphaned: false,
        solo_address: None,
    };
    for h in [10, 11, 12] {
        db.store.record_found_block(&block(h)).await.unwrap();
    }
    let (b10, b11) = (block(10).hash, block(11).hash);
    let hashes = |rows: Vec<sluice_store::Unsettled>| -> Vec<String> {
        rows.into_iter().map(|u| u.hash).collect()
    };
    assert_eq!(
        hashes(db.store.unsettled_blocks(1, 10).await.unwrap()),
        [block(12).hash, b11.clone(), b10.clone()],
        "new blocks are pending, newest first"
    );

    // The first writer of a new status hears it changed; the second does not.
    let store = &db.store;
    assert!(
        store
            .set_block_standing(&b10, BlockStatus::Confirmed, 100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_block_standing(&b10, BlockStatus::Confirmed, 101)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_block_standing(&b11, BlockStatus::Orphaned, 0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_block_standing(&b11, BlockStatus::Orphaned, 0)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_block_standing(&block(12).hash, BlockStatus::Pending, 3)
            .await
            .is_ok()
    );
    // Orphans are looked at again (they may come back); confirmed ones not.
    assert_eq!(
        hashes(store.unsettled_blocks(1, 10).await.unwrap()),
        [block(12).hash, b11.clone()]
    );
    assert_eq!(
        hashes(store.unsettled_blocks(1, 1).await.unwrap()),
        [block(12).hash]
    );
    db.store
        .pool()
        .get_conn()
        .await
        .unwrap()
        .query_drop("UPDATE found_blocks SET created_at = NOW() - INTERVAL 2 HOUR")
        .await
        .unwrap();
    assert!(
        store.unsettled_blocks(1, 10).await.unwrap().is_empty(),
        "older than the window"
    );
    assert_eq!(store.unsettled_blocks(3, 10).await.unwrap().len(), 2);

    // Work: the first write wins.
    let work = BlockWork {
        hash: b10.clone(),
        height: 10,
        work: 150.0,
        network_difficulty: 100.0,
        since_ms: 1_000,
        whole: true,
    };
    store.record_block_work(&work).await.unwrap();
    let rebuilt = BlockWork {
        work: 20.0,
        whole: false,
        ..work.clone()
    };
    store.record_block_work(&rebuilt).await.unwrap();

    let listed = store.recent_found_blocks(10, Some(3)).await.unwrap();
    let by_height = |h: u32| listed.iter().find(|l| l.block.height == h).unwrap();
    assert_eq!(
        (
            by_height(10).status,
            by_height(10).confirmations,
            by_height(10).block.is_orphaned
        ),
        (BlockStatus::Confirmed, 101, false)
    );
    assert_eq!(by_height(10).work, Some(work.clone()));
    assert!((work.effort() - 1.5).abs() < 1e-12);
    assert_eq!(
        (by_height(11).status, by_height(11).block.is_orphaned),
        (BlockStatus::Orphaned, true)
    );
    assert_eq!(
        (by_height(12).status, by_height(12).confirmations),
        (BlockStatus::Pending, 3)
    );
    assert_eq!(by_height(12).work, None);
    db.drop().await;
}

#[tokio::test]
async fn the_status_names_the_server_the_schema_and_each_table() {
    let db = TestDb::new().await;
    let before = db.store.status().await.unwrap();
    assert_eq!(before.schema_version, 0, "nothing migrated yet");
    assert_eq!(before.pending_migrations.len(), MIGRATIONS.len());
    assert!(before.tables.is_empty(), "{before:?}");
    db.store.migrate().await.unwrap();
    db.store.ensure_user("status-user").await.unwrap();
    let after = db.store.status().await.unwrap();
    assert!(after.version.contains("MariaDB"), "{}", after.version);
    assert!(after.uptime_secs > 0);
    assert_eq!(
        after.schema_version,
        MIGRATIONS.iter().map(|m| m.version).max().unwrap()
    );
    assert!(after.pending_migrations.is_empty());
    let users = after.tables.iter().find(|t| t.name == "users").unwrap();
    assert!(users.bytes > 0, "{users:?}");
    assert_eq!(after.tables.len(), db.tables().await.len());
    db.drop().await;
}

/// submitblock answers by node, as blkmaker records them.
fn answers(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(node, answer)| ((*node).to_owned(), (*answer).to_owned()))
        .collect()
}
