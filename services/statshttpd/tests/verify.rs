//! The share log's shares re-verified offline against the Job topic: the
//! Share message carries what rebuilds the header.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bitcoin::hashes::Hash;
use common::{MINUTE, Rig};
use sluice_core::ShareStatus::{Accepted, LowDifficulty};
use sluice_core::record::ShareRecord;
use sluice_core::{Difficulty, Job, JobId, Submission, TemplateId};

fn job(id: u64) -> Job {
    Job {
        id: JobId(id),
        leader_epoch: 1,
        template_id: TemplateId([7; 32]),
        height: 101,
        prev_blockhash: bitcoin::BlockHash::from_byte_array([1; 32]),
        version: bitcoin::block::Version::from_consensus(0x2000_0000),
        bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
        time: 1_800_000_000,
        min_time: 1_799_999_000,
        coinbase1: vec![1, 2, 3, 4],
        coinbase2: vec![5, 6, 7, 8],
        merkle_branch: vec![bitcoin::TxMerkleNode::from_byte_array([9; 32])],
        coinbase_value: bitcoin::Amount::from_int_btc(50),
        clean: true,
        created_at_ms: 1_800_000_000_000,
        solo: None,
    }
}

/// A share of `job` found by grinding nonces to `difficulty`, rolled
/// version bits included.
fn solve(rig: &Rig, job: &Job, difficulty: f64, at: u64) -> ShareRecord {
    let mut s = rig.share(1, Accepted, difficulty, at);
    s.job_id = job.id;
    s.version_bits = 0x0000_4000;
    s.ntime = job.time;
    let target = Difficulty::new(difficulty).unwrap().to_target();
    let work = job.work(8);
    let e1 = s.extranonce1.to_be_bytes();
    for nonce in 0.. {
        let sub = Submission {
            extranonce1: &e1,
            extranonce2: &s.extranonce2,
            ntime: s.ntime,
            nonce,
            version_bits: Some(s.version_bits),
        };
        let hash = work.header(&sub, 0x1fff_e000).unwrap().block_hash();
        if target.is_met_by(hash) {
            s.nonce = nonce;
            s.hash = hash;
            return s;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_shares_check_out_against_their_jobs() {
    let mut rig = Rig::new().await;
    let (j1, j2) = (job(0x1000_0001), job(0x1000_0002));
    for j in [&j1, &j2] {
        rig.producer.send(&rig.jobs, b"", j).await.unwrap();
    }
    let t = rig.t0 + 10 * MINUTE;
    let good = solve(&rig, &j1, 1e-6, t);
    let also_good = solve(&rig, &j2, 1e-6, t + 1);
    let mut low = also_good.clone();
    low.status = LowDifficulty;
    low.nonce ^= 1;
    low.hash = {
        let e1 = low.extranonce1.to_be_bytes();
        let sub = Submission {
            extranonce1: &e1,
            extranonce2: &low.extranonce2,
            ntime: low.ntime,
            nonce: low.nonce,
            version_bits: Some(low.version_bits),
        };
        j2.work(8).header(&sub, 0x1fff_e000).unwrap().block_hash()
    };
    let mut forged = good.clone();
    forged.nonce ^= 0x8000_0000; // the hash no longer matches the header
    let mut orphan = good.clone();
    orphan.job_id = JobId(0x1000_0009);
    for s in [&good, &also_good, &low, &forged, &orphan] {
        rig.send(s).await;
    }
    rig.start();
    rig.initialized().await;
    let path = statshttpd::sharelog::path_of(&rig.config.data_dir, rig.day());
    sluice_testkit::eventually(Duration::from_secs(10), "five shares logged", || async {
        let mut n = 0;
        statshttpd::sharelog::read(&path, |_| n += 1).unwrap();
        (n == 5).then_some(())
    })
    .await;
    rig.stop().await;

    let v = statshttpd::replay::verify(&rig.config, rig.day(), 0x1fff_e000)
        .await
        .unwrap();
    assert_eq!(
        (v.shares, v.ok, v.job_unknown, v.bad_count),
        (5, 3, 1, 1),
        "{v:?}"
    );
    assert!(v.bad[0].1.contains("hashes to"), "{v:?}");

    let mut out = Vec::new();
    let n = statshttpd::replay::dump(&rig.config, rig.day(), Some(rig.uid()), &mut out).unwrap();
    assert_eq!(n, 5);
    let first: serde_json::Value =
        serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["user_id"], rig.uid());
    assert_eq!(first["version_bits"], "00004000");
    let n = statshttpd::replay::dump(&rig.config, rig.day(), Some(rig.uid() + 1), &mut Vec::new())
        .unwrap();
    assert_eq!(n, 0, "another user's shares only");
    std::fs::remove_dir_all(&rig.config.data_dir).unwrap();
}
