//! Assembles the ZibSidecar (`zib_proto::sidecar`) from what the node measured: scene
//! cuts, per-frame findings, the transcript; see docs/sidecar.md.
