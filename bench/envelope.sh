#!/usr/bin/env bash
# Envelope v1 speed vs OpenSSL's AES-256-GCM on this machine, measured in the same
# run. OpenSSL runs `speed -evp aes-256-gcm` on 16 KiB blocks before and after our
# criterion bench (the mean of the two is the baseline, so a load change mid-run
# hurts both sides alike). MB = 10^6 bytes. Target: ours / openssl >= 1.5 on the
# like-for-like row (sealing 16 KiB pieces, in cache, no allocation).
#
# Usage (from anywhere): bench/envelope.sh [extra criterion args]
set -euo pipefail

cd "$(dirname "$0")/.."

openssl_bytes_per_sec() {
    # Last line looks like "AES-256-GCM  4886528.00k": thousands of bytes per second.
    local out
    out=$(openssl speed -evp aes-256-gcm -bytes 16384 -seconds 3 2>/dev/null)
    printf '%s\n' "$out" | awk 'tolower($1) == "aes-256-gcm" && $NF ~ /k$/ { v = $NF } END {
        if (v == "") exit 1
        sub(/k$/, "", v); printf "%.0f\n", v * 1000 }'
}

command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }
echo "== openssl speed (before)"
ossl_before=$(openssl_bytes_per_sec) || { echo "could not parse openssl speed output" >&2; exit 1; }
echo "   $ossl_before bytes/s"

echo "== cargo bench -p zib-crypto --bench envelope (release)"
cargo bench -p zib-crypto --bench envelope -- --noplot "$@"

echo "== openssl speed (after)"
ossl_after=$(openssl_bytes_per_sec) || { echo "could not parse openssl speed output" >&2; exit 1; }
echo "   $ossl_after bytes/s"

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

python3 - "$target_dir/criterion" "$ossl_before" "$ossl_after" <<'PY'
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])
ossl = (float(sys.argv[2]) + float(sys.argv[3])) / 2 / 1e6  # MB/s

def mbps(group, bench, nbytes):
    est = json.loads((root / group / bench / "new" / "estimates.json").read_text())
    return nbytes / est["mean"]["point_estimate"] * 1e3  # bytes/ns -> MB/s

rows = [
    ("seal 16 KiB pieces", mbps("seal_16KiB", "seal_chunk", 16 << 10), True),
    ("encrypt 64 MiB (alloc)", mbps("envelope_64MiB", "encrypt", 64 << 20), False),
    ("decrypt 64 MiB (alloc)", mbps("envelope_64MiB", "decrypt", 64 << 20), False),
]
print()
print(f"openssl aes-256-gcm 16 KiB: {ossl:9.0f} MB/s "
      f"(before {float(sys.argv[2]) / 1e6:.0f}, after {float(sys.argv[3]) / 1e6:.0f})")
print(f"{'ours':<26}{'MB/s':>9}  {'ratio':>6}")
for name, ours, headline in rows:
    ratio = ours / ossl
    mark = ("  target >= 1.5: " + ("met" if ratio >= 1.5 else "NOT MET")) if headline else ""
    print(f"{name:<26}{ours:9.0f}  {ratio:6.2f}{mark}")
PY
