//! What every share costs in Stratum text: reading a `mining.submit` line
//! and writing its answer (`cargo bench -p sluice-stratum --bench lines`).

#![allow(clippy::unwrap_used)]
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_stratum::{Request, Response, ServerMessage};

const SUBMIT: &str = r#"{"id":4242,"method":"mining.submit","params":["alice.rig1","1a2b3c4d00000001","0000000000000001","5f5e1000","deadbeef","00002000"]}"#;

fn lines(c: &mut Criterion) {
    c.bench_function("stratum/parse_submit", |b| {
        b.iter(|| Request::parse(std::hint::black_box(SUBMIT)).unwrap());
    });
    let request = Request::parse(SUBMIT).unwrap();
    c.bench_function("stratum/answer_line", |b| {
        b.iter(|| ServerMessage::from(Response::ok(request.id.clone())).to_line());
    });
}

criterion_group!(benches, lines);
criterion_main!(benches);
