//! Helpers every ZiB process shares and that depend on no other ZiB crate but
//! `zib-proto`: wall-clock time in the formats the API uses ([`time`]) and the one
//! background-worker runner the server and the nodes both use ([`worker`]).

pub mod time;
pub mod worker;
