#!/usr/bin/env bash
# System packages the test suite needs (Debian): Node.js + npm for the end-to-end tests with
# pusher-js, laravel-echo and the pusher Node SDK; redis-server and nats-server for the broker
# contract and cluster tests (private servers on free ports); nginx for the proxy tests; gcc
# for the benchmark's load generator (tests/test_bench_smoke.py); chromium for the dashboard's
# browser tests (tests/dashboard, driven by Playwright with executable_path=/usr/bin/chromium).
# promtool (Debian package prometheus) checks deploy/prometheus and the Grafana queries.
# postgresql: initdb and postgres for a private server per test module (tests/storage).
# Installs only what is missing.
set -euo pipefail
# has BINARY: on PATH or in the system directories (/usr/sbin may not be on PATH)
has() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local dir
  for dir in /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin; do
    [ -x "$dir/$1" ] && return 0
  done
  return 1
}
missing=()
has node || missing+=(nodejs)
has npm || missing+=(npm)
has redis-server || missing+=(redis-server)
has nats-server || missing+=(nats-server)
has nginx || missing+=(nginx)
has gcc || missing+=(gcc)  # bench/loadgen.c, built by the bench smoke tests
has chromium || missing+=(chromium)  # tests/dashboard: a real headless browser
has promtool || missing+=(prometheus)  # promtool: tests/test_observability_files.py
# initdb + postgres: a private PostgreSQL for tests/storage (Debian keeps them off PATH)
has initdb || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
