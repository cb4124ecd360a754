#!/usr/bin/env bash
# The token path's benchmarks against the release build, each figure a ratio to a baseline
# measured in the same run:
#   cached token issuance and connection status reads against a minimal actix-web handler with
#   the same wrk settings (target >= 0.7 each);
#   refresh fan-in (1,000 requests over 100 companies, no cached token: exactly 100 upstream calls)
#   against examples/ideal-fan-in on the same simulator (p99 target <= 1.1x);
#   peak resident memory with 10,000 companies (target < 64 MiB).
# Usage: benches/tokens.sh [DATABASE_URL]   (default: a fresh SQLite file)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin ca-connector --example seed-companies --example minimal-actix --example token-fan-in --example ideal-fan-in
cargo build --release -q -p connector --features simulator --bin ca-sim
rel=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

latency_ms=100
db="${1:-sqlite://$work/bench.db}"
keys="bench:$(head -c32 /dev/urandom | base64)"
export CA_CONNECTOR_JWT_SECRET="bench-jwt-secret-bench-jwt-secret-0123456789"
export CA_CONNECTOR_ENCRYPTION_KEYS="$keys"

"$rel/ca-sim" --listen 127.0.0.1:19090 --any-app --latency-ms "$latency_ms" 2>/dev/null & pids+=($!)
"$rel/examples/minimal-actix" 127.0.0.1:19091 & pids+=($!)
"$rel/examples/seed-companies" "$db" "$keys" 10000 100
"$rel/ca-connector" serve --listen 127.0.0.1:19092 --database-url "$db" --data-dir "$work" \
  --channeladvisor-url http://127.0.0.1:19090 --log-format json 2>"$work/serve.log" & server=$!; pids+=($server)
for _ in $(seq 50); do curl -sf http://127.0.0.1:19092/readyz >/dev/null && break; sleep 0.1; done
jwt=$("$rel/ca-connector" token --company '*' --data-dir "$work")

echo "== refresh fan-in (upstream latency $latency_ms ms; five bursts, each on 100 companies no burst touched before)"
# Each burst also runs against ideal-fan-in on the same simulator: one shared refresh per company
# with nothing else (no database, no authentication, no middleware) — the floor on this machine.
"$rel/examples/ideal-fan-in" 127.0.0.1:19093 http://127.0.0.1:19090 & pids+=($!)
refreshed() { grep '"access token refreshed"' "$work/serve.log" || true; }
for burst in 1 2 3 4 5; do
  only=$([ "$burst" = 1 ] && echo "" || echo first-only) # the other runs once
  logged=$(refreshed | wc -l)
  "$rel/examples/token-fan-in" http://127.0.0.1:19092 "$jwt" 100 1000 http://127.0.0.1:19090 $((burst * 300)) $only | tee -a "$work/fan-in.log"
  sleep 0.5 # the log is written by a background thread
  # The first 100 refreshes after the burst began are its own (the first run of burst 1).
  refreshed | tail -n +$((logged + 1)) | sed -n '1,100p' | sed -E 's/.*"upstream_ms":([0-9.]+).*/\1/' | paste -sd, >>"$work/upstream.log"
  "$rel/examples/token-fan-in" http://127.0.0.1:19093 "$jwt" 100 1000 http://127.0.0.1:19090 $((burst * 300)) first-only >>"$work/ideal.log"
done
python3 - "$work/fan-in.log" "$work/upstream.log" "$work/ideal.log" "$latency_ms" <<'PY'
import math, re, statistics, sys
def figures(path, pattern):
    return [float(re.search(pattern, line).group(1)) for line in open(path)
            if line.startswith("fan-in (no token cached)")]
def p99s(path):
    return figures(path, r"p99 ([0-9.]+) ms")
def quantile(values, q):
    return sorted(values)[max(0, math.ceil(len(values) * q) - 1)]
service, ideal = p99s(sys.argv[1]), p99s(sys.argv[3])
target = float(sys.argv[4]) + 50  # the simulator's configured latency + 50 ms
upstream = [[float(v) for v in line.strip().split(",") if v] for line in open(sys.argv[2])]
up99 = [quantile(u, 0.99) for u in upstream]
print(f"ca-connector fan-in p99 of the five bursts {service}; median {statistics.median(service):.1f} ms")
print(f"  its 100 upstream token calls per burst (service's log): p50 {[round(quantile(u, 0.5), 1) for u in upstream]},"
      f" p99 {[round(v, 1) for v in up99]}, max {[round(max(u), 1) for u in upstream]} ms")
print(f"  fan-in p99 minus the burst's upstream p99: {[round(s - u, 1) for s, u in zip(service, up99)]};"
      f" median {statistics.median(s - u for s, u in zip(service, up99)):.1f} ms (target < 50)")
print(f"  against the simulator's configured latency: median p99 {statistics.median(service):.1f} ms (target < {target:.0f})")
print(f"ideal-fan-in (the floor: no database, no auth, no middleware) p99 {ideal}; median {statistics.median(ideal):.1f} ms")
ratios = [s / i for s, i in zip(service, ideal)]
print(f"fan-in p99 against ideal-fan-in, burst by burst: {[round(r, 2) for r in ratios]};"
      f" median {statistics.median(ratios):.2f} (target <= 1.1)")
# Whether that reading can be met on this machine at all: how often the floor itself misses it.
print(f"bursts at or over {target:.0f} ms: ca-connector {sum(v >= target for v in service)} of {len(service)},"
      f" ideal-fan-in {sum(v >= target for v in ideal)} of {len(ideal)}")
cpu = figures(sys.argv[1], r"own CPU ([0-9.]+) ms") + figures(sys.argv[3], r"own CPU ([0-9.]+) ms")
print(f"the load generator's own CPU per burst (one thread, on the same two cores): median {statistics.median(cpu):.1f} ms")
PY
curl -sf http://127.0.0.1:19092/metrics >"$work/metrics.txt"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
LUA
rps() { # wrk args… → requests/s
  wrk -t2 -c64 -d10s --latency "$@" | tee -a "$work/wrk.log" | awk '/Requests\/sec/ {print $2}'
}
echo "== throughput (wrk -t2 -c64 -d10s; three rounds, each measuring all three in turn)"
results=()
for round in 1 2 3; do
  base=$(rps http://127.0.0.1:19091/)
  cached=$(rps -s "$work/post.lua" -H "Authorization: Bearer $jwt" http://127.0.0.1:19092/api/v1/companies/c000001/access-token)
  status=$(rps -H "Authorization: Bearer $jwt" http://127.0.0.1:19092/api/v1/companies/c000001/connection)
  results+=("$base,$cached,$status")
done
python3 - "${results[@]}" <<'PY'
import sys, statistics
rounds = [tuple(map(float, r.split(","))) for r in sys.argv[1:]]
for i, (b, c, s) in enumerate(rounds, 1):
    print(f"round {i}: minimal handler {b:,.0f} req/s; cached token {c:,.0f} ({c/b:.2f}); status {s:,.0f} ({s/b:.2f})")
tok = statistics.median(c / b for b, c, _ in rounds)
st = statistics.median(s / b for b, _, s in rounds)
print(f"cached token issuance: median ratio {tok:.2f} (target >= 0.7)")
print(f"connection status reads: median ratio {st:.2f} (target >= 0.7)")
PY
grep -E "^(VmHWM|VmRSS)" "/proc/$server/status" | awk '{printf "server %s %.1f MiB\n", $1, $2/1024}'
awk '/ca_connector_token_refresh_seconds_(sum|count)/ {v[$1]=$2} END {if (v["ca_connector_token_refresh_seconds_count"]) printf "upstream token call as the service saw it: mean %.1f ms over %d calls\n", 1000*v["ca_connector_token_refresh_seconds_sum"]/v["ca_connector_token_refresh_seconds_count"], v["ca_connector_token_refresh_seconds_count"]}' "$work/metrics.txt"
