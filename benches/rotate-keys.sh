#!/usr/bin/env bash
# Measures `ca-connector rotate-keys` throughput on 10,000 companies (release build).
# Usage: benches/rotate-keys.sh [postgres://admin-url]   (SQLite always; PostgreSQL when a URL is given)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin ca-connector --example seed-companies
bin=target/release/ca-connector
seed=target/release/examples/seed-companies
old="old:$(head -c32 /dev/urandom | base64)"
new="new:$(head -c32 /dev/urandom | base64)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CA_CONNECTOR_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123

run() { # backend url
  "$seed" "$2" "$old" 10000
  local start end
  start=$(date +%s.%N)
  CA_CONNECTOR_ENCRYPTION_KEYS="$new,$old" "$bin" rotate-keys --database-url "$2" --data-dir "$work" 2>&1 | tail -1
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'| $1 | 10000 | {s:.2f} | {10000/s:.0f} |')"
}

run sqlite "sqlite://$work/bench.db"
if [[ -n "${1:-}" ]]; then
  db="bench_$(date +%s)"
  psql "$1" -qc "CREATE DATABASE $db"
  run postgres "$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path='/$db').geturl())" "$1")"
fi
