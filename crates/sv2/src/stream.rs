//! Encrypted frames over a tokio byte stream: the handshake on both sides,
//! then a reader and a writer that can be driven from different places.
//!
//! [`FrameReader::next`] is cancellation-safe (its only await is a read
//! appended to its own buffer; a frame is opened only once all its bytes are
//! there), so it can sit in a `tokio::select!` beside a job feed and timers.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{DecodeError, Header, Message};
use crate::keys::AuthorityPublicKey;
use crate::noise::{
    CLIENT_HELLO_LEN, Initiator, NoiseError, Opener, Responder, SEALED_HEADER_LEN,
    SERVER_HELLO_LEN, Sealer, Session, sealed_payload_len,
};

/// What ends a connection's frames.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Noise(#[from] NoiseError),
    #[error("handshake not done within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("closed in the middle of a frame")]
    Truncated,
    #[error("{kind} frame declares {len} payload bytes; at most {max} accepted")]
    TooLarge {
        kind: String,
        len: usize,
        max: usize,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// One received frame, opened but not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The message it carries.
    pub fn decode(&self) -> Result<Message, DecodeError> {
        Message::decode(&self.header, &self.payload)
    }
}

/// Receives frames.
pub struct FrameReader<R> {
    rd: R,
    opener: Opener,
    buf: Vec<u8>,
    header: Option<Header>,
    max_payload: usize,
    received: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(rd: R, opener: Opener, max_payload: usize) -> Self {
        FrameReader {
            rd,
            opener,
            buf: Vec::new(),
            header: None,
            max_payload,
            received: 0,
        }
    }

    /// The next frame, or `None` when the peer closed between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            if let Some(frame) = self.take()? {
                return Ok(Some(frame));
            }
            let n = self.read_some().await?;
            self.received += n as u64;
            if n == 0 {
                if self.buf.is_empty() && self.header.is_none() {
                    return Ok(None);
                }
                return Err(StreamError::Truncated);
            }
        }
    }

    /// Reads what is there into the frame buffer. The read buffer lives on
    /// the stack for one poll only: an idle connection waiting here holds
    /// no buffer at all (a pending poll wrote nothing into it).
    async fn read_some(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            let mut chunk = [0u8; 4096];
            let mut rb = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut self.rd).poll_read(cx, &mut rb) {
                std::task::Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.buf.extend_from_slice(rb.filled());
                    std::task::Poll::Ready(Ok(n))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// A frame already received whole, without waiting for more bytes: to
    /// handle everything one read brought before answering it as a batch.
    pub fn buffered(&mut self) -> Result<Option<Frame>, StreamError> {
        self.take()
    }

    /// Bytes received so far, sealed.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn take(&mut self) -> Result<Option<Frame>, StreamError> {
        if self.header.is_none() {
            let Some(sealed) = self.buf.first_chunk::<SEALED_HEADER_LEN>() else {
                return Ok(None);
            };
            let header = self.opener.open_header(sealed)?;
            self.buf.drain(..SEALED_HEADER_LEN);
            if header.length > self.max_payload {
                return Err(StreamError::TooLarge {
                    kind: format!("{:#04x}", header.msg_type),
                    len: header.length,
                    max: self.max_payload,
                });
            }
            self.header = Some(header);
        }
        let Some(header) = self.header else {
            return Ok(None);
        };
        let need = sealed_payload_len(header.length);
        if self.buf.len() < need {
            return Ok(None);
        }
        let payload = self.opener.open_payload(&header, &self.buf[..need])?;
        self.buf.drain(..need);
        self.header = None;
        // Between frames the buffer goes: memory only while bytes wait.
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        Ok(Some(Frame { header, payload }))
    }
}

/// Sends frames: queue any number, then flush.
pub struct FrameWriter<W> {
    wr: W,
    sealer: Sealer,
    plain: Vec<u8>,
    out: Vec<u8>,
    sent: u64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    fn new(wr: W, sealer: Sealer) -> Self {
        FrameWriter {
            wr,
            sealer,
            plain: Vec::new(),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Seals `message` into the outgoing buffer.
    pub fn queue(&mut self, message: &Message) -> Result<(), StreamError> {
        self.plain.clear();
        message.encode_frame(&mut self.plain);
        self.sealer.seal(&self.plain, &mut self.out)?;
        Ok(())
    }

    /// Seals bytes that are a frame already (header first), as they are:
    /// for tests that send what the codec would never write.
    pub fn queue_raw(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        self.sealer.seal(frame, &mut self.out)?;
        Ok(())
    }

    /// Sealed bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), StreamError> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.wr.write_all(&self.out).await?;
        self.wr.flush().await?;
        self.sent += self.out.len() as u64;
        // Nothing kept between writes: an idle connection holds no buffer.
        self.out = Vec::new();
        self.plain = Vec::new();
        Ok(())
    }

    /// Queues and flushes one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), StreamError> {
        self.queue(message)?;
        self.flush().await
    }

    /// Bytes written so far, sealed.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The write half back (to shut it down).
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.wr
    }
}

/// Runs the pool's side of the handshake on a connection; `valid_from` is
/// the certificate's start (Unix seconds, back-dated by the caller).
pub async fn accept<R, W>(
    mut rd: R,
    mut wr: W,
    responder: Responder,
    valid_from: u32,
    timeout: Duration,
    max_payload: usize,
) -> Result<(FrameReader<R>, FrameWriter<W>), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let handshake = async {
        let mut hello = [0u8; CLIENT_HELLO_LEN];
        rd.read_exact(&mut hello).await?;
        let (reply, session) = responder.answer(hello, valid_from)?;
        wr.write_all(&reply).await?;
        wr.flush().await?;
        Ok::<_, StreamError>(session)
    };
    let session = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| StreamError::HandshakeTimeout(timeout))??;
    Ok(framed(rd, wr, session, max_payload))
}

/// Runs a miner's side of the handshake, trusting `authority`'s certificates
/// only; `now` is the client's clock (Unix seconds).
pub async fn connect<R, W>(
    mut rd: R,
    mut wr: W,
    authority: AuthorityPublicKey,
    now: u32,
    timeout: Duration,
    max_payload: usize,
) -> Result<(FrameReader<R>, FrameWriter<W>), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let handshake = async {
        let mut initiator = Initiator::new(authority)?;
        wr.write_all(&initiator.hello()?).await?;
        wr.flush().await?;
        let mut reply = [0u8; SERVER_HELLO_LEN];
        rd.read_exact(&mut reply).await?;
        Ok::<_, StreamError>(initiator.finish(reply, now)?)
    };
    let session = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| StreamError::HandshakeTimeout(timeout))??;
    Ok(framed(rd, wr, session, max_payload))
}

/// The frame reader and writer over an established session's two halves.
fn framed<R, W>(
    rd: R,
    wr: W,
    session: Session,
    max_payload: usize,
) -> (FrameReader<R>, FrameWriter<W>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (sealer, opener) = session.split();
    (
        FrameReader::new(rd, opener, max_payload),
        FrameWriter::new(wr, sealer),
    )
}

/// Unix seconds now.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}
