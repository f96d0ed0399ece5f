#!/usr/bin/env bash
# Installs what the OpenAPI test needs: schemathesis (PyPI), which runs every one of
# its checks against a live `zib dev` from GET /v1/openapi.json. Pinned: the test's
# seed draws the same cases only with the same generator, and the CLI's options
# change between versions. Only when that version is missing.
set -euo pipefail
VERSION=4.32.5
# Tests run in parallel and may call this at once: one pip at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

if python3 -c "import sys, schemathesis; sys.exit(schemathesis.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
echo "installing schemathesis $VERSION (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION"
python3 -c "import schemathesis.cli" >/dev/null
