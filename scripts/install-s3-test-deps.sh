#!/usr/bin/env bash
# Installs the real S3 clients the S3 surface is tested with, only when missing:
# boto3 and the AWS CLI from PyPI, rclone from Debian (apt-get; CI runs as root).
set -euo pipefail
# Tests run in parallel and may call this at once: one installer at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

missing=()
# boto3 >= 1.36 sends a CRC32 checksum with every upload by default (trailing, in an
# aws-chunked body): the path tests must cover. awscrt gives botocore CRC64NVME.
python3 -c 'import boto3, botocore, sys; sys.exit(tuple(map(int, botocore.__version__.split(".")[:2])) < (1, 36))' 2>/dev/null \
  || missing+=('boto3>=1.36')
python3 -c 'import awscrt' 2>/dev/null || missing+=(awscrt)
command -v aws >/dev/null 2>&1 || missing+=(awscli)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (PyPI)" >&2
  python3 -m pip install --quiet "${missing[@]}"
  # pyenv installs console scripts behind shims that need a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi
python3 -c 'import boto3' >/dev/null
aws --version >/dev/null 2>&1

if ! command -v rclone >/dev/null 2>&1; then
  echo "installing rclone (apt-get)" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  # A stale or half-fetched package index fails the first update now and then.
  "${sudo[@]}" apt-get update -qq >/dev/null || "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends rclone >/dev/null
fi
rclone version >/dev/null
