//! The `sluice.v1` protobuf messages that travel on Kafka, and the one place
//! where they are converted to and from `sluice-core` domain types.
//!
//! Services never handle the generated structs directly: they publish and
//! consume domain types through [`Payload`], which encodes to and decodes from
//! the wire bytes, validating every length and enum on the way in.

mod convert;

/// The generated prost types of package `sluice.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/sluice.v1.rs"));
}

pub use convert::ProtoError;

/// A domain type that travels as one protobuf message.
pub trait Payload: Sized {
    /// Encodes to the wire bytes.
    fn encode_to_vec(&self) -> Vec<u8>;
    /// Decodes and validates wire bytes.
    fn decode_from(bytes: &[u8]) -> Result<Self, ProtoError>;
}
