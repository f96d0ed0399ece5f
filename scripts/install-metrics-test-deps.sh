#!/usr/bin/env bash
# Installs what the status tests need: the Prometheus Python client (PyPI
# `prometheus-client`), whose text parsers read the server's /metrics.
set -euo pipefail
# Tests run in parallel and may call this at once: one pip at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

if python3 -c "import prometheus_client.openmetrics.parser" 2>/dev/null; then
  exit 0
fi
echo "installing prometheus-client (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check prometheus-client
