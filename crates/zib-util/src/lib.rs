//! Helpers every ZiB process shares and that depend on no other ZiB crate but
//! `zib-proto`: wall-clock time in the formats the API uses ([`time`]), serde adapters
//! for duration config keys named after their unit ([`duration_serde`]) and the one
//! background-worker runner the server and the nodes both use ([`worker`]), the
//! random source a deterministic simulation can seed ([`rng`]), and noticing that the
//! process stood still ([`stall`]).

pub mod duration_serde;
pub mod rng;
pub mod stall;
pub mod time;
pub mod worker;
