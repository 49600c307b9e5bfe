#!/usr/bin/env bash
# Peak RSS of the release daemon under a flood of distinct names (issue 24), with the budget
# at BUDGET MiB (256), beside the demo shop's legitimate traffic:
#   scripts/flood-rss.sh service|operation|address DISTINCT SPANS
# Prints one JSON line: the idle baseline RSS, the peak during the flood (sampled from
# /proc every 100 ms), the books at the end, how often /readyz and /findings failed to answer
# within 2 s during the flood, and the shop's findings (kind, node, severity) at the end.
# Uses the default ports.
set -euo pipefail
cd "$(dirname "$0")/.."
vary=${1:-service} distinct=${2:-50000} spans=${3:-500000}
BIN=${BIN:-target/release/chokepoint}
BUDGET=${BUDGET:-256}
state=$(mktemp -d)
log=$(mktemp)
started=$SECONDS
$BIN serve --demo --set analysis.memory_budget_mb="$BUDGET" --state-dir "$state" >"$log" 2>&1 &
cp=$!
trap 'kill $cp 2>/dev/null; wait $cp 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do curl -sf localhost:8787/readyz >/dev/null && break; sleep 0.1; done
kill -0 $cp 2>/dev/null || { echo "daemon did not start:" >&2; cat "$log" >&2; exit 1; }
sleep 5
rss() { awk '/^VmRSS/ { print $2 }' /proc/$cp/status; }
sample() { r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.1; }
base=$(rss)
python3 scripts/flood.py http://127.0.0.1:4318 --vary "$vary" --distinct "$distinct" \
  --spans "$spans" >"$log.flood" &
fl=$!
peak=$base unanswered=0 probes=0
while kill -0 $fl 2>/dev/null; do
  probes=$((probes + 1))
  if [ $((probes % 10)) = 0 ]; then
    curl -sf -m 2 localhost:8787/readyz >/dev/null || unanswered=$((unanswered + 1))
    curl -sf -m 2 -o /dev/null localhost:8787/findings || unanswered=$((unanswered + 1))
  fi
  sample
done
# Let assembly finish (trace_idle) and a refresh publish, and the shop run for MIN_AGE
# seconds (120) in all: the demo alone shows its findings at that age.
for _ in $(seq 150); do sample; done
while [ $((SECONDS - started)) -lt "${MIN_AGE:-120}" ]; do sample; done
m=$(curl -s localhost:8787/metrics)
# FINDINGS=file keeps the whole /findings answer, METRICS=file the /metrics text.
[ -n "${FINDINGS:-}" ] && curl -s localhost:8787/findings >"$FINDINGS"
[ -n "${METRICS:-}" ] && printf '%s\n' "$m" >"$METRICS"
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$m"; }
shop=$(curl -s localhost:8787/findings | python3 -c '
import json, sys
fs = json.load(sys.stdin)["findings"]
keep = [" ".join((f["kind"], f["node"], f["severity"])) for f in fs
        if not f["node"].startswith(("svc-", "host-", "flood", "GET /items"))]
print(";".join(sorted(keep)))')
cat <<EOF
{"vary": "$vary", "distinct": $distinct, "spans": $spans, "budget_mb": $BUDGET, "baseline_rss_mb": $((base / 1024)), "peak_rss_mb": $((peak / 1024)), "end_rss_mb": $(($(rss) / 1024)), "flood": $(cat "$log.flood"), "received": $(get chokepoint_spans_received_total), "analysed": $(get chokepoint_spans_analysed_total), "rejected": $(get chokepoint_spans_rejected_total), "dropped": $(get chokepoint_spans_dropped_total), "refused": $(get chokepoint_spans_refused_total), "in_flight": $(get chokepoint_spans_in_flight), "aggregate_bytes": $(get chokepoint_aggregate_bytes), "names_overflowed": $(get chokepoint_names_overflowed_total), "nodes_overflowed": $(get chokepoint_nodes_overflowed_total), "probes_unanswered": $unanswered, "probes": $((probes / 10 * 2)), "shop_findings": "$shop"}
EOF
rm -f "$log" "$log.flood"
