//! Every Stratum message encodes to one line and parses back to itself.
#![allow(clippy::unwrap_used)]

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use proptest::prelude::*;
use serde_json::json;
use sluice_stratum::Id;
use sluice_stratum::message::{Authorize, Configure, Submit, Subscribe};
use sluice_stratum::{Call, Notification, Notify, Request, Response, ServerMessage, StratumError};

/// Ids as miners write them: any JSON value, echoed byte for byte.
fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        Just("null".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{19,40}",
        "-?[0-9]\\.[0-9]{1,20}(e[+-]?[0-9]{1,3})?",
        any::<String>().prop_map(|s| json!(s).to_string()),
        "\"(\\\\u00[0-7][0-9a-f]|[a-z])*\"",
        Just(r#"[1, "two", {"three": null}]"#.to_owned()),
        Just("true".to_owned()),
    ]
    .prop_map(|text| Id::parse(&text).unwrap())
}

fn difficulty() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u64..1 << 40).prop_map(|d| d as f64),
        (1e-9f64..1e12).prop_filter("positive", |d| *d > 0.0),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        proptest::option::of((text(), proptest::option::of(text()))).prop_map(|a| {
            Call::Subscribe(match a {
                Some((agent, session)) => Subscribe {
                    user_agent: Some(agent),
                    session_id: session,
                },
                None => Subscribe::default(),
            })
        }),
        (text(), text())
            .prop_map(|(login, password)| Call::Authorize(Authorize { login, password })),
        (
            proptest::option::of((any::<u32>(), proptest::option::of(0u32..32))),
            proptest::option::of(difficulty()),
            proptest::collection::vec("[a-z]{1,10}(-[a-z]{1,5})?", 0..3),
        )
            .prop_map(|(vr, md, unknown)| Call::Configure(Configure {
                version_rolling_mask: vr.map(|v| v.0),
                version_rolling_min_bit_count: vr.and_then(|v| v.1),
                minimum_difficulty: md,
                unknown: unknown
                    .into_iter()
                    .filter(|u| u != "version-rolling" && u != "minimum-difficulty")
                    .collect(),
            })),
        difficulty().prop_map(Call::SuggestDifficulty),
        any::<[u8; 32]>().prop_map(|b| Call::SuggestTarget(Target::from_be_bytes(b))),
        Just(Call::ExtranonceSubscribe),
        (
            text(),
            "[0-9a-f]{1,16}",
            proptest::collection::vec(any::<u8>(), 0..12),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(
                |(worker, job_id, extranonce2, ntime, nonce, version_bits)| {
                    Call::Submit(Submit {
                        worker,
                        job_id,
                        extranonce2,
                        ntime,
                        nonce,
                        version_bits,
                    })
                }
            ),
        "x\\.[a-z_]{1,12}".prop_map(Call::Unknown),
    ]
}

fn notify() -> impl Strategy<Value = Notify> {
    (
        "[0-9a-f]{1,16}",
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(any::<[u8; 32]>(), 0..12),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>()),
    )
        .prop_map(
            |(job_id, prev, c1, c2, branch, (version, bits, time, clean))| Notify {
                job_id,
                prev_hash: BlockHash::from_byte_array(prev),
                coinbase1: c1,
                coinbase2: c2,
                merkle_branch: branch
                    .into_iter()
                    .map(TxMerkleNode::from_byte_array)
                    .collect(),
                version,
                bits: CompactTarget::from_consensus(bits),
                time,
                clean,
            },
        )
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (id(), any::<bool>()).prop_map(|(id, b)| Response {
            id,
            result: Ok(json!(b))
        }
        .into()),
        (id(), 0i64..100, text()).prop_map(|(id, code, message)| Response {
            id,
            result: Err(StratumError { code, message })
        }
        .into()),
        difficulty().prop_map(|d| Notification::SetDifficulty(d).into()),
        notify().prop_map(|n| Notification::Notify(n).into()),
        any::<u32>().prop_map(|m| Notification::SetVersionMask(m).into()),
        proptest::option::of((
            "[a-z.]{1,20}",
            any::<u16>(),
            proptest::option::of(any::<u32>())
        ))
        .prop_map(|r| match r {
            Some((host, port, wait_secs)) => Notification::Reconnect {
                host: Some(host),
                port: Some(port),
                wait_secs,
            },
            None => Notification::Reconnect {
                host: None,
                port: None,
                wait_secs: None,
            },
        }
        .into()),
        (proptest::collection::vec(any::<u8>(), 0..8), 0usize..16).prop_map(|(e, n)| {
            Notification::SetExtranonce {
                extranonce1: e,
                extranonce2_size: n,
            }
            .into()
        }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(id in id(), call in call()) {
        let request = Request { id, call };
        let line = request.to_line();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(Request::parse(&line).unwrap(), request);
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let line = message.to_line();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(ServerMessage::parse(&line).unwrap(), message);
    }

    #[test]
    fn arbitrary_lines_never_panic(line in "\\PC{0,200}") {
        let _ = Request::parse(&line);
        let _ = ServerMessage::parse(&line);
    }
}
