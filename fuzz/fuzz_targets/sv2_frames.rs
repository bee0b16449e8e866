//! Stratum V2 bytes from a miner, three ways (the first byte picks):
//! 0. plaintext frames, one after another, through the codec: a frame
//!    either decodes to a message that encodes back to the very same bytes,
//!    or is a named error;
//! 1. a client hello of any 64 bytes answered by the pool's Noise responder;
//! 2. after a real handshake, any bytes as sealed frames to the pool's side:
//!    they never open (only the client's keys seal them), and never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_sv2::AuthorityKeys;
use sluice_sv2::codec::{HEADER_LEN, Header, Message};
use sluice_sv2::noise::{
    CLIENT_HELLO_LEN, Initiator, Responder, SEALED_HEADER_LEN, sealed_payload_len,
};

fn keys() -> &'static AuthorityKeys {
    static KEYS: OnceLock<AuthorityKeys> = OnceLock::new();
    KEYS.get_or_init(|| AuthorityKeys::from_secret([7; 32]).expect("a valid secret"))
}

const NOW: u32 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let mut rest = data;
            while let Some(head) = rest.first_chunk::<HEADER_LEN>() {
                let header = Header::parse(*head);
                let payload = &rest[HEADER_LEN..];
                let payload = &payload[..header.length.min(payload.len())];
                if let Ok(m) = Message::decode(&header, payload) {
                    let frame = m.to_frame();
                    assert_eq!(&frame[HEADER_LEN..], payload, "{}", m.name());
                }
                rest = &rest[HEADER_LEN + payload.len()..];
            }
        }
        1 => {
            let Some(hello) = data.first_chunk::<CLIENT_HELLO_LEN>() else {
                return;
            };
            let responder = Responder::new(keys(), 3600, 86_400).expect("a responder");
            let _ = responder.answer(*hello, NOW);
        }
        _ => {
            let mut client = Initiator::new(keys().public()).expect("an initiator");
            let hello = client.hello().expect("a hello");
            let responder = Responder::new(keys(), 3600, 86_400).expect("a responder");
            let (reply, pool) = responder.answer(hello, NOW - 3600).expect("an answer");
            let _client = client
                .finish(reply, NOW)
                .expect("the pool's own certificate");
            let (_, mut opener) = pool.split();
            let Some(sealed) = data.first_chunk::<SEALED_HEADER_LEN>() else {
                return;
            };
            if let Ok(h) = opener.open_header(sealed) {
                let rest = &data[SEALED_HEADER_LEN..];
                let need = sealed_payload_len(h.length);
                let _ = opener.open_payload(&h, &rest[..need.min(rest.len())]);
                panic!("bytes nobody sealed opened as a header: {h:?}");
            }
        }
    }
});
