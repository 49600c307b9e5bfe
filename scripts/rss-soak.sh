#!/usr/bin/env bash
# Sustained load (issue 12): DUR seconds at RATE spans/s from ../shared/tools/otlp-load, with
# history short enough (2 min) to be full early; samples RSS and the span books every 10 s
# into rss-soak.txt. Uses the default ports.
B=${OTLP_LOAD:-/tmp/otlp-load-target/release/otlp-load}
BIN=${BIN:-target/release/chokepoint}
DUR=${DUR:-720}
RATE=${RATE:-800000}
$BIN serve --set analysis.history=2m --set analysis.bucket=10s --set analysis.window=1m > rss-soak.log 2>&1 &
CP=$!
sleep 2
$B run --endpoint http://127.0.0.1:4317 --ceiling 0 --rate $RATE --duration $DUR --server-pid $CP > rss-soak-run.json 2>/dev/null &
LP=$!
t=0
while kill -0 $LP 2>/dev/null; do
  echo "$t $(grep VmRSS /proc/$CP/status | awk '{print $2}') $(curl -s localhost:8787/metrics | awk '/^chokepoint_spans_(analysed_total|in_flight|dropped_total|refused_total) /{printf "%s=%s ", $1, $2}')" >> rss-soak.txt
  sleep 10; t=$((t+10))
done
echo "$t $(grep VmRSS /proc/$CP/status | awk '{print $2}') end" >> rss-soak.txt
kill $CP; wait $CP 2>/dev/null
echo done >> rss-soak.txt
