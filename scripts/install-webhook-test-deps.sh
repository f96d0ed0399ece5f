#!/usr/bin/env bash
# Installs what the webhook tests need: the Standard Webhooks reference library
# (PyPI `standardwebhooks`), used by the test receiver to verify our signatures.
set -euo pipefail

if python3 -c "import standardwebhooks" 2>/dev/null; then
  exit 0
fi
echo "installing standardwebhooks (PyPI)" >&2
python3 -m pip install --quiet --disable-pip-version-check standardwebhooks
