//! A V1 connection's socket, plain or TLS: reads into the line framer
//! without holding a buffer while idle, and writes what the outbox holds.

use sluice_stratum::LineFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// The reading side of a plain or TLS connection.
pub(super) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// What a read brought.
pub(super) enum Input {
    Bytes,
    Eof,
    /// A spurious readiness: nothing to read after all.
    Nothing,
}

impl Reader {
    /// Waits for input and pushes it into `framer`. Cancel-safe: nothing is
    /// consumed unless it completes.
    pub(super) async fn read_into(&mut self, framer: &mut LineFramer) -> std::io::Result<Input> {
        match self {
            Reader::Tcp(rd) => {
                rd.readable().await?;
                // The read buffer lives on the stack only while reading: an
                // idle connection holds no buffer at all.
                let mut chunk = [0u8; 2048];
                match rd.try_read(&mut chunk) {
                    Ok(0) => Ok(Input::Eof),
                    Ok(n) => {
                        framer.push(&chunk[..n]);
                        Ok(Input::Bytes)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Input::Nothing),
                    Err(e) => Err(e),
                }
            }
            // rustls has no readiness API: the buffer waits with the read,
            // boxed so that it is not part of every plain connection's task.
            Reader::Tls(rd) => {
                Box::pin(async move {
                    let mut chunk = [0u8; 2048];
                    let n = rd.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(Input::Eof);
                    }
                    framer.push(&chunk[..n]);
                    Ok(Input::Bytes)
                })
                .await
            }
        }
    }
}

/// The writing side of a plain or TLS connection.
pub(super) enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Writer {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Tcp(wr) => wr.write_all(bytes).await,
            Writer::Tls(wr) => {
                wr.write_all(bytes).await?;
                wr.flush().await
            }
        }
    }
}

/// Lines waiting to be written. Unlike a `BufWriter` (8 KiB per connection
/// from the start), it holds memory only between a reply and its flush.
pub(super) struct Outbox {
    pub(super) wr: Writer,
    pub(super) pending: Vec<u8>,
}

impl Outbox {
    pub(super) fn push(&mut self, line: &str) {
        self.pending.reserve(line.len() + 1);
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
    }

    /// Queues the line `head` ‖ hex of `bytes` ‖ `tail` (newline added):
    /// a solo miner's notify, its coinbase2 written straight into the
    /// buffer.
    pub(super) fn push_around_hex(&mut self, head: &str, bytes: &[u8], tail: &str) {
        self.pending
            .reserve(head.len() + 2 * bytes.len() + tail.len() + 1);
        self.pending.extend_from_slice(head.as_bytes());
        let at = self.pending.len();
        self.pending.resize(at + 2 * bytes.len(), 0);
        hex::encode_to_slice(bytes, &mut self.pending[at..])
            .expect("the slice is twice the bytes' length");
        self.pending.extend_from_slice(tail.as_bytes());
        self.pending.push(b'\n');
    }

    /// Queues bytes as they are (ex-messages).
    pub(super) fn push_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes everything queued, then lets the buffer go.
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.wr.write_all(&pending).await
    }
}
