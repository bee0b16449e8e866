//! The binary encoding of Stratum V2's common and mining messages
//! (sv2-spec, "Protocol Overview" §3.1–3.2 and "Mining Protocol" §5.3), as
//! plain owned types.
//!
//! Every integer is little-endian; `U256` is 32 raw bytes; `STR0_255` and
//! `B0_32` carry a one-byte length, `B0_64K` a two-byte one, `SEQ0_255` a
//! one-byte count, `OPTION[T]` a one-byte 0 or 1 before the value. A frame
//! is a six-byte header (`extension_type` U16 whose top bit is the
//! `channel_msg` flag, `msg_type` U8, `msg_length` U24) and the payload.
//!
//! Decoding never panics and never allocates more than the input holds: a
//! length prefix is checked against the bytes that are there before anything
//! is copied. Bytes left over after a message's last field are an error, as
//! are booleans other than 0 and 1 and strings that are not UTF-8.

use thiserror::Error;

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 6;
/// The largest payload a header can declare (U24).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// The `channel_msg` bit of `extension_type`.
const CHANNEL_BIT: u16 = 0x8000;
/// `extension_type` of the extensions negotiation (`RequestExtensions`).
pub const EXTENSION_NEGOTIATION: u16 = 0x0001;

/// `SetupConnection.protocol` of the mining protocol.
pub const PROTOCOL_MINING: u8 = 0;
/// `SetupConnection` client flag: the device can only take standard jobs.
pub const REQUIRES_STANDARD_JOBS: u32 = 1 << 0;
/// `SetupConnection` client flag: the client selects its own work (job declaration).
pub const REQUIRES_WORK_SELECTION: u32 = 1 << 1;
/// `SetupConnection` client flag: the client rolls the version bits.
pub const REQUIRES_VERSION_ROLLING: u32 = 1 << 2;
/// `SetupConnection.Success` server flag: the version field is fixed (no
/// rolling); never sent to a client that requires rolling.
pub const REQUIRES_FIXED_VERSION: u32 = 1 << 0;

/// A decoding failure, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{message}: payload ends at byte {at}, {needed} more needed")]
    Short {
        message: &'static str,
        at: usize,
        needed: usize,
    },
    #[error("{message}: {extra} bytes after the last field")]
    Trailing { message: &'static str, extra: usize },
    #[error("{message}: {field} is not UTF-8")]
    NotUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message}: {field} is {value}, not a boolean")]
    NotBool {
        message: &'static str,
        field: &'static str,
        value: u8,
    },
    #[error("{message}: {field} has {len} bytes, at most {max} allowed")]
    TooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{message}: {field} option tag is {value}, not 0 or 1")]
    BadOption {
        message: &'static str,
        field: &'static str,
        value: u8,
    },
    #[error("unknown message type {msg_type:#04x} (extension {extension_type:#06x})")]
    Unknown { extension_type: u16, msg_type: u8 },
    #[error("{message} must{} have the channel_msg bit", if *.expected { "" } else { " not" })]
    ChannelBit {
        message: &'static str,
        expected: bool,
    },
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The extension, without the `channel_msg` bit.
    pub extension_type: u16,
    /// Set when the payload starts with a channel id.
    pub channel_msg: bool,
    pub msg_type: u8,
    /// Payload bytes that follow the header.
    pub length: usize,
}

impl Header {
    /// Parses the six header bytes.
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Header {
        let ext = u16::from_le_bytes([bytes[0], bytes[1]]);
        Header {
            extension_type: ext & !CHANNEL_BIT,
            channel_msg: ext & CHANNEL_BIT != 0,
            msg_type: bytes[2],
            length: usize::from(bytes[3])
                | usize::from(bytes[4]) << 8
                | usize::from(bytes[5]) << 16,
        }
    }

    /// The six header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let ext = self.extension_type | if self.channel_msg { CHANNEL_BIT } else { 0 };
        let [e0, e1] = ext.to_le_bytes();
        let len = self.length.min(MAX_PAYLOAD) as u32;
        let [l0, l1, l2, _] = len.to_le_bytes();
        [e0, e1, self.msg_type, l0, l1, l2]
    }
}

/// A 256-bit value as on the wire: 32 little-endian bytes (targets, hashes).
pub type U256 = [u8; 32];

/// The messages of the common and mining protocols Sluice speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    SetupConnection(SetupConnection),
    SetupConnectionSuccess {
        used_version: u16,
        flags: u32,
    },
    SetupConnectionError {
        flags: u32,
        error_code: String,
    },
    Reconnect {
        new_host: String,
        new_port: u16,
    },
    /// `RequestExtensions` (extension 0x0001): the extensions a client asks for.
    RequestExtensions {
        request_id: u16,
        requested: Vec<u16>,
    },
    /// `RequestExtensions.Success`: the ones granted.
    RequestExtensionsSuccess {
        request_id: u16,
        supported: Vec<u16>,
    },
    /// `RequestExtensions.Error`: none of those asked for is supported
    /// (`unsupported`), and those the server requires (`required`).
    RequestExtensionsError {
        request_id: u16,
        unsupported: Vec<u16>,
        required: Vec<u16>,
    },
    OpenStandardMiningChannel(OpenChannel),
    OpenStandardMiningChannelSuccess {
        request_id: u32,
        channel_id: u32,
        target: U256,
        extranonce_prefix: Vec<u8>,
        group_channel_id: u32,
    },
    OpenMiningChannelError {
        request_id: u32,
        error_code: String,
    },
    OpenExtendedMiningChannel {
        open: OpenChannel,
        min_extranonce_size: u16,
    },
    OpenExtendedMiningChannelSuccess {
        request_id: u32,
        channel_id: u32,
        target: U256,
        extranonce_size: u16,
        extranonce_prefix: Vec<u8>,
        group_channel_id: u32,
    },
    NewMiningJob {
        channel_id: u32,
        job_id: u32,
        /// `None`: a future job, active from a later `SetNewPrevHash`.
        min_ntime: Option<u32>,
        version: u32,
        merkle_root: U256,
    },
    UpdateChannel {
        channel_id: u32,
        nominal_hash_rate: f32,
        maximum_target: U256,
    },
    UpdateChannelError {
        channel_id: u32,
        error_code: String,
    },
    CloseChannel {
        channel_id: u32,
        reason_code: String,
    },
    SetExtranoncePrefix {
        channel_id: u32,
        extranonce_prefix: Vec<u8>,
    },
    SubmitSharesStandard(SubmitShares),
    SubmitSharesExtended {
        share: SubmitShares,
        extranonce: Vec<u8>,
    },
    SubmitSharesSuccess {
        channel_id: u32,
        last_sequence_number: u32,
        new_submits_accepted_count: u32,
        new_shares_sum: u64,
    },
    SubmitSharesError {
        channel_id: u32,
        sequence_number: u32,
        error_code: String,
    },
    NewExtendedMiningJob(ExtendedJob),
    SetNewPrevHash {
        channel_id: u32,
        job_id: u32,
        prev_hash: U256,
        min_ntime: u32,
        nbits: u32,
    },
    SetTarget {
        channel_id: u32,
        maximum_target: U256,
    },
    /// The standard channels `channel_ids` are in the group
    /// `group_channel_id`: jobs and prev hashes sent to it are theirs.
    SetGroupChannel {
        group_channel_id: u32,
        channel_ids: Vec<u32>,
    },
}

/// `SetupConnection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupConnection {
    pub protocol: u8,
    pub min_version: u16,
    pub max_version: u16,
    pub flags: u32,
    pub endpoint_host: String,
    pub endpoint_port: u16,
    pub vendor: String,
    pub hardware_version: String,
    pub firmware: String,
    pub device_id: String,
}

/// The fields both channel openings share.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenChannel {
    pub request_id: u32,
    /// The account (and worker) the channel mines for: V1's `mining.authorize`.
    pub user_identity: String,
    /// Hashes a second the device expects to do.
    pub nominal_hash_rate: f32,
    /// The easiest target the device accepts.
    pub max_target: U256,
}

/// The fields both share submissions share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitShares {
    pub channel_id: u32,
    pub sequence_number: u32,
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
}

/// `NewExtendedMiningJob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedJob {
    pub channel_id: u32,
    pub job_id: u32,
    pub min_ntime: Option<u32>,
    pub version: u32,
    pub version_rolling_allowed: bool,
    pub merkle_path: Vec<U256>,
    /// The coinbase (without witness) up to the extranonce.
    pub coinbase_tx_prefix: Vec<u8>,
    /// The coinbase after the extranonce.
    pub coinbase_tx_suffix: Vec<u8>,
}

impl Message {
    /// `(extension_type, msg_type, channel_msg)` of this message.
    pub fn kind(&self) -> (u16, u8, bool) {
        use Message::*;
        match self {
            SetupConnection(_) => (0, 0x00, false),
            SetupConnectionSuccess { .. } => (0, 0x01, false),
            SetupConnectionError { .. } => (0, 0x02, false),
            Reconnect { .. } => (0, 0x04, false),
            RequestExtensions { .. } => (EXTENSION_NEGOTIATION, 0x00, false),
            RequestExtensionsSuccess { .. } => (EXTENSION_NEGOTIATION, 0x01, false),
            RequestExtensionsError { .. } => (EXTENSION_NEGOTIATION, 0x02, false),
            OpenStandardMiningChannel(_) => (0, 0x10, false),
            OpenStandardMiningChannelSuccess { .. } => (0, 0x11, false),
            OpenMiningChannelError { .. } => (0, 0x12, false),
            OpenExtendedMiningChannel { .. } => (0, 0x13, false),
            OpenExtendedMiningChannelSuccess { .. } => (0, 0x14, false),
            NewMiningJob { .. } => (0, 0x15, true),
            UpdateChannel { .. } => (0, 0x16, true),
            UpdateChannelError { .. } => (0, 0x17, true),
            CloseChannel { .. } => (0, 0x18, true),
            SetExtranoncePrefix { .. } => (0, 0x19, true),
            SubmitSharesStandard(_) => (0, 0x1a, true),
            SubmitSharesExtended { .. } => (0, 0x1b, true),
            SubmitSharesSuccess { .. } => (0, 0x1c, true),
            SubmitSharesError { .. } => (0, 0x1d, true),
            NewExtendedMiningJob(_) => (0, 0x1f, true),
            SetNewPrevHash { .. } => (0, 0x20, true),
            SetTarget { .. } => (0, 0x21, true),
            SetGroupChannel { .. } => (0, 0x25, false),
        }
    }

    /// The message's name, as the spec writes it.
    pub fn name(&self) -> &'static str {
        let (ext, ty, _) = self.kind();
        name_of(ext, ty).unwrap_or("?")
    }

    /// Appends the whole frame (header and payload) to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (extension_type, msg_type, channel_msg) = self.kind();
        out.extend_from_slice(&[0; HEADER_LEN]);
        self.encode_payload(out);
        let header = Header {
            extension_type,
            channel_msg,
            msg_type,
            length: out.len() - start - HEADER_LEN,
        };
        out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    }

    /// The whole frame as a new buffer.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_frame(&mut out);
        out
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        use Message::*;
        match self {
            SetupConnection(s) => {
                w.u8(s.protocol);
                w.u16(s.min_version);
                w.u16(s.max_version);
                w.u32(s.flags);
                w.str0_255(&s.endpoint_host);
                w.u16(s.endpoint_port);
                w.str0_255(&s.vendor);
                w.str0_255(&s.hardware_version);
                w.str0_255(&s.firmware);
                w.str0_255(&s.device_id);
            }
            SetupConnectionSuccess {
                used_version,
                flags,
            } => {
                w.u16(*used_version);
                w.u32(*flags);
            }
            SetupConnectionError { flags, error_code } => {
                w.u32(*flags);
                w.str0_255(error_code);
            }
            Reconnect { new_host, new_port } => {
                w.str0_255(new_host);
                w.u16(*new_port);
            }
            RequestExtensions {
                request_id,
                requested,
            } => {
                w.u16(*request_id);
                w.seq064k_u16(requested);
            }
            RequestExtensionsSuccess {
                request_id,
                supported,
            } => {
                w.u16(*request_id);
                w.seq064k_u16(supported);
            }
            RequestExtensionsError {
                request_id,
                unsupported,
                required,
            } => {
                w.u16(*request_id);
                w.seq064k_u16(unsupported);
                w.seq064k_u16(required);
            }
            OpenStandardMiningChannel(o) => w.open(o),
            OpenStandardMiningChannelSuccess {
                request_id,
                channel_id,
                target,
                extranonce_prefix,
                group_channel_id,
            } => {
                w.u32(*request_id);
                w.u32(*channel_id);
                w.bytes(target);
                w.b0_32(extranonce_prefix);
                w.u32(*group_channel_id);
            }
            OpenMiningChannelError {
                request_id,
                error_code,
            } => {
                w.u32(*request_id);
                w.str0_255(error_code);
            }
            OpenExtendedMiningChannel {
                open,
                min_extranonce_size,
            } => {
                w.open(open);
                w.u16(*min_extranonce_size);
            }
            OpenExtendedMiningChannelSuccess {
                request_id,
                channel_id,
                target,
                extranonce_size,
                extranonce_prefix,
                group_channel_id,
            } => {
                w.u32(*request_id);
                w.u32(*channel_id);
                w.bytes(target);
                w.u16(*extranonce_size);
                w.b0_32(extranonce_prefix);
                w.u32(*group_channel_id);
            }
            NewMiningJob {
                channel_id,
                job_id,
                min_ntime,
                version,
                merkle_root,
            } => {
                w.u32(*channel_id);
                w.u32(*job_id);
                w.option_u32(*min_ntime);
                w.u32(*version);
                w.bytes(merkle_root);
            }
            UpdateChannel {
                channel_id,
                nominal_hash_rate,
                maximum_target,
            } => {
                w.u32(*channel_id);
                w.f32(*nominal_hash_rate);
                w.bytes(maximum_target);
            }
            UpdateChannelError {
                channel_id,
                error_code,
            } => {
                w.u32(*channel_id);
                w.str0_255(error_code);
            }
            CloseChannel {
                channel_id,
                reason_code,
            } => {
                w.u32(*channel_id);
                w.str0_255(reason_code);
            }
            SetExtranoncePrefix {
                channel_id,
                extranonce_prefix,
            } => {
                w.u32(*channel_id);
                w.b0_32(extranonce_prefix);
            }
            SubmitSharesStandard(s) => w.submit(s),
            SubmitSharesExtended { share, extranonce } => {
                w.submit(share);
                w.b0_32(extranonce);
            }
            SubmitSharesSuccess {
                channel_id,
                last_sequence_number,
                new_submits_accepted_count,
                new_shares_sum,
            } => {
                w.u32(*channel_id);
                w.u32(*last_sequence_number);
                w.u32(*new_submits_accepted_count);
                w.u64(*new_shares_sum);
            }
            SubmitSharesError {
                channel_id,
                sequence_number,
                error_code,
            } => {
                w.u32(*channel_id);
                w.u32(*sequence_number);
                w.str0_255(error_code);
            }
            NewExtendedMiningJob(j) => {
                w.u32(j.channel_id);
                w.u32(j.job_id);
                w.option_u32(j.min_ntime);
                w.u32(j.version);
                w.u8(u8::from(j.version_rolling_allowed));
                let n = j.merkle_path.len().min(255);
                w.u8(n as u8);
                for h in &j.merkle_path[..n] {
                    w.bytes(h);
                }
                w.b0_64k(&j.coinbase_tx_prefix);
                w.b0_64k(&j.coinbase_tx_suffix);
            }
            SetNewPrevHash {
                channel_id,
                job_id,
                prev_hash,
                min_ntime,
                nbits,
            } => {
                w.u32(*channel_id);
                w.u32(*job_id);
                w.bytes(prev_hash);
                w.u32(*min_ntime);
                w.u32(*nbits);
            }
            SetTarget {
                channel_id,
                maximum_target,
            } => {
                w.u32(*channel_id);
                w.bytes(maximum_target);
            }
            SetGroupChannel {
                group_channel_id,
                channel_ids,
            } => {
                w.u32(*group_channel_id);
                w.seq064k_u32(channel_ids);
            }
        }
    }

    /// Decodes the payload of a frame whose header is `header`.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Message, DecodeError> {
        let name = name_of(header.extension_type, header.msg_type).ok_or(DecodeError::Unknown {
            extension_type: header.extension_type,
            msg_type: header.msg_type,
        })?;
        let mut r = Reader {
            message: name,
            data: payload,
            at: 0,
        };
        use Message::*;
        let m = match (header.extension_type, header.msg_type) {
            (EXTENSION_NEGOTIATION, 0x00) => RequestExtensions {
                request_id: r.u16()?,
                requested: r.seq064k_u16()?,
            },
            (EXTENSION_NEGOTIATION, 0x01) => RequestExtensionsSuccess {
                request_id: r.u16()?,
                supported: r.seq064k_u16()?,
            },
            (EXTENSION_NEGOTIATION, 0x02) => RequestExtensionsError {
                request_id: r.u16()?,
                unsupported: r.seq064k_u16()?,
                required: r.seq064k_u16()?,
            },
            (_, 0x00) => SetupConnection(self::SetupConnection {
                protocol: r.u8()?,
                min_version: r.u16()?,
                max_version: r.u16()?,
                flags: r.u32()?,
                endpoint_host: r.str0_255("endpoint_host")?,
                endpoint_port: r.u16()?,
                vendor: r.str0_255("vendor")?,
                hardware_version: r.str0_255("hardware_version")?,
                firmware: r.str0_255("firmware")?,
                device_id: r.str0_255("device_id")?,
            }),
            (_, 0x01) => SetupConnectionSuccess {
                used_version: r.u16()?,
                flags: r.u32()?,
            },
            (_, 0x02) => SetupConnectionError {
                flags: r.u32()?,
                error_code: r.str0_255("error_code")?,
            },
            (_, 0x04) => Reconnect {
                new_host: r.str0_255("new_host")?,
                new_port: r.u16()?,
            },
            (_, 0x10) => OpenStandardMiningChannel(r.open()?),
            (_, 0x11) => OpenStandardMiningChannelSuccess {
                request_id: r.u32()?,
                channel_id: r.u32()?,
                target: r.u256()?,
                extranonce_prefix: r.b0_32("extranonce_prefix")?,
                group_channel_id: r.u32()?,
            },
            (_, 0x12) => OpenMiningChannelError {
                request_id: r.u32()?,
                error_code: r.str0_255("error_code")?,
            },
            (_, 0x13) => OpenExtendedMiningChannel {
                open: r.open()?,
                min_extranonce_size: r.u16()?,
            },
            (_, 0x14) => OpenExtendedMiningChannelSuccess {
                request_id: r.u32()?,
                channel_id: r.u32()?,
                target: r.u256()?,
                extranonce_size: r.u16()?,
                extranonce_prefix: r.b0_32("extranonce_prefix")?,
                group_channel_id: r.u32()?,
            },
            (_, 0x15) => NewMiningJob {
                channel_id: r.u32()?,
                job_id: r.u32()?,
                min_ntime: r.option_u32("min_ntime")?,
                version: r.u32()?,
                merkle_root: r.u256()?,
            },
            (_, 0x16) => UpdateChannel {
                channel_id: r.u32()?,
                nominal_hash_rate: r.f32()?,
                maximum_target: r.u256()?,
            },
            (_, 0x17) => UpdateChannelError {
                channel_id: r.u32()?,
                error_code: r.str0_255("error_code")?,
            },
            (_, 0x18) => CloseChannel {
                channel_id: r.u32()?,
                reason_code: r.str0_255("reason_code")?,
            },
            (_, 0x19) => SetExtranoncePrefix {
                channel_id: r.u32()?,
                extranonce_prefix: r.b0_32("extranonce_prefix")?,
            },
            (_, 0x1a) => SubmitSharesStandard(r.submit()?),
            (_, 0x1b) => SubmitSharesExtended {
                share: r.submit()?,
                extranonce: r.b0_32("extranonce")?,
            },
            (_, 0x1c) => SubmitSharesSuccess {
                channel_id: r.u32()?,
                last_sequence_number: r.u32()?,
                new_submits_accepted_count: r.u32()?,
                new_shares_sum: r.u64()?,
            },
            (_, 0x1d) => SubmitSharesError {
                channel_id: r.u32()?,
                sequence_number: r.u32()?,
                error_code: r.str0_255("error_code")?,
            },
            (_, 0x1f) => {
                let channel_id = r.u32()?;
                let job_id = r.u32()?;
                let min_ntime = r.option_u32("min_ntime")?;
                let version = r.u32()?;
                let version_rolling_allowed = r.bool("version_rolling_allowed")?;
                let n = r.u8()?;
                let mut merkle_path = Vec::with_capacity(usize::from(n).min(r.left() / 32));
                for _ in 0..n {
                    merkle_path.push(r.u256()?);
                }
                NewExtendedMiningJob(ExtendedJob {
                    channel_id,
                    job_id,
                    min_ntime,
                    version,
                    version_rolling_allowed,
                    merkle_path,
                    coinbase_tx_prefix: r.b0_64k()?,
                    coinbase_tx_suffix: r.b0_64k()?,
                })
            }
            (_, 0x20) => SetNewPrevHash {
                channel_id: r.u32()?,
                job_id: r.u32()?,
                prev_hash: r.u256()?,
                min_ntime: r.u32()?,
                nbits: r.u32()?,
            },
            (_, 0x21) => SetTarget {
                channel_id: r.u32()?,
                maximum_target: r.u256()?,
            },
            (_, 0x25) => SetGroupChannel {
                group_channel_id: r.u32()?,
                channel_ids: r.seq064k_u32()?,
            },
            _ => {
                return Err(DecodeError::Unknown {
                    extension_type: header.extension_type,
                    msg_type: header.msg_type,
                });
            }
        };
        r.finish()?;
        let expected = m.kind().2;
        if header.channel_msg != expected {
            return Err(DecodeError::ChannelBit {
                message: name,
                expected,
            });
        }
        Ok(m)
    }
}

/// The spec's name of a message type Sluice knows.
fn name_of(extension_type: u16, msg_type: u8) -> Option<&'static str> {
    if extension_type == EXTENSION_NEGOTIATION {
        return match msg_type {
            0x00 => Some("RequestExtensions"),
            0x01 => Some("RequestExtensions.Success"),
            0x02 => Some("RequestExtensions.Error"),
            _ => None,
        };
    }
    if extension_type != 0 {
        return None;
    }
    Some(match msg_type {
        0x00 => "SetupConnection",
        0x01 => "SetupConnection.Success",
        0x02 => "SetupConnection.Error",
        0x04 => "Reconnect",
        0x10 => "OpenStandardMiningChannel",
        0x11 => "OpenStandardMiningChannel.Success",
        0x12 => "OpenMiningChannel.Error",
        0x13 => "OpenExtendedMiningChannel",
        0x14 => "OpenExtendedMiningChannel.Success",
        0x15 => "NewMiningJob",
        0x16 => "UpdateChannel",
        0x17 => "UpdateChannel.Error",
        0x18 => "CloseChannel",
        0x19 => "SetExtranoncePrefix",
        0x1a => "SubmitSharesStandard",
        0x1b => "SubmitSharesExtended",
        0x1c => "SubmitShares.Success",
        0x1d => "SubmitShares.Error",
        0x1f => "NewExtendedMiningJob",
        0x20 => "SetNewPrevHash",
        0x21 => "SetTarget",
        0x25 => "SetGroupChannel",
        _ => return None,
    })
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// Longer strings are cut at 255 bytes (on a character boundary): the
    /// encoder never writes a frame the other side must refuse.
    fn str0_255(&mut self, s: &str) {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u8(end as u8);
        self.bytes(&s.as_bytes()[..end]);
    }
    fn b0_32(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(32)];
        self.u8(v.len() as u8);
        self.bytes(v);
    }
    fn b0_64k(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.u16(v.len() as u16);
        self.bytes(v);
    }
    fn seq064k_u16(&mut self, v: &[u16]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.u16(v.len() as u16);
        for x in v {
            self.u16(*x);
        }
    }
    fn seq064k_u32(&mut self, v: &[u32]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.u16(v.len() as u16);
        for x in v {
            self.u32(*x);
        }
    }
    fn option_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
            None => self.u8(0),
        }
    }
    fn open(&mut self, o: &OpenChannel) {
        self.u32(o.request_id);
        self.str0_255(&o.user_identity);
        self.f32(o.nominal_hash_rate);
        self.bytes(&o.max_target);
    }
    fn submit(&mut self, s: &SubmitShares) {
        self.u32(s.channel_id);
        self.u32(s.sequence_number);
        self.u32(s.job_id);
        self.u32(s.nonce);
        self.u32(s.ntime);
        self.u32(s.version);
    }
}

struct Reader<'a> {
    message: &'static str,
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.data.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.left() < n {
            return Err(DecodeError::Short {
                message: self.message,
                at: self.data.len(),
                needed: n - self.left(),
            });
        }
        let s = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    fn f32(&mut self) -> Result<f32, DecodeError> {
        self.array().map(f32::from_le_bytes)
    }
    fn u256(&mut self) -> Result<U256, DecodeError> {
        self.array()
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::NotBool {
                message: self.message,
                field,
                value,
            }),
        }
    }
    fn str0_255(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 {
            message: self.message,
            field,
        })
    }
    fn b0_32(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > 32 {
            return Err(DecodeError::TooLong {
                message: self.message,
                field,
                len: n,
                max: 32,
            });
        }
        Ok(self.take(n)?.to_vec())
    }
    fn b0_64k(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = usize::from(self.u16()?);
        Ok(self.take(n)?.to_vec())
    }
    fn seq064k_u16(&mut self) -> Result<Vec<u16>, DecodeError> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(2 * n)?;
        Ok(bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    fn seq064k_u32(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(4 * n)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn option_u32(&mut self, field: &'static str) -> Result<Option<u32>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            value => Err(DecodeError::BadOption {
                message: self.message,
                field,
                value,
            }),
        }
    }
    fn open(&mut self) -> Result<OpenChannel, DecodeError> {
        Ok(OpenChannel {
            request_id: self.u32()?,
            user_identity: self.str0_255("user_identity")?,
            nominal_hash_rate: self.f32()?,
            max_target: self.u256()?,
        })
    }
    fn submit(&mut self) -> Result<SubmitShares, DecodeError> {
        Ok(SubmitShares {
            channel_id: self.u32()?,
            sequence_number: self.u32()?,
            job_id: self.u32()?,
            nonce: self.u32()?,
            ntime: self.u32()?,
            version: self.u32()?,
        })
    }
    fn finish(&self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing {
                message: self.message,
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(msg_type: u8, channel_msg: bool, length: usize) -> Header {
        Header {
            extension_type: 0,
            channel_msg,
            msg_type,
            length,
        }
    }

    #[test]
    fn a_header_round_trips_with_its_channel_bit_and_24_bit_length() {
        let h = Header {
            extension_type: 0x0001,
            channel_msg: true,
            msg_type: 0x1b,
            length: 0x00ab_cdef,
        };
        assert_eq!(h.to_bytes(), [0x01, 0x80, 0x1b, 0xef, 0xcd, 0xab]);
        assert_eq!(Header::parse(h.to_bytes()), h);
    }

    #[test]
    fn malformed_payloads_are_named_errors() {
        // SubmitSharesStandard is 24 bytes.
        let e = Message::decode(&header(0x1a, true, 23), &[0; 23]).unwrap_err();
        assert!(matches!(e, DecodeError::Short { needed: 1, .. }), "{e}");
        let e = Message::decode(&header(0x1a, true, 25), &[0; 25]).unwrap_err();
        assert!(matches!(e, DecodeError::Trailing { extra: 1, .. }), "{e}");
        // Without the channel bit it must have.
        let e = Message::decode(&header(0x1a, false, 24), &[0; 24]).unwrap_err();
        assert!(
            matches!(e, DecodeError::ChannelBit { expected: true, .. }),
            "{e}"
        );
        // An extranonce of 33 bytes.
        let mut p = vec![0; 24];
        p.push(33);
        p.extend([0; 33]);
        let e = Message::decode(&header(0x1b, true, p.len()), &p).unwrap_err();
        assert!(matches!(e, DecodeError::TooLong { max: 32, .. }), "{e}");
        // A user identity that is not UTF-8.
        let mut p = vec![0, 0, 0, 0, 2, 0xff, 0xfe];
        p.extend([0; 4 + 32]);
        let e = Message::decode(&header(0x10, false, p.len()), &p).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::NotUtf8 {
                    field: "user_identity",
                    ..
                }
            ),
            "{e}"
        );
        let e = Message::decode(&header(0x7f, false, 0), &[]).unwrap_err();
        assert!(
            matches!(e, DecodeError::Unknown { msg_type: 0x7f, .. }),
            "{e}"
        );
        // A job-declaration message (SetCustomMiningJob) is not ours to take.
        let e = Message::decode(&header(0x22, true, 0), &[]).unwrap_err();
        assert!(matches!(e, DecodeError::Unknown { .. }), "{e}");
    }

    #[test]
    fn an_over_long_string_is_cut_on_a_character_boundary() {
        let m = Message::CloseChannel {
            channel_id: 1,
            reason_code: "é".repeat(200),
        };
        let frame = m.to_frame();
        let h = Header::parse(frame[..HEADER_LEN].try_into().unwrap());
        let Message::CloseChannel { reason_code, .. } =
            Message::decode(&h, &frame[HEADER_LEN..]).unwrap()
        else {
            panic!("not a CloseChannel");
        };
        assert_eq!(reason_code.len(), 254);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_message_or_an_error(
            msg_type in any::<u8>(),
            ext in prop_oneof![Just(0u16), Just(1u16), any::<u16>()],
            channel_msg in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let h = Header { extension_type: ext & 0x7fff, channel_msg, msg_type, length: payload.len() };
            if let Ok(m) = Message::decode(&h, &payload) {
                // Whatever decodes encodes back to the same bytes.
                let frame = m.to_frame();
                prop_assert_eq!(&frame[HEADER_LEN..], payload.as_slice());
                prop_assert_eq!(Header::parse(frame[..HEADER_LEN].try_into().unwrap()), h);
            }
        }
    }
}
