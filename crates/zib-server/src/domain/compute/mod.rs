//! AI compute jobs (docs/ai.md): transcription and vision runs over a stored video on
//! nodes that advertise `kind:tier`. `request` is how they come to exist (a tenant's
//! submission, an encoding request or a pipeline declaring them), `lifecycle` the node
//! holding a job's lease (claim, renew, source, outputs, done, failed), `views` what
//! tenants see of them.

pub mod lifecycle;
pub mod request;
pub mod views;
