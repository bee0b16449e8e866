//! Noise NX (sv2-spec §4) through `stratum-core`'s `noise_sv2`: the only file
//! of Sluice that names `stratum-core`, so a version bump touches this one.
//!
//! The handshake is two messages: the client's 64-byte ephemeral key, the
//! pool's 234-byte answer (ephemeral key, encrypted static key, encrypted
//! certificate signed by the authority key). After it each frame is sent as
//! its 6-byte header sealed on its own (22 bytes) and the payload sealed in
//! chunks of at most 65,519 bytes (each 16 bytes longer), every seal with
//! the next nonce.

use stratum_core::noise_sv2;
use thiserror::Error;

use crate::codec::{HEADER_LEN, Header};
use crate::keys::{AuthorityKeys, AuthorityPublicKey};

/// The client's first handshake message.
pub const CLIENT_HELLO_LEN: usize = noise_sv2::ELLSWIFT_ENCODING_SIZE;
/// The pool's handshake answer.
pub const SERVER_HELLO_LEN: usize = noise_sv2::INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE;
/// A MAC's bytes.
pub const MAC_LEN: usize = noise_sv2::AEAD_MAC_LEN;
/// A sealed header's bytes.
pub const SEALED_HEADER_LEN: usize = HEADER_LEN + MAC_LEN;
/// Plaintext bytes per sealed payload chunk.
pub const CHUNK: usize = 65_535 - MAC_LEN;

/// A handshake or transport failure.
#[derive(Debug, Error)]
pub enum NoiseError {
    #[error("the authority key pair is not usable: {0:?}")]
    Keys(noise_sv2::Error),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("a frame did not decrypt (wrong key, reordered or altered bytes)")]
    Decrypt,
    #[error("a frame could not be encrypted")]
    Encrypt,
}

/// The pool's side of one handshake.
pub struct Responder(Box<noise_sv2::Responder>);

impl Responder {
    /// A responder whose certificates are valid from `back_secs` before the
    /// handshake (a miner's clock may run behind) for `valid_secs` after it.
    pub fn new(keys: &AuthorityKeys, back_secs: u32, valid_secs: u32) -> Result<Self, NoiseError> {
        let validity = std::time::Duration::from_secs(u64::from(back_secs) + u64::from(valid_secs));
        let r = noise_sv2::Responder::from_authority_kp(
            &keys.public().0,
            keys.secret_bytes(),
            validity,
        )
        .map_err(NoiseError::Keys)?;
        Ok(Responder(r))
    }

    /// Answers the client's hello at `now` (Unix seconds, less the back-dating
    /// given to [`Responder::new`]); the session keys follow.
    pub fn answer(
        mut self,
        hello: [u8; CLIENT_HELLO_LEN],
        valid_from: u32,
    ) -> Result<([u8; SERVER_HELLO_LEN], Session), NoiseError> {
        let (reply, engine) = self
            .0
            .step_1_with_now_rng(hello, valid_from, &mut rand::thread_rng())
            .map_err(|e| NoiseError::Handshake(format!("{e:?}")))?;
        Ok((reply, Session(engine)))
    }
}

/// A miner's side of one handshake.
pub struct Initiator(Box<noise_sv2::Initiator>);

impl Initiator {
    /// A client that trusts only certificates signed by `authority`.
    pub fn new(authority: AuthorityPublicKey) -> Result<Self, NoiseError> {
        noise_sv2::Initiator::from_raw_k(authority.0)
            .map(Initiator)
            .map_err(NoiseError::Keys)
    }

    /// The first handshake message.
    pub fn hello(&mut self) -> Result<[u8; CLIENT_HELLO_LEN], NoiseError> {
        self.0
            .step_0()
            .map_err(|e| NoiseError::Handshake(format!("{e:?}")))
    }

    /// Checks the pool's answer (its certificate against the authority key
    /// and `now`, Unix seconds); the session keys follow.
    pub fn finish(
        mut self,
        reply: [u8; SERVER_HELLO_LEN],
        now: u32,
    ) -> Result<Session, NoiseError> {
        self.0
            .step_2_with_now(reply, now)
            .map(Session)
            .map_err(|e| NoiseError::Handshake(format!("{e:?}")))
    }
}

/// The keys of an established session.
pub struct Session(noise_sv2::NoiseEngine);

impl Session {
    /// Its sending and receiving halves.
    pub fn split(self) -> (Sealer, Opener) {
        let (e, d) = self.0.into_split();
        (Sealer(e), Opener(d))
    }
}

/// Seals frames for sending.
pub struct Sealer(noise_sv2::NoiseEncryptor);

impl Sealer {
    /// Appends the sealed form of `frame` (a plaintext frame, header first) to `out`.
    pub fn seal(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), NoiseError> {
        if frame.len() < HEADER_LEN {
            return Err(NoiseError::Encrypt);
        }
        let mut part = Vec::with_capacity(frame.len().min(CHUNK) + MAC_LEN);
        for piece in std::iter::once(&frame[..HEADER_LEN]).chain(frame[HEADER_LEN..].chunks(CHUNK))
        {
            part.clear();
            part.extend_from_slice(piece);
            self.0.encrypt(&mut part).map_err(|_| NoiseError::Encrypt)?;
            out.extend_from_slice(&part);
        }
        Ok(())
    }
}

/// Opens received frames.
pub struct Opener(noise_sv2::NoiseDecryptor);

/// Sealed bytes that carry `len` payload bytes.
pub fn sealed_payload_len(len: usize) -> usize {
    len + len.div_ceil(CHUNK) * MAC_LEN
}

impl Opener {
    /// Opens a sealed header.
    pub fn open_header(&mut self, sealed: &[u8; SEALED_HEADER_LEN]) -> Result<Header, NoiseError> {
        let mut buf = sealed.to_vec();
        self.0.decrypt(&mut buf).map_err(|_| NoiseError::Decrypt)?;
        let bytes: [u8; HEADER_LEN] = buf.as_slice().try_into().map_err(|_| NoiseError::Decrypt)?;
        Ok(Header::parse(bytes))
    }

    /// Opens the sealed payload of `header` (exactly
    /// [`sealed_payload_len`]`(header.length)` bytes).
    pub fn open_payload(&mut self, header: &Header, sealed: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if sealed.len() != sealed_payload_len(header.length) {
            return Err(NoiseError::Decrypt);
        }
        let mut payload = Vec::with_capacity(header.length);
        let mut part = Vec::with_capacity(sealed.len().min(CHUNK + MAC_LEN));
        for piece in sealed.chunks(CHUNK + MAC_LEN) {
            part.clear();
            part.extend_from_slice(piece);
            self.0.decrypt(&mut part).map_err(|_| NoiseError::Decrypt)?;
            payload.extend_from_slice(&part);
        }
        Ok(payload)
    }
}
