//! ZiB's cryptography: the envelope v1 wire format (`docs/envelope.md`), wrapping of
//! per-file data keys under the server's master key, and the Ed25519 capability
//! tokens that let a node accept exactly one upload.

pub mod capability;
pub mod challenge;
pub mod envelope;
pub mod hls;
pub mod keywrap;
pub mod webhook;

pub use capability::{CapabilitySigner, CapabilityVerifier, TokenError};
pub use envelope::{EnvelopeError, Header, Layout};
pub use keywrap::{DataKey, KeyWrapError, MasterKey};
