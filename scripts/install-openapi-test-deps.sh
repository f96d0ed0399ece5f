#!/usr/bin/env bash
# Installs what the OpenAPI test needs: schemathesis (PyPI), which fuzzes a live
# `zib dev` against GET /v1/openapi.json. Only when missing.
set -euo pipefail
# Tests run in parallel and may call this at once: one pip at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

if python3 -c "import schemathesis.cli" 2>/dev/null; then
  exit 0
fi
echo "installing schemathesis (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check schemathesis
python3 -c "import schemathesis.cli" >/dev/null
