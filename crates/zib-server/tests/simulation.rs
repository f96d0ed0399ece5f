//! Deterministic cluster simulation (issue 11, "The method, kept in the project"):
//! the server's real durability logic over the real store, with simulated time,
//! network and disks; invariants checked at every step. See
//! docs/architecture.md "Simulation".
//!
//! - `ZIB_SIM_SEED=<n>`: run (replay) that seed only.
//! - `ZIB_SIM_SEEDS=<n>`: run n fresh random seeds (the bench run), printed.
//! - `ZIB_SIM_STEPS=<n>`: steps per seed (default 1000).
//! - `ZIB_SIM_FAULTS=all|<Fault>,<Fault>...`: which faults (default: all but the
//!   known holes).
//! - `ZIB_SIM_LOG=<filter>`: the server's logs (e.g. `zib_server=debug`), with
//!   simulated timestamps absent: use the step numbers the driver logs.
//! - `ZIB_SIM_KEEP_GOING=1`: record violations and report them all at the end
//!   instead of stopping at the first.

mod sim;

use std::time::Instant;

use sim::driver::{faults_arg, Sim};
use sim::Fault;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn faults() -> Vec<Fault> {
    match std::env::var("ZIB_SIM_FAULTS") {
        Ok(v) if v.trim() == "all" => Fault::ALL.to_vec(),
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|f| {
                Fault::parse(f)
                    .unwrap_or_else(|| panic!("unknown fault {f:?}; known: {:?}", Fault::ALL))
            })
            .collect(),
        _ => Fault::ALL
            .iter()
            .copied()
            .filter(|f| !Fault::KNOWN_HOLES.contains(f))
            .collect(),
    }
}

/// One seed on its own current-thread runtime: the simulated clock and the seeded
/// random source are this thread's.
fn run(seed: u64, steps: u64, faults: &[Fault], keep_going: bool) -> Vec<sim::driver::Violation> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let mut sim = Sim::new(seed, faults.to_vec()).await;
        sim.keep_going = keep_going;
        while sim.step < steps {
            sim.step().await;
        }
        sim.calm().await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} — {:.1} s, {:.0} steps/s",
            sim.rng_seed_summary(),
            secs,
            steps as f64 / secs
        );
        std::mem::take(&mut sim.violations)
    })
}

#[test]
fn cluster_survives_seeded_faults() {
    if let Ok(filter) = std::env::var("ZIB_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .without_time()
            .try_init();
    }
    let steps = env("ZIB_SIM_STEPS").unwrap_or(1000u64);
    let faults = faults();
    let keep_going = env::<u8>("ZIB_SIM_KEEP_GOING").is_some_and(|v| v != 0);
    let seeds: Vec<u64> = match (env::<u64>("ZIB_SIM_SEED"), env::<u64>("ZIB_SIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (0..n).map(|_| rand::random::<u32>() as u64).collect(),
        (None, None) => vec![1, 2, 3],
    };
    println!("faults: {}", faults_arg(&faults));
    let mut all = Vec::new();
    for seed in seeds {
        println!("seed {seed} (replay: ZIB_SIM_SEED={seed} ZIB_SIM_STEPS={steps})");
        let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
        for v in run(seed, steps, &faults, keep_going) {
            let n = counts.entry(v.invariant).or_default();
            if *n == 0 {
                println!(
                    "  seed {seed} step {}: `{}` first: {}",
                    v.step, v.invariant, v.detail
                );
            }
            *n += 1;
            all.push((seed, v));
        }
        if !counts.is_empty() {
            println!("  seed {seed} violations: {counts:?}");
        }
    }
    if !all.is_empty() {
        let mut by_name: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
        for (seed, v) in &all {
            let seeds = by_name.entry(v.invariant).or_default();
            if !seeds.contains(seed) {
                seeds.push(*seed);
            }
        }
        panic!("invariants violated (name: seeds): {by_name:?}");
    }
}
