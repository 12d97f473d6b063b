#!/usr/bin/env bash
# Installs the broker-based peers of the NATS-* workloads (bench/run.py calls it):
#   bench/peers/.venv                  Celery and its Redis client (requirements.txt)
#   bench/peers/bullmq/node_modules    BullMQ and ioredis (package.json, package-lock.json)
# Idempotent: each part is skipped while what it installed matches its pinned list
# (a stamp file keeps the checksum of the list it was installed from).
# Needs python3 (with venv), node and npm; reaches only PyPI and the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

sum() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

want=$(sum requirements.txt)
if [[ -x .venv/bin/python && "$(cat .venv/.installed 2>/dev/null)" == "$want" ]] \
   && .venv/bin/python -c 'import celery, redis' 2>/dev/null; then
  echo "peers: celery venv up to date"
else
  echo "peers: installing celery into bench/peers/.venv"
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -c 'import celery, redis'
  echo "$want" > .venv/.installed
fi

want=$(sum bullmq/package.json bullmq/package-lock.json)
if [[ -d bullmq/node_modules/bullmq && "$(cat bullmq/node_modules/.installed 2>/dev/null)" == "$want" ]]; then
  echo "peers: bullmq node_modules up to date"
else
  echo "peers: installing bullmq into bench/peers/bullmq/node_modules"
  (cd bullmq && npm ci --no-audit --no-fund --loglevel=error)
  (cd bullmq && node -e 'require("bullmq"); require("ioredis")')
  echo "$want" > bullmq/node_modules/.installed
fi
