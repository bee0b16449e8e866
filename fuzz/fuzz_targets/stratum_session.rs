//! A miner's bytes, as sserver reads them: line framing in arbitrary chunks,
//! JSON-RPC parsing, the session state machine, the login, and a submit's
//! header assembly and ntime check against a fixed job.
//!
//! Besides "no panic": every line the server would write parses as a server
//! message, holds no newline, and echoes the request's id byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::Submission;
use sluice_core::bitcoin::block::Version;
use sluice_core::bitcoin::hashes::Hash;
use sluice_core::bitcoin::{BlockHash, CompactTarget};
use sluice_core::share::{Work, check_ntime};
use sluice_core::worker::{parse_login, worker_id};
use sluice_stratum::session::{ServerSession, Step};
use sluice_stratum::{Frame, LineFramer, Request, ServerMessage, agent};

const MAX_LINE: usize = 8192;

fn work(extranonce2_len: usize) -> Work {
    Work {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: BlockHash::all_zeros(),
        bits: CompactTarget::from_consensus(0x207f_ffff),
        min_time: 1_700_000_000,
        coinbase1: vec![1; 42],
        coinbase2: vec![2; 60],
        merkle_branch: vec![],
        extranonce2_len,
    }
}

fn written(line: &ServerMessage, id: Option<&str>) {
    let text = line.to_line();
    assert!(
        !text.contains('\n'),
        "a written line holds a newline: {text}"
    );
    let back =
        ServerMessage::parse(&text).unwrap_or_else(|e| panic!("unreadable line {text}: {e}"));
    if let (Some(id), ServerMessage::Response(r)) = (id, &back) {
        assert_eq!(r.id.as_json(), id, "the id is not echoed as sent");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    // The control byte picks the chunk size (as TCP would split) and the
    // session's extranonce2 size (4 or 8, what sserver offers).
    let chunk = usize::from(control & 0x3f) + 1;
    let en2 = if control & 0x40 == 0 { 8 } else { 4 };
    let mask = if control & 0x80 == 0 { 0x1fff_e000 } else { 0 };
    let mut framer = LineFramer::new(MAX_LINE);
    let mut session = ServerSession::new([7, 0, 0, 1], en2, mask);
    let work = work(en2);
    for piece in bytes.chunks(chunk) {
        framer.push(piece);
        loop {
            // With en2 = 8 the stream may carry a farm agent's ex-messages.
            let line = match framer.next_frame(en2 == 8) {
                Ok(Some(Frame::Line(line))) => line,
                Ok(Some(Frame::Ex(frame))) => {
                    assert!(frame.len() >= agent::HEADER_LEN && frame[0] == agent::MAGIC);
                    // Decoded or refused; what decodes encodes to the same bytes.
                    if let Ok(m) = agent::ExMessage::decode(&frame) {
                        assert_eq!(m.encode(), frame, "{m:?}");
                    }
                    continue;
                }
                Ok(None) => break,
                // Too long: sserver answers and closes.
                Err(_) => return,
            };
            assert!(line.len() <= MAX_LINE);
            let Ok(request) = Request::parse(&line) else {
                continue;
            };
            let id = request.id.as_json().to_owned();
            match session.on_request(request) {
                Step::Reply(lines) => {
                    for l in &lines {
                        written(l, None);
                    }
                    if let Some(first) = lines.first() {
                        written(first, Some(&id));
                    }
                }
                Step::Authorize { login, options, .. } => {
                    if let Some(l) = parse_login(&login) {
                        assert!(!l.user.is_empty());
                        let _ = worker_id(&l.worker);
                    }
                    let _ = (options.difficulty, options.minimum_difficulty);
                    session.authorized();
                }
                Step::Submit { submit, .. } => {
                    let _ = sserver::jobs::parse_stratum_job_id(&submit.job_id);
                    let extranonce1 = session.extranonce1();
                    let sub = Submission {
                        extranonce1: &extranonce1,
                        extranonce2: &submit.extranonce2,
                        ntime: submit.ntime,
                        nonce: submit.nonce,
                        version_bits: submit.version_bits,
                    };
                    let target = sluice_core::DIFF1_TARGET;
                    let _ = work.check(&sub, session.version_mask(), &target);
                    let _ = check_ntime(submit.ntime, work.min_time, 1_800_000_000);
                }
                Step::AgentCapabilities { .. } => {}
                Step::SuggestDifficulty { difficulty, .. } => {
                    let _ = sluice_core::Difficulty::new(difficulty).map(|d| d.to_target());
                }
            }
        }
    }
});
