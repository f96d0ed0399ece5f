//! Wire types shared by the server, the nodes and the clients.
//!
//! Everything here is plain data: no I/O, no crypto. The tenant API types live in
//! [`api`] (its encoding requests and job views in [`encoding`]), the server↔node
//! RPC in [`node_rpc`], identifiers in [`ids`], the envelope/erasure parameters
//! every party must agree on in [`params`], the machine codes of error answers in
//! [`error_codes`], the typed upload pipeline
//! declaration in [`pipeline`], the encoding-job protocol between server and nodes in
//! [`jobs`], webhook event names and payloads in [`events`], and the peer platforms'
//! webhook formats in [`peer_events`], the AI compute jobs in [`compute`] and the
//! vision sidecar's JSON in [`sidecar`].

pub mod admin;
pub mod api;
pub mod compute;
pub mod encoding;
pub mod error_codes;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod node_rpc;
pub mod params;
pub mod peer_events;
pub mod pipeline;
pub mod sidecar;
pub mod workers;

pub use ids::{BlobId, FileId, NodeId};
pub use params::{EnvelopeParams, ErasureParams};
