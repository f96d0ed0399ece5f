#!/usr/bin/env bash
# Installs what the webhook tests need: the Standard Webhooks reference library
# (PyPI `standardwebhooks`), used by the test receiver to verify our signatures.
set -euo pipefail
# Tests run in parallel and may call this at once: one pip at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

if python3 -c "import standardwebhooks" 2>/dev/null; then
  exit 0
fi
echo "installing standardwebhooks (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check standardwebhooks
