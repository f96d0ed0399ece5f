//! The driver: plays the tenants (uploads, overwrites, deletes), the nodes (the
//! originator's distribution, heartbeats and their commands) and fate (faults), and
//! ticks the server's real workers, one step of simulated time at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zib_crypto::{CapabilitySigner, MasterKey};
use zib_erasure::{Codec, Layout};
use zib_meta::{FilePhase, NodeRow, ShardRow, Store};
use zib_proto::node_rpc::{DistributedRequest, NodeAction, StoredShard, UploadReceivedRequest};
use zib_proto::{BlobId, ErasureParams, FileId, NodeId};
use zib_server::domain::node_client::{NodeClient, SimTransport};
use zib_server::domain::{deletion, distribution, registration};
use zib_server::state::{AppState, Inner};
use zib_server::workers::{Auditor, Collector, Repairer, Verifier, Worker};
use zib_server::ServerConfig;
use zib_util::time::{now_ms, sim as clock};
use zib_util::worker::{Registry, WorkerHandle};

use super::cluster::{Blob, Net, SimNode, World};
use super::Fault;

/// The code of every simulated file: 4 data + 2 parity shards of small segments, so
/// files span one to three segments.
pub const K: u8 = 4;
pub const M: u8 = 2;
const SHARD_SIZE: u32 = 512;
const START_NODES: u32 = 7;
const MAX_NODES: usize = 10;
/// Object keys drawn from a small pool, so uploads often overwrite (supersede).
const KEYS: u32 = 14;
const MAX_LIVE_FILES: usize = 16;
/// Every this many steps the faults stop, crashed nodes come back, and the
/// cluster must heal (see `calm`).
pub const CALM_EVERY: u64 = 400;
const CALM_STEPS: u32 = 120;
const CALM_STEP_MS: i64 = 30_000;
/// The simulated epoch (2027-01-15): far from 0 so no "before 1970" edge applies.
const EPOCH_MS: i64 = 1_800_000_000_000;
/// How long a damaged shard on a running node may stay unrepaired: two audit
/// intervals (the sim's is 10 min), time enough for the audit and the repair.
pub const REPAIR_BOUND_MS: i64 = 2 * 600_000;

/// What the driver knows independently of the server: each file's shard hashes as
/// it encoded them, every (holder, blob) it ever saw the file use, whether it is gone.
pub struct SimFile {
    pub file_id: FileId,
    pub key: String,
    pub expected: BTreeMap<(u32, u8), [u8; 32]>,
    pub blobs: BTreeSet<(NodeId, BlobId)>,
    /// Deleted, superseded, expired or failed: none of its blobs may stay.
    pub gone: bool,
    /// Phase seen at the last check (to catch the step it became `safe`).
    pub phase: FilePhase,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub uploads: u64,
    pub uploads_held_back: u64,
    pub distributions_failed: u64,
    pub deletes: u64,
    pub faults: BTreeMap<String, u64>,
    pub worker_errors: u64,
    pub calms: u64,
}

/// A named invariant that did not hold.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub step: u64,
    pub detail: String,
}

pub struct Sim {
    pub seed: u64,
    rng: StdRng,
    pub step: u64,
    pub state: AppState,
    pub net: Net,
    pub faults: Vec<Fault>,
    verifier: Verifier,
    auditor: Auditor,
    repairer: Repairer,
    collector: Collector,
    me: WorkerHandle,
    tenant: String,
    pub files: BTreeMap<u64, SimFile>,
    next_file: u64,
    next_node: u32,
    pub stats: Stats,
    /// Shards the driver damaged on running nodes, with when: each must be rebuilt
    /// (its row moved to a new blob) within `REPAIR_BOUND_MS`.
    pub damaged: BTreeMap<BlobId, (i64, Fault)>,
    /// Every live distributed file's shard rows by segment, as of the last check
    /// (nothing changes them between a check and the next step's fault).
    pub segments: Vec<Vec<ShardRow>>,
    pub violations: Vec<Violation>,
    /// Record violations and go on (to survey), instead of stopping at the first.
    pub keep_going: bool,
    _dir: tempfile::TempDir,
}

impl Sim {
    pub async fn new(seed: u64, faults: Vec<Fault>) -> Sim {
        clock::set_now_ms(Some(EPOCH_MS));
        zib_util::rng::seed(seed ^ 0x5eed_0fc1_u64);
        // Real SQLite, on tmpfs where there is one: the store's fsyncs cost nothing.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temp dir for the simulation's store");
        let signer = CapabilitySigner::generate();
        let verifier = signer.verifier();
        let mut config = ServerConfig::with_secrets(
            dir.path().join("meta.db"),
            "http://sim-server.invalid".into(),
            MasterKey::generate(),
            signer,
            "sim-cluster-token-0123456789".into(),
        );
        config.erasure = ErasureParams {
            data_shards: K,
            parity_shards: M,
            shard_size: SHARD_SIZE,
        };
        config.data_shards = K;
        config.parity_shards = M;
        config.shard_size = SHARD_SIZE;
        config.node_offline_after = Duration::from_secs(30);
        config.heartbeat_interval = Duration::from_secs(5);
        config.repair_after = Duration::from_secs(120);
        config.verify_interval = Duration::from_secs(2);
        config.audit_interval = Duration::from_secs(600);
        config.garbage_grace = Duration::from_secs(600);
        config.upload_expiry = Duration::from_secs(600);
        config.safe_min_peers = 3;
        // The simulation is of shards under faults: its files (up to 6 KB) would
        // otherwise be kept inline in the store and never reach a node.
        config.inline_threshold = 0;
        let store = Store::open_sqlite(&config.database_path)
            .await
            .expect("the simulation's SQLite store opens");
        let tenant = store
            .create_tenant("sim", "AKSIMULATION00000000", "unused")
            .await
            .expect("a tenant")
            .id;
        let net = Net(Arc::new(Mutex::new(World {
            nodes: Vec::new(),
            server_deletes: Vec::new(),
            capabilities: verifier,
        })));
        let transport: Arc<dyn SimTransport> = Arc::new(net.clone());
        let state = AppState(Arc::new(Inner {
            config,
            store,
            http: reqwest::Client::new(),
            nodes: NodeClient::simulated(transport),
            workers: Registry::new(),
            // Not watched: the simulation moves its own clock.
            stalls: Default::default(),
            part_coding: tokio::sync::Semaphore::new(
                zib_server::domain::part_coding::PARTS_AT_ONCE,
            ),
        }));
        let mut sim = Sim {
            seed,
            rng: StdRng::seed_from_u64(seed),
            step: 0,
            state,
            net,
            faults,
            verifier: Verifier,
            auditor: Auditor,
            repairer: Repairer::default(),
            collector: Collector::default(),
            me: WorkerHandle::default(),
            tenant,
            files: BTreeMap::new(),
            next_file: 0,
            next_node: 0,
            stats: Stats::default(),
            damaged: BTreeMap::new(),
            segments: Vec::new(),
            violations: Vec::new(),
            keep_going: false,
            _dir: dir,
        };
        for _ in 0..START_NODES {
            sim.join().await;
        }
        sim
    }

    fn enabled(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }

    pub fn violate(&mut self, invariant: &'static str, detail: String) {
        let v = Violation {
            invariant,
            step: self.step,
            detail,
        };
        if !self.keep_going {
            panic!(
                "simulation invariant `{}` violated at step {} (seed {}): {}\n\
                 replay: ZIB_SIM_SEED={} ZIB_SIM_STEPS={} ZIB_SIM_FAULTS={} \
                 cargo test -p zib-server --test simulation -- --nocapture",
                v.invariant,
                v.step,
                self.seed,
                v.detail,
                self.seed,
                self.step,
                faults_arg(&self.faults),
            );
        }
        self.violations.push(v);
    }

    /// One step: time passes, nodes heartbeat, one thing happens, workers run, and
    /// every invariant is checked.
    pub async fn step(&mut self) {
        self.step += 1;
        tracing::debug!(step = self.step, now = now_ms(), "sim step");
        clock::advance_ms(self.rng.gen_range(1_000..=15_000));
        self.heartbeats().await;
        match self.rng.gen_range(0..100) {
            0..=29 => self.upload().await,
            30..=37 => self.delete().await,
            38..=59 => self.fault().await,
            60..=69 => self.restart(),
            _ => {}
        }
        if self.rng.gen_bool(0.7) {
            self.tick("verifier").await;
        }
        if self.rng.gen_bool(0.5) {
            self.tick("auditor").await;
        }
        if self.rng.gen_bool(0.7) {
            self.tick("repairer").await;
        }
        if self.rng.gen_bool(0.1) {
            // The collector paces its orphan sweeps on the wall clock: a fresh one
            // sweeps at once.
            self.collector = Collector::default();
            self.tick("collector").await;
        }
        self.check_step().await;
        if self.step.is_multiple_of(CALM_EVERY) {
            self.calm().await;
        }
    }

    /// Faults stop, crashed nodes restart, liars turn honest, and time runs an
    /// hour with every worker ticking: the cluster must be whole again.
    pub async fn calm(&mut self) {
        self.stats.calms += 1;
        {
            let mut world = self.net.world();
            for n in world.nodes.iter_mut().filter(|n| !n.left) {
                n.up = true;
                n.liar = false;
            }
        }
        for i in 0..CALM_STEPS {
            clock::advance_ms(CALM_STEP_MS);
            self.heartbeats().await;
            self.tick("verifier").await;
            self.tick("auditor").await;
            self.tick("repairer").await;
            if i % 10 == 0 {
                self.collector = Collector::default();
                self.tick("collector").await;
            }
            self.check_step().await;
        }
        self.check_healed().await;
    }

    async fn tick(&mut self, which: &str) {
        let state = &self.state;
        let me = &self.me;
        let result = match which {
            "verifier" => self.verifier.tick(state, me).await,
            "auditor" => self.auditor.tick(state, me).await,
            "repairer" => self.repairer.tick(state, me).await,
            _ => self.collector.tick(state, me).await,
        };
        if result.is_err() {
            self.stats.worker_errors += 1;
        }
    }

    /// Every running node heartbeats, the way `zib node` does: the server records
    /// it and hands back queued deletes, which the node carries out and acks.
    async fn heartbeats(&mut self) {
        let now = now_ms();
        let running: Vec<(NodeId, u64)> = self
            .net
            .world()
            .nodes
            .iter()
            .filter(|n| n.up && !n.left)
            .map(|n| (n.id.clone(), n.used_bytes()))
            .collect();
        let store = &self.state.store;
        for (id, used) in running {
            let known = store
                .heartbeat(&id, (1 << 40) - used, used, now)
                .await
                .expect("heartbeat recorded");
            assert!(known, "simulated node {id} is registered");
            let commands = store.pending_commands(&id).await.expect("commands read");
            let mut acked = Vec::new();
            {
                let mut world = self.net.world();
                let World {
                    nodes,
                    server_deletes,
                    ..
                } = &mut *world;
                let Some(node) = nodes.iter_mut().find(|n| n.id == id) else {
                    continue;
                };
                node.last_heartbeat_ms = now;
                for c in commands {
                    if let Ok(NodeAction::DeleteBlobs { blob_ids }) =
                        serde_json::from_value(c.action)
                    {
                        for b in blob_ids {
                            node.disk.remove(&b);
                            server_deletes.push((id.clone(), b));
                        }
                    }
                    acked.push(c.id);
                }
            }
            if !acked.is_empty() {
                store.ack_commands(&id, &acked, now).await.expect("acked");
            }
        }
    }

    async fn join(&mut self) {
        self.next_node += 1;
        let node = SimNode::new(self.next_node);
        let now = now_ms();
        self.state
            .store
            .upsert_node(&NodeRow {
                node_id: node.id.clone(),
                public_url: node.url.clone(),
                capacity_bytes: 1 << 40,
                free_bytes: 1 << 40,
                used_bytes: 0,
                zone: None,
                capabilities: vec![],
                last_heartbeat_at: now,
                registered_at: now,
                draining_since: None,
            })
            .await
            .expect("node registered");
        self.net.world().nodes.push(node);
    }

    fn restart(&mut self) {
        let mut world = self.net.world();
        let down: Vec<usize> = (0..world.nodes.len())
            .filter(|&i| !world.nodes[i].up && !world.nodes[i].left)
            .collect();
        if !down.is_empty() {
            let i = down[self.rng.gen_range(0..down.len())];
            world.nodes[i].up = true;
        }
    }

    fn running_nodes(&self) -> usize {
        self.net
            .world()
            .nodes
            .iter()
            .filter(|n| n.up && !n.left)
            .count()
    }

    fn live_files(&self) -> Vec<u64> {
        self.files
            .iter()
            .filter(|(_, f)| !f.gone)
            .map(|(n, _)| *n)
            .collect()
    }

    /// A tenant uploads: the real registration picks an originator, the simulated
    /// originator receives the envelope, asks for the real plan, pushes every
    /// shard with its capability, and reports them to the real record.
    async fn upload(&mut self) {
        if self.live_files().len() >= MAX_LIVE_FILES {
            return;
        }
        let width = usize::from(K + M);
        if self.running_nodes() < width && !self.enabled(Fault::ShortOfNodes) {
            self.stats.uploads_held_back += 1;
            return;
        }
        let key = format!("k{}", self.rng.gen_range(0..KEYS));
        let size = self.rng.gen_range(1..6_000u64);
        let registered = match registration::register(
            &self.state,
            &self.tenant,
            "sim".into(),
            key.clone(),
            size,
            "application/octet-stream".into(),
            registration::Sender::Client { required: &[] },
        )
        .await
        {
            Ok(r) => r.registration,
            Err(_) => return, // no node online: the tenant is told 503
        };
        self.stats.uploads += 1;
        let file_id = registered.file_id;
        let originator = registered.node_id.clone();
        let row = self
            .state
            .store
            .file(file_id)
            .await
            .expect("file read")
            .expect("the registered file exists");
        let mut ciphertext = vec![0u8; row.ciphertext_size as usize];
        self.rng.fill(&mut ciphertext[..]);
        let ordinal = self.next_file;
        self.next_file += 1;
        let mut file = SimFile {
            file_id,
            key,
            expected: BTreeMap::new(),
            blobs: BTreeSet::from([(originator.clone(), row.upload_blob_id)]),
            gone: false,
            phase: FilePhase::Pending,
        };
        if let Some(node) = self.net.world().node_mut(&originator) {
            node.disk.insert(
                row.upload_blob_id,
                Blob {
                    bytes: ciphertext.clone(),
                    modified_ms: now_ms(),
                },
            );
        }
        let raw = row.upload_blob_id.to_string();
        let plan = distribution::plan(
            &self.state,
            &raw,
            &UploadReceivedRequest {
                node_id: originator.clone(),
                size: row.ciphertext_size,
                part: None,
            },
        )
        .await;
        let plan = match plan {
            Ok(p) => p,
            Err(_) => {
                self.stats.distributions_failed += 1;
                self.files.insert(ordinal, file);
                return;
            }
        };
        let layout = Layout::new(plan.erasure, row.ciphertext_size);
        let codec = Codec::new(plan.erasure).expect("a valid code");
        let mut stored = Vec::new();
        let mut pushed_all = true;
        for seg in &plan.segments {
            let range = layout.segment_range(seg.segment);
            let shards = codec
                .encode_segment(&ciphertext[range.start as usize..range.end as usize])
                .expect("segment encodes");
            for t in &seg.targets {
                let bytes = shards[t.index as usize].clone();
                let hash = *blake3::hash(&bytes).as_bytes();
                file.expected.insert((seg.segment, t.index), hash);
                file.blobs.insert((t.node_id.clone(), t.blob_id));
                let size = bytes.len() as u64;
                let pushed = self
                    .net
                    .put_shard(
                        &t.node_url,
                        t.blob_id,
                        &t.token,
                        bytes,
                        Duration::from_secs(10),
                    )
                    .await;
                if pushed.is_err() {
                    pushed_all = false;
                }
                stored.push(StoredShard {
                    segment: seg.segment,
                    index: t.index,
                    blob_id: t.blob_id,
                    node_id: t.node_id.clone(),
                    size,
                    blake3: hex::encode(hash),
                });
            }
        }
        if pushed_all {
            let _ = distribution::record(
                &self.state,
                &raw,
                &DistributedRequest {
                    node_id: originator,
                    shards: stored,
                    part: None,
                },
            )
            .await;
        } else {
            // The originator gives up; the upload expires and its shards are orphans.
            self.stats.distributions_failed += 1;
        }
        self.files.insert(ordinal, file);
    }

    /// A tenant deletes one of its files through the domain layer.
    async fn delete(&mut self) {
        let live = self.live_files();
        if live.is_empty() {
            return;
        }
        let ordinal = live[self.rng.gen_range(0..live.len())];
        let file_id = self.files[&ordinal].file_id;
        let deleted = deletion::delete_file(&self.state, &self.tenant, file_id)
            .await
            .expect("delete runs");
        let file = self.files.get_mut(&ordinal).expect("live file");
        if let Some(d) = deleted {
            self.stats.deletes += 1;
            file.blobs.extend(d.deleted.blobs);
            file.gone = true;
        }
    }

    /// One enabled fault, if it keeps every segment within `M` failed holders: the
    /// cluster promises to survive that many, not more.
    async fn fault(&mut self) {
        let kinds: Vec<Fault> = self
            .faults
            .iter()
            .copied()
            .filter(|f| *f != Fault::ShortOfNodes)
            .collect();
        if kinds.is_empty() {
            return;
        }
        let kind = kinds[self.rng.gen_range(0..kinds.len())];
        tracing::debug!(step = self.step, ?kind, "sim fault drawn");
        let segments = std::mem::take(&mut self.segments);
        let applied = match kind {
            Fault::Join => {
                if self.net.world().nodes.iter().filter(|n| !n.left).count() < MAX_NODES {
                    self.join().await;
                    true
                } else {
                    false
                }
            }
            Fault::Crash | Fault::Leave | Fault::Lie => {
                let candidates: Vec<NodeId> = {
                    let world = self.net.world();
                    world
                        .nodes
                        .iter()
                        .filter(|n| n.up && !n.left && !(kind == Fault::Lie && n.liar))
                        .map(|n| n.id.clone())
                        .collect()
                };
                if candidates.is_empty() {
                    return;
                }
                let id = candidates[self.rng.gen_range(0..candidates.len())].clone();
                let width = usize::from(K + M);
                if kind != Fault::Lie
                    && candidates.len() <= width
                    && !self.enabled(Fault::ShortOfNodes)
                {
                    return;
                }
                // Short of nodes is a passing state (crashed nodes come back); a
                // cluster left with fewer nodes than shards per segment for good can
                // never be whole again, and is the operator's to fix, not repair's.
                if kind == Fault::Leave
                    && self.net.world().nodes.iter().filter(|n| !n.left).count() <= width
                {
                    return;
                }
                let fits = {
                    let world = self.net.world();
                    segments.iter().all(|rows| {
                        !rows.iter().any(|r| r.node_id == id)
                            || super::invariants::failed_holders(&world, rows, Some(&id))
                                <= usize::from(M)
                    })
                };
                if fits {
                    tracing::info!(step = self.step, ?kind, node = %id, "sim node fault");
                    let mut world = self.net.world();
                    let node = world.node_mut(&id).expect("candidate exists");
                    match kind {
                        Fault::Crash => node.up = false,
                        Fault::Leave => {
                            node.up = false;
                            node.left = true;
                            node.disk.clear();
                        }
                        _ => node.liar = true,
                    }
                }
                fits
            }
            _ => self.damage_shard(kind, &segments),
        };
        self.segments = segments;
        if applied {
            *self.stats.faults.entry(format!("{kind:?}")).or_default() += 1;
        }
    }

    /// Deletes, truncates or rots one shard on a running node.
    fn damage_shard(&mut self, kind: Fault, segments: &[Vec<ShardRow>]) -> bool {
        let parity = matches!(
            kind,
            Fault::LoseParity | Fault::TruncateParity | Fault::RotParity
        );
        let world = self.net.world();
        let candidates: Vec<&ShardRow> = segments
            .iter()
            .filter(|rows| super::invariants::failed_holders(&world, rows, None) < usize::from(M))
            .flatten()
            .filter(|r| (r.index >= K) == parity)
            // An intact shard: damaging one twice could undo the first (rot is an XOR).
            .filter(|r| {
                world.node(&r.node_id).is_some_and(|n| n.up && !n.left)
                    && super::invariants::intact(&world, r)
            })
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let target = candidates[self.rng.gen_range(0..candidates.len())].clone();
        // Adding a holder may still exceed M when it already failed for another
        // shard of the segment: recount with it.
        let rows = segments
            .iter()
            .find(|rows| rows.iter().any(|r| r.blob_id == target.blob_id))
            .expect("the target's segment");
        if super::invariants::failed_holders(&world, rows, Some(&target.node_id)) > usize::from(M) {
            return false;
        }
        drop(world);
        let mut world = self.net.world();
        let Some(blob) = world
            .node_mut(&target.node_id)
            .and_then(|n| n.disk.get_mut(&target.blob_id))
        else {
            return false;
        };
        self.damaged.insert(target.blob_id, (now_ms(), kind));
        tracing::info!(step = self.step, ?kind, node = %target.node_id, blob = %target.blob_id, file = %target.file_id, segment = target.segment, index = target.index, "sim damages a shard");
        match kind {
            Fault::LoseData | Fault::LoseParity => {
                if let Some(n) = world.node_mut(&target.node_id) {
                    n.disk.remove(&target.blob_id);
                }
            }
            Fault::TruncateData | Fault::TruncateParity => {
                let half = blob.bytes.len() / 2;
                blob.bytes.truncate(half);
            }
            _ => blob.bytes.iter_mut().for_each(|b| *b ^= 0x5a),
        }
        true
    }

    pub fn rng_seed_summary(&self) -> String {
        format!(
            "seed {}: {} steps, {} uploads ({} held back, {} distributions failed), {} deletes, {} calms, faults {:?}, {} worker errors",
            self.seed,
            self.step,
            self.stats.uploads,
            self.stats.uploads_held_back,
            self.stats.distributions_failed,
            self.stats.deletes,
            self.stats.calms,
            self.stats.faults,
            self.stats.worker_errors
        )
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        clock::set_now_ms(None);
        zib_util::rng::unseed();
    }
}

pub fn faults_arg(faults: &[Fault]) -> String {
    faults
        .iter()
        .map(|f| format!("{f:?}"))
        .collect::<Vec<_>>()
        .join(",")
}
