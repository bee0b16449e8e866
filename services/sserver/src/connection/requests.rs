//! A V1 connection's requests: each line read is parsed and answered
//! (subscribe, authorize, submit, the agent's capabilities, a suggested
//! difficulty); jobs go out as the miner's channel offers them; shares are
//! judged by the channel and answered in V1's words.

use std::sync::Arc;

use sluice_core::record::{EventKind, MinerIdentity, MiningProtocol};
use sluice_core::worker::parse_login;
use sluice_stratum::message::Submit;
use sluice_stratum::session::{PasswordOptions, Step};
use sluice_stratum::{
    Call, ErrorCode, Frame, FrameError, Id, LineFramer, Notification, Request, Response,
    ServerMessage,
};

use super::{Conn, End};
use crate::channel::{Channel, Recorded, Via};
use crate::jobs::parse_stratum_job_id;
use crate::judge::{Rejection, ShareWork};
use crate::shared::Miner;
use crate::users::AuthError;
use crate::vardiff::Vardiff;

/// A share's verdict on the wire and what to record of it.
struct Judged {
    verdict: Result<(), (ErrorCode, String)>,
    recorded: Recorded,
}

impl Judged {
    fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Judged {
            verdict: Err((code, message.into())),
            recorded: Recorded::default(),
        }
    }
}

impl Conn {
    pub(super) async fn process(&mut self, framer: &mut LineFramer) -> Result<(), End> {
        loop {
            match framer.next_frame(self.agent_capable()) {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Line(line))) => self.on_line(&line).await?,
                Ok(Some(Frame::Ex(frame))) => self.on_ex_message(&frame).await?,
                Err(FrameError::ExLength(len)) => {
                    self.shared.metrics.bad_lines.inc();
                    return Err(End::Protocol(format!(
                        "ex-message length {len} shorter than its header"
                    )));
                }
                Err(FrameError::TooLong { max }) => {
                    self.shared.metrics.bad_lines.inc();
                    self.send(
                        Response::error(
                            Id::null(),
                            ErrorCode::Other,
                            format!("line longer than {max} bytes"),
                        )
                        .into(),
                    )
                    .await;
                    return Err(End::Protocol(format!("line longer than {max} bytes")));
                }
                Err(FrameError::NotUtf8) => {
                    self.bad_line(Id::null(), "line is not UTF-8".into())
                        .await?
                }
            }
            if self.close {
                return Ok(());
            }
        }
    }

    pub(super) async fn bad_line(&mut self, id: Id, message: String) -> Result<(), End> {
        self.shared.metrics.bad_lines.inc();
        self.bad_lines += 1;
        self.send(Response::error(id, ErrorCode::Other, message.clone()).into())
            .await;
        if self.bad_lines > self.shared.config.max_bad_lines {
            return Err(End::Protocol(format!(
                "too many malformed lines, last: {message}"
            )));
        }
        Ok(())
    }

    async fn on_line(&mut self, line: &str) -> Result<(), End> {
        let request = match Request::parse(line) {
            Ok(r) => r,
            Err(e) => return self.bad_line(e.id, e.error.message).await,
        };
        if let Call::Subscribe(s) = &request.call
            && let Some(old) = s.session_id.as_deref()
            && s.user_agent
                .as_deref()
                .is_some_and(sluice_stratum::agent::is_agent)
        {
            self.resume_agent(old);
        }
        match self.session.on_request(request) {
            Step::Reply(messages) => {
                for m in messages {
                    self.send(m).await;
                }
                if let Some(md) = self.session.minimum_difficulty() {
                    self.set_floor(md);
                }
            }
            Step::Authorize { id, login, options } => {
                self.handle_authorize(id, &login, options).await
            }
            Step::Submit { id, submit } => self.handle_submit(id, submit).await,
            Step::AgentCapabilities { id, asked } => self.agent_capabilities(id, asked).await,
            Step::SuggestDifficulty { id, difficulty } => {
                self.send(Response::ok(id).into()).await;
                self.suggested = Some(difficulty);
                if let Some(ch) = self.channel.as_mut() {
                    ch.vardiff
                        .reset(difficulty, self.started.elapsed().as_secs_f64());
                    self.notify_latest(true).await;
                }
            }
        }
        Ok(())
    }

    fn set_floor(&mut self, floor: f64) {
        let now = self.started.elapsed().as_secs_f64();
        if let Some(ch) = self.channel.as_mut() {
            ch.vardiff.set_floor(floor, now);
        }
    }

    async fn handle_authorize(&mut self, id: Id, login: &str, options: PasswordOptions) {
        let Some(parsed) = parse_login(login) else {
            self.send(
                Response::error(
                    id,
                    ErrorCode::Unauthorized,
                    format!("invalid login {login:?}: expected user.worker"),
                )
                .into(),
            )
            .await;
            return;
        };
        let who = match self.shared.login(&parsed.user).await {
            Ok(who) => who,
            Err(e) => {
                let code = match e {
                    AuthError::Unavailable | AuthError::NoJobYet => ErrorCode::Other,
                    _ => ErrorCode::Unauthorized,
                };
                self.send(Response::error(id, code, e.to_string()).into())
                    .await;
                return;
            }
        };
        self.session.authorized();
        let c = &self.shared.config;
        let start = options
            .difficulty
            .or(self.suggested)
            .unwrap_or(c.default_difficulty);
        let mut vardiff = Vardiff::new(c.vardiff, start, self.started.elapsed().as_secs_f64());
        if let Some(md) = options
            .minimum_difficulty
            .or(self.session.minimum_difficulty())
        {
            vardiff.set_floor(md, self.started.elapsed().as_secs_f64());
        }
        let miner = Miner::from_login(who, parsed);
        tracing::Span::current().record(
            "worker",
            tracing::field::display(format_args!("{}.{}", miner.user, miner.worker)),
        );
        let extranonce1 = self.session.extranonce1();
        self.channel = Some(Channel::new(miner, extranonce1, vardiff, 0));
        self.send(Response::ok(id).into()).await;
        if self.agent_capable() {
            // Its miners connect one by one, as they register.
            self.start_agent(start);
        } else if let Some(identity) = self.identity() {
            self.event(EventKind::MinerConnected(identity));
        }
        self.board.borrow_and_update();
        self.notify_latest(true).await;
    }

    /// Sends the newest job (clean if the tip moved since the last one sent),
    /// preceded by `mining.set_difficulty` when the difficulty changed.
    /// `force`: even if it was already sent.
    pub(super) async fn notify_latest(&mut self, force: bool) {
        if self.is_agent() {
            return self.agent_notify(force).await;
        }
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        let Some(offer) = ch.offer(&job, force) else {
            return;
        };
        let coinbase2 = ch.sent.latest().and_then(|s| s.coinbase2.clone());
        if let Some(difficulty) = offer.difficulty {
            self.send(Notification::SetDifficulty(difficulty).into())
                .await;
        }
        // A job sent before goes again as it was (the periodic notify); a
        // solo miner's with its own coinbase2 between the job's halves.
        match (&coinbase2, job.solo_halves(offer.clean)) {
            (Some(c), Some((head, tail))) => self.out.push_around_hex(head, c, tail),
            (Some(c), None) => {
                self.send_line(&job.notify_line_paying(offer.clean, c))
                    .await;
            }
            (None, _) => self.send_line(job.notify_line(offer.clean)).await,
        }
    }

    async fn handle_submit(&mut self, id: Id, submit: Submit) {
        let judged = self.check_submit(&submit);
        // Stale and unknown-job shares (21) are the network's doing, not the
        // miner's: a farm behind one address sends a burst of them after every
        // block. Only the rest count towards a ban.
        let rejected = matches!(&judged.verdict, Err((code, _)) if *code != ErrorCode::JobNotFound);
        let reply = match &judged.verdict {
            Ok(()) => Response::ok(id),
            Err((code, message)) => Response::error(id, *code, message.clone()),
        };
        self.send(reply.into()).await;
        self.record(judged.recorded).await;
        if rejected && self.shared.rejected(&mut self.rejects, self.peer.ip()) {
            self.close = true;
        }
    }

    /// Hands a judged share's record and block candidate to the sinks
    /// (V1 and the agent's miners alike).
    pub(super) async fn record(&mut self, recorded: Recorded) {
        let shared = Arc::clone(&self.shared);
        shared.publish(recorded, &mut self.unacked).await;
    }

    /// Has the channel judge one share and words the verdict for Stratum
    /// V1. Shares that were checked (all but unknown jobs, duplicates and
    /// malformed ones) are recorded whatever their outcome.
    fn check_submit(&mut self, submit: &Submit) -> Judged {
        let shared = Arc::clone(&self.shared);
        let job = parse_stratum_job_id(&submit.job_id);
        let found = self.channel.as_mut().and_then(|ch| {
            let pos = ch.sent.find(|s| Some(s.job.job.id) == job)?;
            Some((ch, pos))
        });
        let Some((ch, pos)) = found else {
            shared.metrics.share("job_not_found");
            return Judged::rejected(ErrorCode::JobNotFound, "Job not found");
        };
        let extranonce1 = ch.extranonce1;
        let work = ShareWork {
            extranonce1: &extranonce1,
            extranonce2: &submit.extranonce2,
            ntime: submit.ntime,
            nonce: submit.nonce,
            version_bits: submit.version_bits,
        };
        let via = Via {
            peer: self.peer.ip(),
            protocol: MiningProtocol::StratumV1,
        };
        let mask = self.session.version_mask();
        let (judgement, recorded) = ch.submit(&shared, pos, &work, mask, via, None);
        Judged {
            verdict: judgement.verdict.as_ref().map(|_| ()).map_err(v1_error),
            recorded,
        }
    }

    pub(super) fn identity(&self) -> Option<MinerIdentity> {
        let agent = self.session.user_agent().unwrap_or_default().to_owned();
        let ch = self.channel.as_ref()?;
        Some(ch.identity(self.shared.server_id, self.peer.ip(), agent))
    }

    pub(super) fn event(&self, kind: EventKind) {
        self.shared.event(kind);
    }

    pub(super) async fn send(&mut self, message: ServerMessage) {
        self.send_line(&message.to_line()).await;
    }

    /// Queues one line (newline added); errors surface at the next flush.
    async fn send_line(&mut self, line: &str) {
        self.out.push(line);
    }
}

/// A rejection in Stratum V1's words (codes as btcpool and ckpool send them).
fn v1_error(r: &Rejection) -> (ErrorCode, String) {
    match r {
        Rejection::Extranonce2Size { got, expected } => (
            ErrorCode::Other,
            format!("extranonce2 must be {expected} bytes, got {got}"),
        ),
        Rejection::JobExpired => (ErrorCode::JobNotFound, "Job not found (expired)".into()),
        Rejection::Duplicate => (ErrorCode::Duplicate, "Duplicate share".into()),
        Rejection::VersionBits { bits, mask } => (
            ErrorCode::Other,
            format!("version bits {bits:08x} outside the negotiated mask {mask:08x}"),
        ),
        Rejection::Invalid(e) => (ErrorCode::Other, e.clone()),
        Rejection::TimeTooOld => (ErrorCode::Other, "Time too old".into()),
        Rejection::TimeTooNew => (ErrorCode::Other, "Time too new".into()),
        Rejection::Stale => (ErrorCode::JobNotFound, "Stale share".into()),
        Rejection::LowDifficulty => (ErrorCode::LowDifficulty, "Low difficulty share".into()),
    }
}
