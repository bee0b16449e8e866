//! The BTCAgent extension: binary "ex-messages" inside a Stratum V1
//! connection, between a farm agent and the pool (btcpool's `docs/AGENT.md`,
//! spoken by btccom's BTCAgent and by Sluice's own agent).
//!
//! An agent connects once per account as an ordinary V1 miner whose
//! `mining.subscribe` user agent starts with `btccom-agent/` (or
//! `sluice-agent/`), asks for capabilities with `agent.get_capabilities`, and
//! then carries its miners over that one session: each miner is registered
//! under a 16-bit session id, its shares are submitted with that id, and the
//! pool sets each miner's difficulty and (with `subres`) answers each share.
//!
//! A frame is `0x7F | command u8 | length u16 LE (header included) | body`,
//! integers little-endian. A line of JSON never starts with `0x7F`, so the
//! two kinds of frame share the stream ([`crate::LineFramer::next_frame`]).
//!
//! The miner's 4-byte extranonce2 sits behind its session id inside the
//! pool's 8-byte extranonce2: `00 00 | session id (BE) | miner's en2 (BE)`,
//! so two miners of one agent never do the same work.

/// First byte of every ex-message.
pub const MAGIC: u8 = 0x7F;
/// Magic, command and length.
pub const HEADER_LEN: usize = 4;
/// The largest frame: the length is a u16.
pub const MAX_FRAME: usize = u16::MAX as usize;
/// Session ids an agent may give its miners (`0xFFFF` is reserved).
pub const MAX_SESSION_ID: u16 = 0xFFFE;
/// Session ids one `MINING_SET_DIFF` carries at most (btcpool's limit).
pub const MAX_SET_DIFF_IDS: usize = 32_764;
/// The pool-side extranonce2 an agent session needs.
pub const EXTRANONCE2_SIZE: usize = 8;
/// The extranonce2 each of the agent's miners rolls.
pub const MINER_EXTRANONCE2_SIZE: usize = 4;

/// User agents (`mining.subscribe`) that make a session an agent session.
pub const USER_AGENT_PREFIXES: [&str; 2] = ["btccom-agent/", "sluice-agent/"];

/// Whether a subscribe user agent is a farm agent's.
pub fn is_agent(user_agent: &str) -> bool {
    USER_AGENT_PREFIXES
        .iter()
        .any(|p| user_agent.starts_with(p))
}

/// `agent.get_capabilities` names.
pub mod capability {
    /// Version rolling (ASICBoost) through the agent.
    pub const VERSION_ROLLING: &str = "verrol";
    /// The pool answers every share with `SUBMIT_RESPONSE`.
    pub const SUBMIT_RESPONSE: &str = "subres";
    /// Sluice's extension: `MINING_SET_DIFF`'s exponent is a signed byte, so
    /// difficulties below 1 (test networks, CPU miners) can be set. Without
    /// it the exponent is unsigned, as in btcpool.
    pub const SIGNED_DIFF_EXPONENT: &str = "sluice-sdiff";
}

/// Command bytes.
pub mod command {
    /// Agent → pool: a miner joined.
    pub const REGISTER_WORKER: u8 = 0x01;
    /// Agent → pool: a share (job's ntime, no version bits).
    pub const SUBMIT_SHARE: u8 = 0x02;
    /// Agent → pool: a share with its ntime.
    pub const SUBMIT_SHARE_WITH_TIME: u8 = 0x03;
    /// Agent → pool: a miner left.
    pub const UNREGISTER_WORKER: u8 = 0x04;
    /// Pool → agent: a difficulty for some miners.
    pub const MINING_SET_DIFF: u8 = 0x05;
    /// Pool → agent: the verdict on one share (with `subres`).
    pub const SUBMIT_RESPONSE: u8 = 0x10;
    /// Agent → pool: a share with version bits.
    pub const SUBMIT_SHARE_WITH_VER: u8 = 0x12;
    /// Agent → pool: a share with ntime and version bits.
    pub const SUBMIT_SHARE_WITH_TIME_VER: u8 = 0x13;
}

/// btcpool's share statuses, as `SUBMIT_RESPONSE` carries them.
pub mod status {
    /// Accepted.
    pub const ACCEPT: u32 = 1_798_084_231;
    /// Accepted, and a block.
    pub const SOLVED: u32 = 1_422_486_894;
    /// Rejected without a reason.
    pub const REJECT_NO_REASON: u32 = 0;
    /// Unknown job or stale.
    pub const JOB_NOT_FOUND_OR_STALE: u32 = 21;
    /// Seen before.
    pub const DUPLICATE_SHARE: u32 = 22;
    /// Above the miner's target.
    pub const LOW_DIFFICULTY: u32 = 23;
    /// The session id was never registered.
    pub const UNAUTHORIZED: u32 = 24;
    /// Malformed.
    pub const ILLEGAL_PARAMS: u32 = 27;
    /// ntime before the job's.
    pub const TIME_TOO_OLD: u32 = 31;
    /// ntime too far ahead.
    pub const TIME_TOO_NEW: u32 = 32;
    /// Version bits outside the mask.
    pub const ILLEGAL_VERSION_MASK: u32 = 33;

    /// Whether a status means the share was accepted.
    pub fn is_accepted(status: u32) -> bool {
        status == ACCEPT || status == SOLVED
    }

    /// The words btcpool gives a status (what a miner behind an agent sees).
    pub fn message(status: u32) -> &'static str {
        match status {
            ACCEPT => "Share accepted",
            SOLVED => "Share accepted and solved",
            JOB_NOT_FOUND_OR_STALE => "Job not found (=stale)",
            DUPLICATE_SHARE => "Duplicate share",
            LOW_DIFFICULTY => "Low difficulty",
            UNAUTHORIZED => "Unauthorized worker",
            ILLEGAL_PARAMS => "Illegal params",
            TIME_TOO_OLD => "Time too old",
            TIME_TOO_NEW => "Time too new",
            ILLEGAL_VERSION_MASK => "Invalid version mask",
            _ => "Share rejected",
        }
    }
}

/// A share from one of the agent's miners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExSubmit {
    /// The short (0–255) job id of the agent session's `mining.notify`.
    pub job_id: u8,
    /// The miner's session id.
    pub session_id: u16,
    /// The miner's extranonce2 (its 4 bytes read big-endian).
    pub extranonce2: u32,
    /// The header nonce.
    pub nonce: u32,
    /// None: the job's ntime.
    pub time: Option<u32>,
    /// Rolled version bits; None: none.
    pub version_mask: Option<u32>,
}

impl ExSubmit {
    /// The pool-side 8-byte extranonce2 of this share.
    pub fn full_extranonce2(&self) -> [u8; 8] {
        full_extranonce2(self.session_id, self.extranonce2)
    }
}

/// `00 00 | session id | miner's extranonce2`, big-endian as in the coinbase.
pub fn full_extranonce2(session_id: u16, extranonce2: u32) -> [u8; 8] {
    ((u64::from(session_id) << 32) | u64::from(extranonce2)).to_be_bytes()
}

/// One ex-message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ExMessage {
    RegisterWorker {
        session_id: u16,
        client_agent: String,
        worker_name: String,
    },
    UnregisterWorker {
        session_id: u16,
    },
    SubmitShare(ExSubmit),
    /// Difficulty `2^exponent` for every miner listed (the exponent signed
    /// with [`capability::SIGNED_DIFF_EXPONENT`]).
    MiningSetDiff {
        exponent: u8,
        session_ids: Vec<u16>,
    },
    SubmitResponse {
        /// The share's place among the session's submits (from 0, wrapping).
        index: u16,
        status: u32,
    },
}

/// Why a frame is not an ex-message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum ExError {
    #[error("ex-message shorter than its header")]
    Short,
    #[error("ex-message does not start with 0x7F")]
    Magic,
    #[error("ex-message length {declared} does not match its {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("unknown ex-message command 0x{0:02x}")]
    Command(u8),
    #[error("ex-message 0x{command:02x}: body of {len} bytes is malformed")]
    Body { command: u8, len: usize },
}

impl ExMessage {
    /// The frame, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let command = match self {
            ExMessage::RegisterWorker {
                session_id,
                client_agent,
                worker_name,
            } => {
                body.extend_from_slice(&session_id.to_le_bytes());
                for s in [client_agent, worker_name] {
                    body.extend(s.bytes().filter(|&b| b != 0));
                    body.push(0);
                }
                command::REGISTER_WORKER
            }
            ExMessage::UnregisterWorker { session_id } => {
                body.extend_from_slice(&session_id.to_le_bytes());
                command::UNREGISTER_WORKER
            }
            ExMessage::SubmitShare(s) => {
                body.push(s.job_id);
                body.extend_from_slice(&s.session_id.to_le_bytes());
                body.extend_from_slice(&s.extranonce2.to_le_bytes());
                body.extend_from_slice(&s.nonce.to_le_bytes());
                if let Some(t) = s.time {
                    body.extend_from_slice(&t.to_le_bytes());
                }
                if let Some(v) = s.version_mask {
                    body.extend_from_slice(&v.to_le_bytes());
                }
                match (s.time.is_some(), s.version_mask.is_some()) {
                    (false, false) => command::SUBMIT_SHARE,
                    (true, false) => command::SUBMIT_SHARE_WITH_TIME,
                    (false, true) => command::SUBMIT_SHARE_WITH_VER,
                    (true, true) => command::SUBMIT_SHARE_WITH_TIME_VER,
                }
            }
            ExMessage::MiningSetDiff {
                exponent,
                session_ids,
            } => {
                body.push(*exponent);
                // More than one message holds: see [`set_diff`].
                let ids = &session_ids[..session_ids.len().min(MAX_SET_DIFF_IDS)];
                body.extend_from_slice(&(ids.len() as u16).to_le_bytes());
                for id in ids {
                    body.extend_from_slice(&id.to_le_bytes());
                }
                command::MINING_SET_DIFF
            }
            ExMessage::SubmitResponse { index, status } => {
                body.extend_from_slice(&index.to_le_bytes());
                body.extend_from_slice(&status.to_le_bytes());
                command::SUBMIT_RESPONSE
            }
        };
        let len = (HEADER_LEN + body.len()).min(MAX_FRAME);
        let mut frame = Vec::with_capacity(len);
        frame.push(MAGIC);
        frame.push(command);
        frame.extend_from_slice(&(len as u16).to_le_bytes());
        frame.extend_from_slice(&body[..len - HEADER_LEN]);
        frame
    }

    /// Decodes one whole frame (as [`crate::LineFramer::next_frame`] gives it).
    pub fn decode(frame: &[u8]) -> Result<ExMessage, ExError> {
        if frame.len() < HEADER_LEN {
            return Err(ExError::Short);
        }
        if frame[0] != MAGIC {
            return Err(ExError::Magic);
        }
        let command = frame[1];
        let declared = usize::from(u16::from_le_bytes([frame[2], frame[3]]));
        if declared != frame.len() {
            return Err(ExError::Length {
                declared,
                actual: frame.len(),
            });
        }
        let body = &frame[HEADER_LEN..];
        let bad = || ExError::Body {
            command,
            len: body.len(),
        };
        let u16_at = |i: usize| -> Result<u16, ExError> {
            body.get(i..i + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(bad)
        };
        let u32_at = |i: usize| -> Result<u32, ExError> {
            body.get(i..i + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(bad)
        };
        Ok(match command {
            command::REGISTER_WORKER => {
                let session_id = u16_at(0)?;
                // Exactly two NUL-terminated UTF-8 strings, nothing after.
                let rest = &body[2..];
                if rest.last() != Some(&0) || rest.iter().filter(|&&b| b == 0).count() != 2 {
                    return Err(bad());
                }
                let mut strings = rest[..rest.len() - 1].split(|&b| b == 0);
                let mut next = || {
                    strings
                        .next()
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .map(str::to_owned)
                        .ok_or_else(bad)
                };
                let client_agent = next()?;
                let worker_name = next()?;
                ExMessage::RegisterWorker {
                    session_id,
                    client_agent,
                    worker_name,
                }
            }
            command::UNREGISTER_WORKER if body.len() == 2 => ExMessage::UnregisterWorker {
                session_id: u16_at(0)?,
            },
            command::SUBMIT_SHARE
            | command::SUBMIT_SHARE_WITH_TIME
            | command::SUBMIT_SHARE_WITH_VER
            | command::SUBMIT_SHARE_WITH_TIME_VER => {
                let with_time = matches!(
                    command,
                    command::SUBMIT_SHARE_WITH_TIME | command::SUBMIT_SHARE_WITH_TIME_VER
                );
                let with_ver = matches!(
                    command,
                    command::SUBMIT_SHARE_WITH_VER | command::SUBMIT_SHARE_WITH_TIME_VER
                );
                let expected = 11 + 4 * usize::from(with_time) + 4 * usize::from(with_ver);
                if body.len() != expected {
                    return Err(bad());
                }
                ExMessage::SubmitShare(ExSubmit {
                    job_id: body[0],
                    session_id: u16_at(1)?,
                    extranonce2: u32_at(3)?,
                    nonce: u32_at(7)?,
                    time: with_time.then(|| u32_at(11)).transpose()?,
                    version_mask: with_ver
                        .then(|| u32_at(11 + 4 * usize::from(with_time)))
                        .transpose()?,
                })
            }
            command::MINING_SET_DIFF => {
                let exponent = *body.first().ok_or_else(bad)?;
                let count = usize::from(u16_at(1)?);
                if body.len() != 3 + 2 * count {
                    return Err(bad());
                }
                let session_ids = (0..count)
                    .map(|i| u16_at(3 + 2 * i))
                    .collect::<Result<_, _>>()?;
                ExMessage::MiningSetDiff {
                    exponent,
                    session_ids,
                }
            }
            command::SUBMIT_RESPONSE if body.len() == 6 => ExMessage::SubmitResponse {
                index: u16_at(0)?,
                status: u32_at(2)?,
            },
            command::UNREGISTER_WORKER | command::SUBMIT_RESPONSE => return Err(bad()),
            other => return Err(ExError::Command(other)),
        })
    }
}

/// `MINING_SET_DIFF` messages setting 2^`exponent` for `session_ids`, as
/// many as the id limit per message needs.
pub fn set_diff(exponent: u8, session_ids: &[u16]) -> impl Iterator<Item = ExMessage> + '_ {
    session_ids
        .chunks(MAX_SET_DIFF_IDS)
        .map(move |ids| ExMessage::MiningSetDiff {
            exponent,
            session_ids: ids.to_vec(),
        })
}

/// The difficulty a `MINING_SET_DIFF` exponent means.
pub fn difficulty_of(exponent: u8, signed: bool) -> f64 {
    let e = if signed {
        i32::from(exponent as i8)
    } else {
        i32::from(exponent)
    };
    2f64.powi(e)
}

/// The exponent of the power of two nearest `difficulty` (in log scale),
/// kept within `[min, max]` (as powers of two inside them) and within what
/// the byte can say: from 2^0 unsigned, from 2^-128 signed.
pub fn exponent_for(difficulty: f64, min: f64, max: f64, signed: bool) -> u8 {
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    let log = |d: f64| {
        if d > 0.0 && d.is_finite() {
            d.log2()
        } else {
            0.0
        }
    };
    let floor = (log(min).ceil() as i32).clamp(lo, hi);
    let ceil = (log(max).floor() as i32).clamp(floor, hi);
    let e = (log(difficulty).round() as i32).clamp(floor, ceil);
    if signed { e as i8 as u8 } else { e as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames written byte by byte from btcpool's `docs/AGENT.md` tables.
    #[test]
    fn frames_match_the_published_layout() {
        // REGISTER_WORKER: session 0x0102, "cgminer/4.10", "rig7".
        let mut want = vec![0x7F, 0x01, 0, 0, 0x02, 0x01];
        want.extend_from_slice(b"cgminer/4.10\0rig7\0");
        want[2] = want.len() as u8;
        let reg = ExMessage::RegisterWorker {
            session_id: 0x0102,
            client_agent: "cgminer/4.10".into(),
            worker_name: "rig7".into(),
        };
        assert_eq!(reg.encode(), want);
        assert_eq!(ExMessage::decode(&want).unwrap(), reg);

        // SUBMIT_SHARE_WITH_TIME_VER: 4 + 1 + 2 + 4 + 4 + 4 + 4 = 23 bytes.
        let s = ExSubmit {
            job_id: 0xAB,
            session_id: 0x0007,
            extranonce2: 0x1122_3344,
            nonce: 0xDEAD_BEEF,
            time: Some(0x5F5E_1000),
            version_mask: Some(0x0000_2000),
        };
        let want = [
            0x7F, 0x13, 23, 0, 0xAB, 0x07, 0x00, 0x44, 0x33, 0x22, 0x11, 0xEF, 0xBE, 0xAD, 0xDE,
            0x00, 0x10, 0x5E, 0x5F, 0x00, 0x20, 0x00, 0x00,
        ];
        assert_eq!(ExMessage::SubmitShare(s).encode(), want);
        assert_eq!(ExMessage::decode(&want).unwrap(), ExMessage::SubmitShare(s));
        // The short forms: 15, 19, 19 bytes, commands 0x02, 0x03, 0x12.
        for (time, ver, cmd, len) in [
            (None, None, 0x02, 15),
            (Some(1), None, 0x03, 19),
            (None, Some(2), 0x12, 19),
        ] {
            let m = ExMessage::SubmitShare(ExSubmit {
                time,
                version_mask: ver,
                ..s
            });
            let f = m.encode();
            assert_eq!((f[1], f[2], f.len()), (cmd, len as u8, len));
            assert_eq!(ExMessage::decode(&f).unwrap(), m);
        }

        // MINING_SET_DIFF 2^13 for sessions 1 and 0x0203.
        let want = [0x7F, 0x05, 11, 0, 13, 2, 0, 1, 0, 3, 2];
        let m = ExMessage::MiningSetDiff {
            exponent: 13,
            session_ids: vec![1, 0x0203],
        };
        assert_eq!(m.encode(), want);
        assert_eq!(ExMessage::decode(&want).unwrap(), m);

        // SUBMIT_RESPONSE index 5, ACCEPT.
        let want = [0x7F, 0x10, 10, 0, 5, 0, 0x87, 0x96, 0x2C, 0x6B];
        let m = ExMessage::SubmitResponse {
            index: 5,
            status: status::ACCEPT,
        };
        assert_eq!(m.encode(), want);
        assert_eq!(ExMessage::decode(&want).unwrap(), m);

        // UNREGISTER_WORKER.
        let want = [0x7F, 0x04, 6, 0, 0x34, 0x12];
        let m = ExMessage::UnregisterWorker { session_id: 0x1234 };
        assert_eq!(m.encode(), want);
        assert_eq!(ExMessage::decode(&want).unwrap(), m);
    }

    #[test]
    fn malformed_frames_are_errors_never_panics() {
        assert_eq!(ExMessage::decode(&[0x7F, 0x02]), Err(ExError::Short));
        assert_eq!(
            ExMessage::decode(&[0x7E, 0x04, 6, 0, 1, 0]),
            Err(ExError::Magic)
        );
        assert_eq!(
            ExMessage::decode(&[0x7F, 0x04, 7, 0, 1, 0]),
            Err(ExError::Length {
                declared: 7,
                actual: 6
            })
        );
        assert_eq!(
            ExMessage::decode(&[0x7F, 0x77, 4, 0]),
            Err(ExError::Command(0x77))
        );
        // A submit one byte short, a set-diff whose count lies, an
        // unterminated worker name.
        assert!(ExMessage::decode(&[0x7F, 0x02, 14, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).is_err());
        assert!(ExMessage::decode(&[0x7F, 0x05, 9, 0, 1, 3, 0, 1, 0]).is_err());
        assert!(ExMessage::decode(&[0x7F, 0x01, 9, 0, 1, 0, b'a', 0, b'b']).is_err());
        // Every prefix of every valid frame, and every byte flipped.
        let frames = [
            ExMessage::RegisterWorker {
                session_id: 9,
                client_agent: "a".into(),
                worker_name: "w".into(),
            }
            .encode(),
            ExMessage::MiningSetDiff {
                exponent: 1,
                session_ids: vec![1, 2, 3],
            }
            .encode(),
        ];
        for f in frames {
            for n in 0..f.len() {
                let _ = ExMessage::decode(&f[..n]);
                let mut g = f.clone();
                g[n] ^= 0xFF;
                let _ = ExMessage::decode(&g);
            }
        }
    }

    #[test]
    fn the_miner_s_extranonce_sits_behind_its_session_id() {
        assert_eq!(
            full_extranonce2(0x0102, 0xAABB_CCDD),
            [0, 0, 0x01, 0x02, 0xAA, 0xBB, 0xCC, 0xDD]
        );
    }

    #[test]
    fn difficulties_are_powers_of_two_within_the_pool_s_range() {
        assert_eq!(difficulty_of(13, false), 8192.0);
        assert_eq!(difficulty_of(0xFE, true), 0.25);
        assert_eq!(exponent_for(8192.0, 1.0, 1e9, false), 13);
        // Nearest in log scale: 6000 is nearer 2^13 than 2^12.
        assert_eq!(exponent_for(6000.0, 1.0, 1e9, false), 13);
        assert_eq!(exponent_for(5000.0, 1.0, 1e9, false), 12);
        // Below 1 needs the signed exponent; unsigned clamps to 2^0.
        assert_eq!(exponent_for(0.001, 1e-12, 1e9, false), 0);
        let e = exponent_for(0.001, 1e-12, 1e9, true);
        assert_eq!(difficulty_of(e, true), 2f64.powi(-10));
        // Within the pool's bounds: the power of two at or above the minimum.
        let e = exponent_for(1e-12, 3e-10, 1e-6, true);
        assert!(difficulty_of(e, true) >= 3e-10 && difficulty_of(e, true) < 6e-10);
        let e = exponent_for(1.0, 3e-10, 1e-6, true);
        assert!(difficulty_of(e, true) <= 1e-6 && difficulty_of(e, true) > 0.5e-6);
    }

    #[test]
    fn agents_are_known_by_their_user_agent() {
        assert!(is_agent("btccom-agent/2.0.0-mu"));
        assert!(is_agent("sluice-agent/0.1.0"));
        assert!(!is_agent("cgminer/4.10"));
    }
}
