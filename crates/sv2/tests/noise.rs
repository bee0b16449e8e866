//! The handshake and encrypted frames between our two ends, over an
//! in-memory byte pipe: messages cross both ways intact (one larger than a
//! Noise chunk), a client refuses a pool whose certificate another authority
//! signed or whose validity its clock is outside, and a reader fed one byte
//! at a time still yields whole frames.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_sv2::codec::{ExtendedJob, SubmitShares};
use sluice_sv2::noise::Responder;
use sluice_sv2::stream::{self, StreamError, unix_now};
use sluice_sv2::{AuthorityKeys, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECS: Duration = Duration::from_secs(5);
const MAX: usize = 1 << 20;

fn job(size: usize) -> Message {
    Message::NewExtendedMiningJob(ExtendedJob {
        channel_id: 1,
        job_id: 2,
        min_ntime: None,
        version: 0x2000_0000,
        version_rolling_allowed: true,
        merkle_path: vec![[7; 32]; 12],
        coinbase_tx_prefix: (0..size).map(|i| i as u8).collect(),
        coinbase_tx_suffix: vec![0xee; size],
    })
}

#[tokio::test]
async fn frames_cross_both_ways_after_the_handshake() {
    let keys = AuthorityKeys::generate();
    let (client, server) = tokio::io::duplex(1 << 16);
    let (crd, cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let responder = Responder::new(&keys, 3600, 86_400).unwrap();
    let now = unix_now();
    let pool = tokio::spawn(async move {
        let (mut rd, mut wr) = stream::accept(srd, swr, responder, now - 3600, SECS, MAX)
            .await
            .unwrap();
        let got = rd.next().await.unwrap().unwrap().decode().unwrap();
        wr.send(&job(60_000)).await.unwrap();
        wr.send(&Message::SetTarget {
            channel_id: 1,
            maximum_target: [0xff; 32],
        })
        .await
        .unwrap();
        // The client's close ends the frames cleanly.
        assert!(rd.next().await.unwrap().is_none());
        got
    });
    let (mut rd, mut wr) = stream::connect(crd, cwr, keys.public(), now, SECS, MAX)
        .await
        .unwrap();
    let share = Message::SubmitSharesStandard(SubmitShares {
        channel_id: 1,
        sequence_number: 0,
        job_id: 2,
        nonce: 3,
        ntime: 4,
        version: 5,
    });
    wr.send(&share).await.unwrap();
    // Two chunks of payload: 120,000 bytes of coinbase.
    assert_eq!(
        rd.next().await.unwrap().unwrap().decode().unwrap(),
        job(60_000)
    );
    assert!(matches!(
        rd.next().await.unwrap().unwrap().decode().unwrap(),
        Message::SetTarget { channel_id: 1, .. }
    ));
    wr.inner_mut().shutdown().await.unwrap();
    assert_eq!(pool.await.unwrap(), share);
}

/// The pool's handshake answer to a client trusting `trusted`, whose clock
/// reads `client_now`; the pool signs from `valid_from`.
async fn handshake_with(
    pool_keys: &AuthorityKeys,
    trusted: &AuthorityKeys,
    valid_from: u32,
    client_now: u32,
) -> Result<(), StreamError> {
    let (client, server) = tokio::io::duplex(4096);
    let (crd, cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let responder = Responder::new(pool_keys, 3600, 86_400).unwrap();
    let pool = tokio::spawn(async move {
        stream::accept(srd, swr, responder, valid_from, SECS, MAX)
            .await
            .map(drop)
    });
    let client = stream::connect(crd, cwr, trusted.public(), client_now, SECS, MAX)
        .await
        .map(drop);
    // The pool's side completes either way: it cannot tell.
    let _ = pool.await.unwrap();
    client
}

#[tokio::test]
async fn a_client_refuses_a_pool_it_does_not_trust_or_whose_certificate_is_out_of_date() {
    let pool = AuthorityKeys::generate();
    let now = unix_now();
    handshake_with(&pool, &pool, now - 3600, now).await.unwrap();
    // A clock 50 minutes behind the pool's still passes: back-dated.
    handshake_with(&pool, &pool, now - 3600, now - 3000)
        .await
        .unwrap();
    let stranger = AuthorityKeys::generate();
    let e = handshake_with(&pool, &stranger, now - 3600, now)
        .await
        .unwrap_err();
    assert!(matches!(e, StreamError::Noise(_)), "{e}");
    // Not yet valid for a clock a minute behind the certificate's start
    // (SRI's clients allow 10 s; older ones none, hence the back-dating).
    let e = handshake_with(&pool, &pool, now, now - 60)
        .await
        .unwrap_err();
    assert!(matches!(e, StreamError::Noise(_)), "{e}");
}

/// Reads at most one byte per call.
struct OneByte<R>(R);

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for OneByte<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut one = [0u8; 1];
        let mut small = tokio::io::ReadBuf::new(&mut one);
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, &mut small);
        if polled.is_ready() {
            buf.put_slice(small.filled());
        }
        polled
    }
}

#[tokio::test]
async fn a_reader_fed_a_byte_at_a_time_yields_whole_frames() {
    let keys = AuthorityKeys::generate();
    let (client, server) = tokio::io::duplex(1 << 16);
    let (crd, cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let responder = Responder::new(&keys, 3600, 86_400).unwrap();
    let now = unix_now();
    let pool = tokio::spawn(async move {
        let (mut rd, _wr) = stream::accept(OneByte(srd), swr, responder, now, SECS, MAX)
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(frame) = rd.next().await.unwrap() {
            got.push(frame.decode().unwrap());
        }
        got
    });
    let (_rd, mut wr) = stream::connect(crd, cwr, keys.public(), now, SECS, MAX)
        .await
        .unwrap();
    let sent = vec![
        job(100),
        Message::CloseChannel {
            channel_id: 1,
            reason_code: "done".into(),
        },
    ];
    for m in &sent {
        wr.queue(m).unwrap();
    }
    wr.flush().await.unwrap();
    wr.inner_mut().shutdown().await.unwrap();
    assert_eq!(pool.await.unwrap(), sent);
}

#[tokio::test]
async fn garbage_instead_of_a_frame_is_an_error_not_a_panic() {
    let keys = AuthorityKeys::generate();
    let (client, server) = tokio::io::duplex(1 << 16);
    let (mut crd, mut cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let responder = Responder::new(&keys, 3600, 86_400).unwrap();
    let now = unix_now();
    let pool = tokio::spawn(async move {
        let (mut rd, _wr) = stream::accept(srd, swr, responder, now, SECS, MAX).await?;
        rd.next().await
    });
    // A real hello (any 64 bytes encode some point), the answer, then noise.
    let mut initiator = sluice_sv2::noise::Initiator::new(keys.public()).unwrap();
    cwr.write_all(&initiator.hello().unwrap()).await.unwrap();
    let mut reply = [0u8; sluice_sv2::noise::SERVER_HELLO_LEN];
    crd.read_exact(&mut reply).await.unwrap();
    cwr.write_all(&[0x5a; 64]).await.unwrap();
    let e = pool.await.unwrap().unwrap_err();
    assert!(matches!(e, StreamError::Noise(_)), "{e}");
}
