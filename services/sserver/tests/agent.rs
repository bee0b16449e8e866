//! Farm agents on sserver (the BTCAgent protocol), against the real
//! pipeline: the requests btccom's BTCAgent sends, in its order and words
//! (`UpSessionBTC.go`: a `conn_test` capabilities probe, then capabilities,
//! configure, subscribe as `btccom-agent/2.0.0-mu`, authorize with the bare
//! account, capabilities again), ex-messages framed byte by byte as
//! btcpool's `docs/AGENT.md` publishes them; each miner behind the agent is
//! its own worker with its own shares, statuses and difficulty.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::Target;
use common::{DIFF, MASK, Rig, record_where, rig};
use serde_json::{Value, json};
use sluice_core::Difficulty;
use sluice_core::record::{EventKind, ShareStatus};
use sluice_stratum::agent::{ExMessage, ExSubmit, capability, difficulty_of, status};
use sluice_stratum::client::header;
use sluice_stratum::{Notification, Notify, Response, ServerMessage};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum Got {
    Line(ServerMessage),
    Ex(ExMessage),
}

/// The pool side of an agent's upstream connection.
struct Agent {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    extranonce1: Vec<u8>,
    difficulty: f64,
    job: Option<Notify>,
}

impl Agent {
    async fn connect(addr: SocketAddr) -> Agent {
        let tcp = sluice_testkit::eventually(WAIT, "sserver listening", || async move {
            TcpStream::connect(addr).await.ok()
        })
        .await;
        let (rd, wr) = tcp.into_split();
        Agent {
            rd: BufReader::new(rd),
            wr,
            extranonce1: vec![],
            difficulty: 0.0,
            job: None,
        }
    }

    async fn line(&mut self, v: Value) {
        self.raw(&v.to_string()).await;
    }

    async fn raw(&mut self, line: &str) {
        self.wr
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// `agent.get_capabilities` byte for byte as BTCAgent writes it
    /// (`UpSessionBTC.getAgentGetCapsRequest`: Go's `json.Marshal` of
    /// `{ID, Method, Params}` with the names nested in one array).
    async fn ask_capabilities(&mut self, id: &str, caps: &[&str]) {
        let names: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
        let line = format!(
            r#"{{"id":"{id}","method":"agent.get_capabilities","params":[[{}]]}}"#,
            names.join(",")
        );
        self.raw(&line).await;
    }

    async fn ex(&mut self, m: ExMessage) {
        self.wr.write_all(&m.encode()).await.unwrap();
    }

    async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, async {
            let first = self.rd.fill_buf().await.unwrap()[0];
            if first == 0x7F {
                let mut head = [0u8; 4];
                self.rd.read_exact(&mut head).await.unwrap();
                let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
                let mut frame = head.to_vec();
                frame.resize(len, 0);
                self.rd.read_exact(&mut frame[4..]).await.unwrap();
                Got::Ex(ExMessage::decode(&frame).unwrap())
            } else {
                let mut l = String::new();
                self.rd.read_line(&mut l).await.unwrap();
                Got::Line(ServerMessage::parse(l.trim_end()).unwrap())
            }
        })
        .await
        .expect("a message from the pool in time")
    }

    /// The next message that is not work (difficulty and jobs are kept).
    async fn answer(&mut self) -> Got {
        loop {
            match self.next().await {
                Got::Line(ServerMessage::Notification(Notification::Notify(n))) => {
                    self.job = Some(n)
                }
                Got::Line(ServerMessage::Notification(Notification::SetDifficulty(d))) => {
                    self.difficulty = d
                }
                Got::Line(ServerMessage::Notification(Notification::SetVersionMask(_))) => {}
                other => return other,
            }
        }
    }

    /// The response with this id (work seen on the way is kept).
    async fn response(&mut self, id: &str) -> Response {
        loop {
            if let Got::Line(ServerMessage::Response(r)) = self.answer().await
                && r.id.to_string() == format!("{id:?}")
            {
                return r;
            }
        }
    }

    async fn first_job(&mut self) -> Notify {
        loop {
            if let Some(j) = &self.job {
                return j.clone();
            }
            match self.next().await {
                Got::Line(ServerMessage::Notification(Notification::Notify(n))) => {
                    self.job = Some(n)
                }
                Got::Line(ServerMessage::Notification(Notification::SetDifficulty(d))) => {
                    self.difficulty = d
                }
                _ => {}
            }
        }
    }

    /// BTCAgent's handshake (`UpSessionBTC.sendInitRequest`), pipelined as
    /// it sends it; its subscribe answer's extranonce1.
    async fn handshake(&mut self, account: &str, caps: &[&str]) {
        self.handshake_resuming(account, caps, None).await;
    }

    /// [`Self::handshake`], subscribing with an earlier session's id.
    async fn handshake_resuming(&mut self, account: &str, caps: &[&str], old: Option<&str>) {
        let mut subscribe = vec![json!("btccom-agent/2.0.0-mu")];
        subscribe.extend(old.map(|o| json!(o)));
        self.ask_capabilities("conn_test", caps).await;
        let probe = self.response("conn_test").await;
        assert_eq!(probe.result.unwrap()["capabilities"], json!(caps));
        self.ask_capabilities("caps", caps).await;
        for v in [
            json!({"id":"conf","method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":0}]}),
            json!({"id":"sub","method":"mining.subscribe","params":subscribe}),
            json!({"id":"auth","method":"mining.authorize","params":[account, ""]}),
        ] {
            self.line(v).await;
        }
        self.ask_capabilities("caps_again", caps).await;
        let sub = self.response("sub").await.result.unwrap();
        assert_eq!(sub[2], json!(8), "BTCAgent needs 8 bytes of extranonce2");
        self.extranonce1 = hex::decode(sub[1].as_str().unwrap()).unwrap();
        assert_eq!(self.response("auth").await.result.unwrap(), json!(true));
        let again = self.response("caps_again").await.result.unwrap();
        assert_eq!(again["capabilities"], json!(caps));
    }

    /// A share of miner `sid` on `job` at `difficulty`, meeting it (or, with
    /// `meet` false, missing it and the network's target).
    fn mine(&self, job: &Notify, sid: u16, en2: u32, difficulty: f64, meet: bool) -> ExSubmit {
        let target = Difficulty::new(difficulty).unwrap().to_target();
        self.mine_to(job, sid, en2, target, meet)
    }

    fn mine_to(&self, job: &Notify, sid: u16, en2: u32, target: Target, meet: bool) -> ExSubmit {
        let network = Target::from_compact(job.bits);
        let mut en1 = self.extranonce1.clone();
        en1.extend_from_slice(&u32::from(sid).to_be_bytes());
        let mut h = header(job, &en1, &en2.to_be_bytes(), job.time, 0, None, MASK);
        for nonce in 0.. {
            h.nonce = nonce;
            let hash = h.block_hash();
            // A share is no block, unless a block is what is asked.
            let ok = if meet {
                target.is_met_by(hash) && (target == network || !network.is_met_by(hash))
            } else {
                !target.is_met_by(hash) && !network.is_met_by(hash)
            };
            if ok {
                return ExSubmit {
                    job_id: job.job_id.parse().unwrap(),
                    session_id: sid,
                    extranonce2: en2,
                    nonce,
                    time: Some(job.time),
                    version_mask: None,
                };
            }
        }
        unreachable!()
    }

    async fn submit_response(&mut self) -> (u16, u32) {
        match self.answer().await {
            Got::Ex(ExMessage::SubmitResponse { index, status }) => (index, status),
            other => panic!("expected a SUBMIT_RESPONSE, got {other:?}"),
        }
    }
}

fn register(sid: u16, agent: &str, worker: &str) -> ExMessage {
    ExMessage::RegisterWorker {
        session_id: sid,
        client_agent: agent.into(),
        worker_name: worker.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btcagent_s_requests_as_published_carry_a_farm_s_miners() {
    let r: Rig = rig(|_| {}).await;
    let shares = r.shares().await;
    let events = r.events().await;
    let solved = r.solved().await;
    let mut a = Agent::connect(r.stratum).await;
    let caps = [capability::VERSION_ROLLING, capability::SUBMIT_RESPONSE];
    a.handshake(&r.user, &caps).await;
    let job = a.first_job().await;
    // Short decimal job ids, as BTCAgent parses them (`ParseUint(id, 10, 8)`).
    assert!(job.job_id.parse::<u8>().is_ok(), "{}", job.job_id);
    // Without Sluice's signed exponent the easiest power of two is 2^0.
    assert_eq!(a.difficulty, 1.0);

    a.ex(register(1, "cgminer/4.10", "rig1")).await;
    a.ex(register(2, "bmminer/2.0.0", "rig2")).await;
    for (worker, agent) in [("rig1", "cgminer/4.10"), ("rig2", "bmminer/2.0.0")] {
        let e = record_where(
            &events,
            WAIT,
            "MinerConnected",
            |e| matches!(&e.kind, EventKind::MinerConnected(m) if m.worker_name == worker),
        )
        .await;
        let EventKind::MinerConnected(m) = e.kind else {
            unreachable!()
        };
        assert_eq!((m.user_id, m.miner_agent.as_str()), (r.user_id, agent));
        assert_eq!(m.client_ip, std::net::IpAddr::from([127, 0, 0, 1]));
    }

    // Miner 1: a share above its difficulty (1) and the network's: 23.
    let low = a.mine(&job, 1, 7, 1.0, false);
    a.ex(ExMessage::SubmitShare(low)).await;
    assert_eq!(a.submit_response().await, (0, status::LOW_DIFFICULTY));
    let rec = record_where(&shares, WAIT, "the low share", |s| s.nonce == low.nonce).await;
    assert_eq!(
        (rec.status, rec.worker_name.as_str()),
        (ShareStatus::LowDifficulty, "rig1")
    );
    assert_eq!(rec.extranonce2, vec![0, 0, 0, 1, 0, 0, 0, 7]);

    // Miner 2: a block (the network's target is easier than 1 here):
    // SOLVED, on the solved topic with its worker.
    let network = Target::from_compact(job.bits);
    let block = a.mine_to(&job, 2, 9, network, true);
    a.ex(ExMessage::SubmitShare(block)).await;
    assert_eq!(a.submit_response().await, (1, status::SOLVED));
    let rec = record_where(&shares, WAIT, "miner 2's block", |s| s.nonce == block.nonce).await;
    assert_eq!(
        (rec.status, rec.worker_name.as_str()),
        (ShareStatus::Block, "rig2")
    );
    assert_eq!(rec.extranonce2, vec![0, 0, 0, 2, 0, 0, 0, 9]);
    let s = record_where(&solved, WAIT, "the block", |s| s.block_hash == rec.hash).await;
    assert_eq!(s.worker_name, "rig2");

    // The same share again: duplicate. An unknown job: 21. A miner never
    // registered: 24. Each answered in order.
    a.ex(ExMessage::SubmitShare(block)).await;
    assert_eq!(a.submit_response().await, (2, status::DUPLICATE_SHARE));
    let other_job = (job.job_id.parse::<u8>().unwrap()).wrapping_add(100);
    a.ex(ExMessage::SubmitShare(ExSubmit {
        job_id: other_job,
        ..low
    }))
    .await;
    assert_eq!(
        a.submit_response().await,
        (3, status::JOB_NOT_FOUND_OR_STALE)
    );
    a.ex(ExMessage::SubmitShare(ExSubmit {
        session_id: 9,
        ..low
    }))
    .await;
    assert_eq!(a.submit_response().await, (4, status::UNAUTHORIZED));

    // Miners leave one by one, and with the agent.
    a.ex(ExMessage::UnregisterWorker { session_id: 1 }).await;
    record_where(
        &events,
        WAIT,
        "rig1 left",
        |e| matches!(&e.kind, EventKind::MinerDisconnected(m) if m.worker_name == "rig1"),
    )
    .await;
    drop(a);
    record_where(
        &events,
        WAIT,
        "rig2 left with the agent",
        |e| matches!(&e.kind, EventKind::MinerDisconnected(m) if m.worker_name == "rig2"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_miner_behind_an_agent_has_its_own_difficulty() {
    // The hardest difficulty stays below the network's (blocks are not shares).
    let r: Rig = rig(|c| {
        c.difficulty.share_interval_secs = 30.0;
        c.difficulty.max = DIFF * 64.0;
    })
    .await;
    let shares = r.shares().await;
    let mut a = Agent::connect(r.stratum).await;
    let caps = [
        capability::VERSION_ROLLING,
        capability::SUBMIT_RESPONSE,
        capability::SIGNED_DIFF_EXPONENT,
    ];
    a.handshake(&r.user, &caps).await;
    let job = a.first_job().await;
    // Signed exponents: the pool's own starting difficulty (a power of two).
    assert_eq!(a.difficulty, DIFF);
    a.ex(register(1, "cpuminer", "fast")).await;
    a.ex(register(2, "cpuminer", "slow")).await;

    // Miner 1 mines far faster than one share per 30 s: its difficulty
    // rises within seconds; miner 2's does not.
    let mut index = 0;
    let mut en2 = 0;
    let deadline = std::time::Instant::now() + WAIT;
    let raised = loop {
        en2 += 1;
        let s = a.mine(&job, 1, en2, DIFF, true);
        a.ex(ExMessage::SubmitShare(s)).await;
        match a.answer().await {
            Got::Ex(ExMessage::SubmitResponse {
                index: i,
                status: st,
            }) => {
                assert_eq!(i, index);
                assert!(status::is_accepted(st), "{st}");
                index += 1;
            }
            Got::Ex(ExMessage::MiningSetDiff {
                exponent,
                session_ids,
            }) => break (exponent, session_ids),
            other => panic!("{other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retarget after {en2} quick shares"
        );
    };
    assert_eq!(raised.1, vec![1], "only the fast miner");
    let new = difficulty_of(raised.0, true);
    assert!(new > DIFF, "raised: {new}");
    // Its shares are credited at its own difficulty from the next job on;
    // miner 2's still at the starting one.
    let slow = a.mine(&job, 2, 1, DIFF, true);
    a.ex(ExMessage::SubmitShare(slow)).await;
    let rec = record_where(&shares, WAIT, "the slow miner's share", |s| {
        s.nonce == slow.nonce && s.worker_name == "slow"
    })
    .await;
    assert_eq!(
        (rec.status, rec.share_difficulty),
        (ShareStatus::Accepted, DIFF)
    );
    // A job sent after the retarget counts the fast miner at the new one.
    r.generate().await;
    let fresh = loop {
        match a.next().await {
            Got::Line(ServerMessage::Notification(Notification::Notify(n)))
                if n.job_id != job.job_id && n.prev_hash != job.prev_hash =>
            {
                break n;
            }
            _ => {}
        }
    };
    let s = a.mine(&fresh, 1, 1, new, true);
    a.ex(ExMessage::SubmitShare(s)).await;
    let rec = record_where(&shares, WAIT, "the fast miner's share", |x| {
        x.nonce == s.nonce && x.worker_name == "fast" && x.share_difficulty == new
    })
    .await;
    assert_eq!(rec.status, ShareStatus::Accepted);
    let low = a.mine(&fresh, 1, 2, new, false);
    a.ex(ExMessage::SubmitShare(low)).await;
    let rec = record_where(&shares, WAIT, "a share below its new difficulty", |x| {
        x.nonce == low.nonce && x.worker_name == "fast"
    })
    .await;
    assert_eq!(rec.status, ShareStatus::LowDifficulty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ex_messages_from_a_plain_miner_or_malformed_are_refused() {
    let r: Rig = rig(|_| {}).await;
    // A plain miner: the magic byte is no frame for it, just a bad line.
    let (mut m, _job) = r.ready_miner().await;
    m.raw_bytes(&ExMessage::UnregisterWorker { session_id: 1 }.encode())
        .await;
    m.raw_bytes(b"\n").await;
    // An agent sending a broken frame, then a frame only a pool sends: both
    // answered as bad input, the session goes on.
    let mut a = Agent::connect(r.stratum).await;
    a.handshake(&r.user, &[capability::SUBMIT_RESPONSE]).await;
    a.wr.write_all(&[0x7F, 0x02, 6, 0, 1, 2]).await.unwrap();
    a.ex(ExMessage::MiningSetDiff {
        exponent: 1,
        session_ids: vec![1],
    })
    .await;
    for _ in 0..2 {
        match a.answer().await {
            Got::Line(ServerMessage::Response(r)) => assert!(r.result.is_err()),
            other => panic!("{other:?}"),
        }
    }
    a.ex(register(1, "x", "after")).await;
    let job = a.first_job().await;
    let s = a.mine(&job, 1, 1, 1.0, false);
    a.ex(ExMessage::SubmitShare(s)).await;
    assert_eq!(a.submit_response().await, (0, status::LOW_DIFFICULTY));
    // A length below the header cannot be framed: the connection closes.
    a.wr.write_all(&[0x7F, 0x02, 1, 0]).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, a.rd.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(n.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_back_within_the_resume_time_gets_its_session_and_jobs_back() {
    let r: Rig = rig(|_| {}).await;
    let shares = r.shares().await;
    let caps = [
        capability::SUBMIT_RESPONSE,
        capability::SIGNED_DIFF_EXPONENT,
    ];
    let mut a = Agent::connect(r.stratum).await;
    a.handshake(&r.user, &caps).await;
    let job = a.first_job().await;
    a.ex(register(1, "cpuminer", "rig1")).await;
    let before = a.mine(&job, 1, 1, DIFF, true);
    a.ex(ExMessage::SubmitShare(before)).await;
    assert_eq!(a.submit_response().await, (0, status::ACCEPT));
    // Found while the uplink was down, on the job the agent had.
    let gap = a.mine(&job, 1, 2, DIFF, true);
    let old = hex::encode(&a.extranonce1);
    let events = r.events().await;
    drop(a);
    record_where(
        &events,
        WAIT,
        "rig1 left with the agent",
        |e| matches!(&e.kind, EventKind::MinerDisconnected(m) if m.worker_name == "rig1"),
    )
    .await;

    let mut b = Agent::connect(r.stratum).await;
    b.handshake_resuming(&r.user, &caps, Some(&old)).await;
    assert_eq!(hex::encode(&b.extranonce1), old, "the same extranonce1");
    b.ex(register(1, "cpuminer", "rig1")).await;
    b.first_job().await;
    b.ex(ExMessage::SubmitShare(gap)).await;
    assert_eq!(b.submit_response().await, (0, status::ACCEPT));
    let rec = record_where(&shares, WAIT, "the gap share", |s| s.nonce == gap.nonce).await;
    assert_eq!(
        (rec.status, rec.worker_name.as_str()),
        (ShareStatus::Accepted, "rig1")
    );
    // What was accepted before the drop is still known: a duplicate.
    b.ex(ExMessage::SubmitShare(before)).await;
    assert_eq!(b.submit_response().await, (1, status::DUPLICATE_SHARE));

    // Another connection cannot take a session that is in use.
    let mut c = Agent::connect(r.stratum).await;
    c.handshake_resuming(&r.user, &caps, Some(&old)).await;
    assert_ne!(hex::encode(&c.extranonce1), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_miners_only_up_to_the_pool_s_limit() {
    let r: Rig = rig(|c| c.limits.max_agent_workers = 1).await;
    let events = r.events().await;
    let mut a = Agent::connect(r.stratum).await;
    a.handshake(
        &r.user,
        &[
            capability::SUBMIT_RESPONSE,
            capability::SIGNED_DIFF_EXPONENT,
        ],
    )
    .await;
    let job = a.first_job().await;
    a.ex(register(1, "cpuminer", "first")).await;
    a.ex(register(2, "cpuminer", "second")).await;
    let one = a.mine(&job, 1, 1, DIFF, true);
    let two = a.mine(&job, 2, 1, DIFF, true);
    a.ex(ExMessage::SubmitShare(one)).await;
    a.ex(ExMessage::SubmitShare(two)).await;
    assert_eq!(a.submit_response().await, (0, status::ACCEPT));
    assert_eq!(a.submit_response().await, (1, status::UNAUTHORIZED));
    record_where(
        &events,
        WAIT,
        "the first miner connected",
        |e| matches!(&e.kind, EventKind::MinerConnected(m) if m.worker_name == "first"),
    )
    .await;
    // The one over the limit never connected.
    assert!(
        events
            .next_matching(Duration::from_secs(2), |e| {
                matches!(&e.kind, EventKind::MinerConnected(m) if m.worker_name == "second")
            })
            .await
            .unwrap()
            .is_none()
    );
}
