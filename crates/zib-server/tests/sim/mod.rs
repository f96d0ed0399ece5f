//! The deterministic cluster simulation: the server's real placement, distribution
//! plan/record, verifier, auditor, repairer, collector and deletion, over the real
//! zib-meta store on SQLite, driven with a simulated clock, network and disks.
//!
//! A run is a seed. The driver draws every choice from it (which action, which node
//! or shard a fault hits), the server's placement draws from it too
//! (`zib_util::rng`), and the clock only moves when the driver moves it, so a failing
//! seed replays with `ZIB_SIM_SEED=<seed>`.

pub mod cluster;
pub mod driver;
pub mod invariants;

/// What the simulation may do to the cluster. Each is a kind of event a real
/// cluster sees; the driver picks among the enabled ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A node's process stops (its disk survives); it is restarted later.
    Crash,
    /// A node leaves for good, its disk with it.
    Leave,
    /// A new node registers.
    Join,
    /// A node answers audit challenges with made-up hashes.
    Lie,
    /// A data shard's file is deleted on a node that keeps heartbeating.
    LoseData,
    /// A parity shard's file is deleted on a node that keeps heartbeating.
    LoseParity,
    /// A data shard's file is cut to half its length.
    TruncateData,
    /// A parity shard's file is cut to half its length.
    TruncateParity,
    /// Every byte of a data shard is changed (whole-file rot, so any audit range
    /// sees it).
    RotData,
    /// Every byte of a parity shard is changed.
    RotParity,
    /// The cluster may run with fewer nodes than shards per segment (crashes and
    /// departures are otherwise refused below that, and uploads held back), so
    /// distributions and repairs happen short of distinct holders.
    ShortOfNodes,
}

impl Fault {
    pub const ALL: &'static [Fault] = &[
        Fault::Crash,
        Fault::Leave,
        Fault::Join,
        Fault::Lie,
        Fault::LoseData,
        Fault::LoseParity,
        Fault::TruncateData,
        Fault::TruncateParity,
        Fault::RotData,
        Fault::RotParity,
        Fault::ShortOfNodes,
    ];

    /// The one place known holes are gated: faults listed here break an invariant
    /// on today's workers and are left out of the default run (`ZIB_SIM_FAULTS=all`
    /// runs them anyway; add `ZIB_SIM_KEEP_GOING=1` to list every violation). Empty
    /// since issue 11's fixes: the holes the simulation found, each now closed, were
    /// `ShortOfNodes` (doubled placements, called safe, never moved apart), `Leave`
    /// (a file promoted to safe while a holder was offline) and `TruncateData` /
    /// `TruncateParity` (a shard cut short noticed only by chance).
    pub const KNOWN_HOLES: &'static [Fault] = &[];

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| format!("{f:?}").eq_ignore_ascii_case(name.trim()))
    }
}
