#!/usr/bin/env bash
# End-to-end ingest (issue 12) with the independent load tool (../shared/tools/otlp-load):
# the release daemon, default config, analysis on, under the tool's `run` at its defaults
# (2 connections x 16 requests in flight, 500-span shop requests with fresh ids), load tool
# and daemon on the same cores. Each run first measures the tool's one-thread prost decode
# ceiling (3 s, daemon idle), so `ratio` is accepted spans/s over that ceiling, same run.
# Prints one summary line per run, then the daemon's span books.
#
#   cargo build --release && (cd ../shared/tools/otlp-load && cargo build --release)
#   scripts/ingest-bench.sh [grpc|http] [runs, default 3] [seconds per run, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
protocol=${1:-grpc}
runs=${2:-3}
secs=${3:-20}
load=${OTLP_LOAD:-/tmp/otlp-load-target/release/otlp-load}
bin=target/release/chokepoint
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
endpoint=http://127.0.0.1:14317
[ "$protocol" = http ] && endpoint=http://127.0.0.1:14318
for run in $(seq "$runs"); do
  "$bin" serve --grpc-listen 127.0.0.1:14317 --http-listen 127.0.0.1:14318 \
    --api-listen 127.0.0.1:18787 --api-grpc-listen 127.0.0.1:18788 \
    >"$work/listening" 2>"$work/daemon.log" &
  pid=$!
  until grep -q listening "$work/listening" 2>/dev/null; do sleep 0.1; done
  "$load" run --protocol "$protocol" --endpoint "$endpoint" --duration "$secs" --warmup 2 \
    --server-pid "$pid" 2>/dev/null >"$work/run.json"
  python3 - "$work/run.json" "$run" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
print(f"run {sys.argv[2]}: {d['spans_per_s_accepted']/1e3:.0f}k spans/s accepted, "
      f"ceiling {d['ceiling_spans_per_s']/1e3:.0f}k, ratio {d['ratio_to_ceiling']:.2f}, "
      f"p50 {l['p50']:.1f} ms p99 {l['p99']:.1f} ms, failed {d['requests_failed']} "
      f"{d['failed_by_status']}, daemon {d['server_cores']:.2f} cores "
      f"({d['server_spans_per_cpu_s']/1e3:.0f}k spans/CPU-s), client {d['client_cores']:.2f}, "
      f"host busy {d['host_busy_cores']:.2f}")
PY
  sleep 12 # trace_idle (10 s): every trace completes and is analysed
  curl -s http://127.0.0.1:18787/metrics |
    grep -E '^chokepoint_spans_(received|analysed|rejected|dropped|refused)_total ' | tr '\n' ' '
  echo
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
