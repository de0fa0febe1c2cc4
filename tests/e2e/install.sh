#!/usr/bin/env bash
# Install the JavaScript packages of the end-to-end tests (pusher-js, laravel-echo, pusher, ws)
# exactly as pinned in package-lock.json. Idempotent: does nothing when node_modules already
# matches the lock file. Needs node and npm (scripts/install-test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "tests/e2e/install.sh: node and npm are required (run scripts/install-test-deps.sh)" >&2
  exit 1
fi

stamp=node_modules/.ressonance-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
