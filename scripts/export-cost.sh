#!/usr/bin/env bash
# The cost of exporting the aggregates (issue 11), end to end: the release daemon under the
# load tool's default load (../shared/tools/otlp-load `run`, 2 connections x 16 in flight),
# once with export off and once remote-writing to a real Prometheus every 15 s (the default),
# same load, same machine. Prints the tool's JSON and the daemon's export counters per run.
#
#   cargo build --release && (cd ../shared/tools/otlp-load && cargo build --release)
#   scripts/export-cost.sh [seconds per run, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
load=${OTLP_LOAD:-/tmp/otlp-load-target/release/otlp-load}
bin=target/release/chokepoint
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
prometheus --config.file=<(printf 'global:\n  scrape_interval: 15s\n') \
  --storage.tsdb.path="$work/tsdb" --web.listen-address=127.0.0.1:19090 \
  --web.enable-remote-write-receiver >/dev/null 2>&1 &
until curl -fs http://127.0.0.1:19090/-/ready >/dev/null; do sleep 0.2; done
for mode in off remote-write; do
  args=(--set export.aggregates=false)
  if [ "$mode" = remote-write ]; then
    args=(--set export.remote_write_url=http://127.0.0.1:19090/api/v1/write --set export.instance=bench)
  fi
  "$bin" serve --grpc-listen 127.0.0.1:14317 --http-listen 127.0.0.1:14318 \
    --api-listen 127.0.0.1:18787 --api-grpc-listen 127.0.0.1:18788 "${args[@]}" \
    >"$work/listening" 2>"$work/daemon-$mode.log" &
  pid=$!
  until grep -q listening "$work/listening" 2>/dev/null; do sleep 0.1; done
  echo "== export $mode"
  "$load" run --endpoint http://127.0.0.1:14317 --connections 2 --inflight 16 \
    --duration "$secs" --server-pid "$pid"
  sleep 16 # one more remote-write interval: what was analysed at the end is written too
  curl -fs http://127.0.0.1:18787/metrics | grep -E '^chokepoint_(export_series|remote_write_[a-z]+_total|spans_analysed_total) '
  kill "$pid"; wait "$pid" || true
done
