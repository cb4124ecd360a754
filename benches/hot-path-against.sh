#!/usr/bin/env bash
# Cached-token issuance and connection status reads of this checkout against an earlier commit,
# in the same run: both release builds serve side by side on the same two cores, each with its
# own SQLite file of 10,000 companies over 100 Application IDs, and wrk (-t2 -c64 -d10s) measures
# a minimal actix-web handler, then each build's two hot paths, in turn, for three rounds. Each
# figure is a ratio to the minimal handler of its own round, so the machine's drift cancels.
# Usage: benches/hot-path-against.sh REV   (e.g. 002b452, the code before the fleet round)
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: benches/hot-path-against.sh REV}"
# Both builds share one target directory (the dependencies build once).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$work/src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Each build's binaries, copied out: the second build's would replace the first's in target/.
build() { # where-to-copy
  cargo build --release -q --bin ca-connector --example seed-companies
  mkdir -p "$1"
  cp "$CARGO_TARGET_DIR/release/ca-connector" "$CARGO_TARGET_DIR/release/examples/seed-companies" "$1/"
}
cargo build --release -q --example minimal-actix
cargo build --release -q -p connector --features simulator --bin ca-sim
cp "$CARGO_TARGET_DIR/release/examples/minimal-actix" "$CARGO_TARGET_DIR/release/ca-sim" "$work/"
build "$work/new"
git worktree add -q --detach "$work/src" "$rev"
(cd "$work/src" && build "$work/old")

keys="bench:$(head -c32 /dev/urandom | base64)"
export CA_CONNECTOR_JWT_SECRET="bench-jwt-secret-bench-jwt-secret-0123456789"
export CA_CONNECTOR_ENCRYPTION_KEYS="$keys"
"$work/ca-sim" --listen 127.0.0.1:19190 --any-app --latency-ms 100 2>/dev/null & pids+=($!)
"$work/minimal-actix" 127.0.0.1:19191 & pids+=($!)
serve() { # build port
  mkdir -p "$work/$1-data"
  "$work/$1/seed-companies" "sqlite://$work/$1.db" "$keys" 10000 100 >/dev/null
  "$work/$1/ca-connector" serve --listen "127.0.0.1:$2" --database-url "sqlite://$work/$1.db" \
    --data-dir "$work/$1-data" --channeladvisor-url http://127.0.0.1:19190 --log-format json \
    2>"$work/$1.log" & pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && break; sleep 0.1; done
}
serve old 19192
serve new 19193
jwt=$("$work/new/ca-connector" token --company '*' --data-dir "$work/new-data")
for port in 19192 19193; do # the first token of c000001 comes from the simulator; then cached
  curl -sf -X POST -H "Authorization: Bearer $jwt" "http://127.0.0.1:$port/api/v1/companies/c000001/access-token" >/dev/null
done

printf 'wrk.method = "POST"\n' >"$work/post.lua"
rps() { wrk -t2 -c64 -d10s "$@" | awk '/Requests\/sec/ {print $2}'; }
token() { rps -s "$work/post.lua" -H "Authorization: Bearer $jwt" "http://127.0.0.1:$1/api/v1/companies/c000001/access-token"; }
status() { rps -H "Authorization: Bearer $jwt" "http://127.0.0.1:$1/api/v1/companies/c000001/connection"; }
echo "== $rev (old) against $(git rev-parse --short HEAD) (new): wrk -t2 -c64 -d10s, three rounds"
rounds=()
for round in 1 2 3; do
  rounds+=("$(rps http://127.0.0.1:19191/),$(token 19192),$(token 19193),$(status 19192),$(status 19193)")
done
python3 - "${rounds[@]}" <<'PY'
import statistics, sys
rounds = [tuple(map(float, r.split(","))) for r in sys.argv[1:]]
for i, (b, to, tn, so, sn) in enumerate(rounds, 1):
    print(f"round {i}: minimal {b:,.0f} req/s; cached token old {to:,.0f} ({to/b:.2f}) new {tn:,.0f} ({tn/b:.2f});"
          f" status old {so:,.0f} ({so/b:.2f}) new {sn:,.0f} ({sn/b:.2f})")
med = lambda i: statistics.median(r[i] / r[0] for r in rounds)
print(f"cached token issuance, median ratio to the minimal handler: old {med(1):.2f}, new {med(2):.2f} (new/old {med(2)/med(1):.2f})")
print(f"connection status reads, median ratio: old {med(3):.2f}, new {med(4):.2f} (new/old {med(4)/med(3):.2f})")
PY
