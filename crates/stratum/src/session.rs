//! The server's view of one connection: connected → subscribed → authorized.
//!
//! [`ServerSession::on_request`] answers what the session alone can answer
//! (ordering errors, `mining.configure`, unknown methods) and hands the rest
//! back as a [`Step`] for the server to carry out: authorizing needs the user
//! table, a submit needs the job and the share check. Every request ends in
//! exactly one response, which is what miners and the tests rely on.
//!
//! Fixes over btcpool's behaviour: a submit or an unknown method before
//! authorization is answered (btcpool stays silent, miners time out), and the
//! version-rolling mask negotiated here is the one enforced on submits.

use sluice_core::Difficulty;

use crate::Id;
use crate::message::{
    Call, Configure, Configured, ErrorCode, Notification, Request, Response, ServerMessage, Submit,
    Subscribed,
};

/// Where a connection is in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing yet.
    Connected,
    /// Has an extranonce1.
    Subscribed,
    /// Mining for a worker.
    Authorized,
}

/// What the server must do with a request the session could not finish.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send these; nothing else to do.
    Reply(Vec<ServerMessage>),
    /// Look the user up, then call [`ServerSession::authorized`] and answer
    /// true, or answer with an error.
    Authorize {
        /// Request id.
        id: Id,
        /// `user.worker` as sent.
        login: String,
        /// Options from the password field.
        options: PasswordOptions,
    },
    /// Check the share and answer.
    Submit {
        /// Request id.
        id: Id,
        /// The share.
        submit: Submit,
    },
    /// The miner asked for a difficulty (suggest_difficulty/suggest_target);
    /// answer true and apply it from the next job on.
    SuggestDifficulty {
        /// Request id.
        id: Id,
        /// The difficulty asked for.
        difficulty: f64,
    },
    /// A farm agent asks for capabilities: answer with
    /// `{"capabilities": [the ones the server has]}`.
    AgentCapabilities {
        /// Request id.
        id: Id,
        /// The names asked for.
        asked: Vec<String>,
    },
}

/// `d=` and `md=` from the authorize password (`x`, `d=1024`, `md=64,d=512`…).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PasswordOptions {
    /// Starting difficulty.
    pub difficulty: Option<f64>,
    /// Minimum difficulty.
    pub minimum_difficulty: Option<f64>,
}

impl PasswordOptions {
    /// Reads the comma- (or semicolon-) separated `key=value` pairs it knows;
    /// anything else in a password is ignored (it is not a secret to check).
    pub fn parse(password: &str) -> Self {
        let mut o = PasswordOptions::default();
        for pair in password.split([',', ';', ' ']) {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0);
            match k.trim() {
                "d" => o.difficulty = v,
                "md" => o.minimum_difficulty = v,
                _ => {}
            }
        }
        o
    }
}

/// One connection's protocol state, owned by its socket task.
#[derive(Debug, Clone)]
pub struct ServerSession {
    state: State,
    extranonce1: [u8; 4],
    extranonce2_size: usize,
    server_mask: u32,
    version_mask: u32,
    user_agent: Option<String>,
    minimum_difficulty: Option<f64>,
    extranonce_subscribed: bool,
}

/// The longest user agent kept (btcpool keeps 30).
pub const MAX_USER_AGENT: usize = 64;

impl ServerSession {
    /// A new connection with its extranonce1, the extranonce2 size it will
    /// be told, and the version bits the server lets miners roll.
    pub fn new(extranonce1: [u8; 4], extranonce2_size: usize, server_mask: u32) -> Self {
        ServerSession {
            state: State::Connected,
            extranonce1,
            extranonce2_size,
            server_mask,
            version_mask: 0,
            user_agent: None,
            minimum_difficulty: None,
            extranonce_subscribed: false,
        }
    }

    /// The handshake state.
    pub fn state(&self) -> State {
        self.state
    }

    /// extranonce1.
    pub fn extranonce1(&self) -> [u8; 4] {
        self.extranonce1
    }

    /// Bytes of extranonce2 a submit must carry.
    pub fn extranonce2_size(&self) -> usize {
        self.extranonce2_size
    }

    /// The negotiated version-rolling mask (0: no rolling).
    pub fn version_mask(&self) -> u32 {
        self.version_mask
    }

    /// The user agent from `mining.subscribe`, cut to [`MAX_USER_AGENT`].
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The minimum difficulty from `mining.configure`.
    pub fn minimum_difficulty(&self) -> Option<f64> {
        self.minimum_difficulty
    }

    /// Whether the miner accepts `mining.set_extranonce`.
    pub fn extranonce_subscribed(&self) -> bool {
        self.extranonce_subscribed
    }

    /// Takes over `extranonce1` (a resumed session's) before subscribing;
    /// false, and nothing changes, once subscribed.
    pub fn resume_extranonce1(&mut self, extranonce1: [u8; 4]) -> bool {
        if self.state != State::Connected {
            return false;
        }
        self.extranonce1 = extranonce1;
        true
    }

    /// Records a successful authorization.
    pub fn authorized(&mut self) {
        self.state = State::Authorized;
    }

    /// Handles one parsed request.
    pub fn on_request(&mut self, request: Request) -> Step {
        let id = request.id;
        let reply = |r: Response| Step::Reply(vec![r.into()]);
        match request.call {
            Call::Subscribe(s) => {
                if self.state != State::Connected {
                    return reply(Response::error(id, ErrorCode::Other, "already subscribed"));
                }
                self.user_agent = s
                    .user_agent
                    .map(|a| a.chars().take(MAX_USER_AGENT).collect());
                self.state = State::Subscribed;
                let sub = Subscribed {
                    subscription_id: hex::encode(self.extranonce1),
                    extranonce1: self.extranonce1.to_vec(),
                    extranonce2_size: self.extranonce2_size,
                };
                reply(Response {
                    id,
                    result: Ok(sub.to_value()),
                })
            }
            Call::Authorize(a) => match self.state {
                State::Connected => reply(not_subscribed(id)),
                State::Authorized => {
                    reply(Response::error(id, ErrorCode::Other, "already authorized"))
                }
                State::Subscribed => Step::Authorize {
                    id,
                    options: PasswordOptions::parse(&a.password),
                    login: a.login,
                },
            },
            Call::Configure(c) => Step::Reply(self.configure(id, c)),
            Call::SuggestDifficulty(difficulty) => Step::SuggestDifficulty { id, difficulty },
            Call::SuggestTarget(target) => match Difficulty::from_target(target) {
                Some(d) => Step::SuggestDifficulty {
                    id,
                    difficulty: d.get(),
                },
                None => reply(Response::error(
                    id,
                    ErrorCode::Other,
                    "target must not be zero",
                )),
            },
            Call::ExtranonceSubscribe => {
                self.extranonce_subscribed = true;
                reply(Response::ok(id))
            }
            Call::Submit(submit) => match self.state {
                State::Connected => reply(not_subscribed(id)),
                State::Subscribed => reply(Response::error(
                    id,
                    ErrorCode::Unauthorized,
                    "Unauthorized worker",
                )),
                State::Authorized => Step::Submit { id, submit },
            },
            Call::AgentGetCapabilities(asked) => Step::AgentCapabilities { id, asked },
            Call::Unknown(method) => reply(Response::error(
                id,
                ErrorCode::Other,
                format!("unsupported method {method}"),
            )),
        }
    }

    fn configure(&mut self, id: Id, c: Configure) -> Vec<ServerMessage> {
        let mut answer = Configured {
            unknown: c.unknown,
            ..Configured::default()
        };
        let mut then = None;
        if let Some(asked) = c.version_rolling_mask {
            self.version_mask = asked & self.server_mask;
            answer.version_rolling = Some(self.version_mask);
            // btcpool also announces the mask as a notification; some
            // firmware waits for it.
            then = Some(Notification::SetVersionMask(self.version_mask).into());
        }
        if let Some(md) = c.minimum_difficulty {
            self.minimum_difficulty = Some(md);
            answer.minimum_difficulty = Some(true);
        }
        let mut out = vec![
            Response {
                id,
                result: Ok(answer.to_value()),
            }
            .into(),
        ];
        out.extend(then);
        out
    }
}

fn not_subscribed(id: Id) -> Response {
    Response::error(id, ErrorCode::NotSubscribed, "Not subscribed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ServerMessage;

    fn req(line: &str) -> Request {
        Request::parse(line).expect("valid request")
    }

    fn error_code(step: &Step) -> Option<i64> {
        match step {
            Step::Reply(msgs) => match msgs.first() {
                Some(ServerMessage::Response(Response { result: Err(e), .. })) => Some(e.code),
                _ => None,
            },
            _ => None,
        }
    }

    const SUBMIT: &str = r#"{"id":9,"method":"mining.submit","params":["a.b","1","0000000000000000","00000000","00000000"]}"#;

    #[test]
    fn the_handshake_goes_in_order() {
        let mut s = ServerSession::new([1, 0, 0, 7], 8, 0x1fff_e000);
        assert_eq!(error_code(&s.on_request(req(SUBMIT))), Some(25));
        assert_eq!(
            error_code(&s.on_request(req(
                r#"{"id":1,"method":"mining.authorize","params":["a.b"]}"#
            ))),
            Some(25)
        );
        let Step::Reply(msgs) = s.on_request(req(
            r#"{"id":2,"method":"mining.subscribe","params":["cgminer/4.11"]}"#,
        )) else {
            panic!("subscribe is answered by the session")
        };
        let ServerMessage::Response(Response { result: Ok(v), .. }) = &msgs[0] else {
            panic!("a result")
        };
        let sub = Subscribed::from_value(v).expect("subscribe result");
        assert_eq!(sub.extranonce1, vec![1, 0, 0, 7]);
        assert_eq!(sub.extranonce2_size, 8);
        assert_eq!(s.user_agent(), Some("cgminer/4.11"));
        assert_eq!(error_code(&s.on_request(req(SUBMIT))), Some(24));
        assert_eq!(
            error_code(&s.on_request(req(r#"{"id":2,"method":"mining.subscribe","params":[]}"#))),
            Some(20)
        );
        let step = s.on_request(req(
            r#"{"id":3,"method":"mining.authorize","params":["alice.rig","md=16,d=1024"]}"#,
        ));
        assert_eq!(
            step,
            Step::Authorize {
                id: Id::number(3),
                login: "alice.rig".into(),
                options: PasswordOptions {
                    difficulty: Some(1024.0),
                    minimum_difficulty: Some(16.0)
                }
            }
        );
        s.authorized();
        assert!(matches!(s.on_request(req(SUBMIT)), Step::Submit { .. }));
    }

    #[test]
    fn version_rolling_is_granted_within_the_server_mask() {
        let mut s = ServerSession::new([0; 4], 8, 0x1fff_e000);
        let Step::Reply(msgs) = s.on_request(req(
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#,
        )) else {
            panic!("configure is answered by the session")
        };
        assert_eq!(s.version_mask(), 0x1fff_e000);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[1],
            ServerMessage::Notification(Notification::SetVersionMask(0x1fff_e000))
        );
    }

    #[test]
    fn password_options() {
        assert_eq!(PasswordOptions::parse("x"), PasswordOptions::default());
        assert_eq!(
            PasswordOptions::parse("d=0.5;md=abc"),
            PasswordOptions {
                difficulty: Some(0.5),
                minimum_difficulty: None
            }
        );
    }
}
