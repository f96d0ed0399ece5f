#!/usr/bin/env bash
# Installs what the OpenAPI test needs: schemathesis (PyPI), which fuzzes a live
# `zib dev` against GET /v1/openapi.json. Only when missing.
set -euo pipefail

if python3 -c "import schemathesis.cli" 2>/dev/null; then
  exit 0
fi
echo "installing schemathesis (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check schemathesis
python3 -c "import schemathesis.cli" >/dev/null
