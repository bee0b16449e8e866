//! What a share costs in Stratum V2 binary: decoding a SubmitSharesExtended
//! payload and encoding its batched answer, with our codec and with
//! stratum-core's (`cargo bench -p sluice-sv2 --bench codec`). The choice
//! between them is recorded in docs/DECISIONS.md.

#![allow(clippy::unwrap_used)]
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_sv2::codec::{HEADER_LEN, SubmitShares};
use sluice_sv2::{Header, Message};
use stratum_core::binary_sv2;
use stratum_core::mining_sv2::{SubmitSharesExtended, SubmitSharesSuccess};

fn codec(c: &mut Criterion) {
    let submit = Message::SubmitSharesExtended {
        share: SubmitShares {
            channel_id: 7,
            sequence_number: 99,
            job_id: 12,
            nonce: 0xdead_beef,
            ntime: 1_700_000_000,
            version: 0x2000_4000,
        },
        extranonce: vec![1, 2, 3, 4, 5, 6, 7, 8],
    };
    let frame = submit.to_frame();
    let header = Header::parse(frame[..HEADER_LEN].try_into().unwrap());
    let payload = frame[HEADER_LEN..].to_vec();
    c.bench_function("sv2/ours/decode_submit_extended", |b| {
        b.iter(|| Message::decode(&header, std::hint::black_box(&payload)).unwrap());
    });
    c.bench_function("sv2/stratum_core/decode_submit_extended", |b| {
        b.iter(|| {
            let mut p = std::hint::black_box(&payload).clone();
            let m: SubmitSharesExtended = binary_sv2::from_bytes(&mut p).unwrap();
            m.into_owned()
        });
    });
    let success = Message::SubmitSharesSuccess {
        channel_id: 7,
        last_sequence_number: 99,
        new_submits_accepted_count: 10,
        new_shares_sum: 10_240,
    };
    c.bench_function("sv2/ours/encode_success_frame", |b| {
        b.iter(|| std::hint::black_box(&success).to_frame());
    });
    c.bench_function("sv2/stratum_core/encode_success_payload", |b| {
        b.iter(|| {
            binary_sv2::to_bytes(SubmitSharesSuccess {
                channel_id: 7,
                last_sequence_number: std::hint::black_box(99),
                new_submits_accepted_count: 10,
                new_shares_sum: 10_240,
            })
            .unwrap()
        });
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
