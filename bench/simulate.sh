#!/usr/bin/env bash
# Long run of the deterministic cluster simulation (release): SEEDS fresh random
# seeds (default 8) of STEPS steps each (default 20000), every fault enabled but the
# known holes (ZIB_SIM_FAULTS=all to include them). Every seed runs to the end
# (ZIB_SIM_KEEP_GOING=1); prints each seed, its faults, steps/s and the first
# violation of each invariant with its step, then the totals.
#   bench/simulate.sh [SEEDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
export ZIB_SIM_SEEDS=${1:-8} ZIB_SIM_STEPS=${2:-20000}
export ZIB_SIM_KEEP_GOING=${ZIB_SIM_KEEP_GOING:-1}
cargo test --release -q -p zib-server --test simulation --no-run
t0=$(date +%s.%N)
set +e
cargo test --release -q -p zib-server --test simulation -- --nocapture 2>&1 \
  | grep -v -E '^\s*$|^ +[0-9]+: |^ +at ' | tee "${TMPDIR:-/tmp}/zib-simulate.log"
status=${PIPESTATUS[0]}
set -e
t1=$(date +%s.%N)
python3 - "$t0" "$t1" <<'PY'
import re, sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
log = open(__import__("os").environ.get("TMPDIR", "/tmp") + "/zib-simulate.log").read()
runs = re.findall(r"^seed (\d+): (\d+) steps.*— ([\d.]+) s, (\d+) steps/s", log, re.M)
steps = sum(int(r[1]) for r in runs)
print(f"simulate: {len(runs)} seeds ({', '.join(r[0] for r in runs)}), {steps} steps "
      f"in {t1 - t0:.0f} s wall, {steps / max(sum(float(r[2]) for r in runs), 1e-9):.0f} steps/s simulated")
PY
exit "$status"
