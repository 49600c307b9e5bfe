#!/usr/bin/env bash
# Memory per span in flight (issue 12): RSS growth of the release daemon when REQ requests of
# 500 spans (default 2000: 1M spans) are held in flight (trace_idle and bounds raised), sent
# by ../shared/tools/otlp-load after a small warm-up. Uses the default ports.
B=${OTLP_LOAD:-/tmp/otlp-load-target/release/otlp-load}
BIN=${BIN:-target/release/chokepoint}
REQ=${REQ:-2000}   # requests of 500 spans
$BIN serve --set pipeline.trace_idle=600s --set pipeline.max_traces_in_flight=1000000 --set pipeline.max_spans_in_flight=20000000 > /tmp/cpm.log 2>&1 &
CP=$!
sleep 2
# warm up: one small burst so the process's fixed costs are paid, then measure growth
$B run --endpoint http://127.0.0.1:4317 --ceiling 0 --max-requests 20 --duration 30 >/dev/null 2>&1
sleep 1
r0=$(grep VmRSS /proc/$CP/status | awk '{print $2}')
f0=$(curl -s localhost:8787/metrics | awk '/^chokepoint_spans_in_flight /{print $2}')
$B run --endpoint http://127.0.0.1:4317 --ceiling 0 --max-requests $REQ --duration 60 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("sent", d["spans_accepted"])'
sleep 2
r1=$(grep VmRSS /proc/$CP/status | awk '{print $2}')
f1=$(curl -s localhost:8787/metrics | awk '/^chokepoint_spans_in_flight /{print $2}')
echo "rss_kb $r0 -> $r1, in flight $f0 -> $f1, bytes/span $(( (r1-r0)*1024/(f1-f0) ))"
kill $CP; wait $CP 2>/dev/null
