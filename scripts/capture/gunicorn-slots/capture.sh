#!/usr/bin/env bash
# Captures testdata/gunicorn-slots.otlp.pb.gz: quotes-web (Flask on gunicorn, WORKERS sync
# workers) under an open-loop ramp past its capacity from loadgen.py, both traced by the real
# Python OpenTelemetry SDK, and testdata/gunicorn-slots.loadgen.json: what the load generator
# measured (the capacity: completions per second while overloaded).
#
# Usage: ./capture.sh    (env: RUN_DIR=/tmp/gunicorn-slots-capture OUT_DIR=testdata WORKERS=2
#                         FROM=10 TO=70 DURATION=90 PORT=5080)
# Needs python3 with venv and PyPI for the venv (requirements.txt, one pip command).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
RUN_DIR=${RUN_DIR:-/tmp/gunicorn-slots-capture}
OUT_DIR=${OUT_DIR:-$ROOT/testdata}
VENV=${VENV:-$RUN_DIR/venv}
WORKERS=${WORKERS:-2}
FROM=${FROM:-10}
TO=${TO:-70}
DURATION=${DURATION:-90}
PORT=${PORT:-5080}
log() { echo "[capture] $*" >&2; }

mkdir -p "$RUN_DIR"
if [ ! -x "$VENV/bin/gunicorn" ]; then
  log "creating venv $VENV"
  python3 -m venv "$VENV"
  (cd "$HERE" && "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt)
fi
spans="$RUN_DIR/spans"
rm -rf "$spans" && mkdir -p "$spans"
export OTEL_CAPTURE_DIR="$spans"

log "gunicorn: $WORKERS sync workers on 127.0.0.1:$PORT"
(cd "$HERE" && PORT=$PORT WORKERS=$WORKERS INSTANCE_ID="quotes-web-$(hostname)-$PORT" \
  exec "$VENV/bin/gunicorn" -c gunicorn.conf.py app:app) >"$RUN_DIR/gunicorn.log" 2>&1 &
gpid=$!
trap 'kill -TERM $gpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { log "gunicorn did not start: $RUN_DIR/gunicorn.log"; exit 1; }
sleep 1

log "loadgen: $FROM -> $TO requests/s over $DURATION s"
(cd "$HERE" && "$VENV/bin/python" loadgen.py "http://127.0.0.1:$PORT/quote" \
  --from "$FROM" --to "$TO" --duration "$DURATION" --workers "$WORKERS" \
  --out "$RUN_DIR/loadgen.json")
kill -TERM $gpid
wait $gpid || true
if ! grep -q '"completed": [1-9]' "$RUN_DIR/loadgen.json"; then
  log "no request completed: $RUN_DIR/gunicorn.log"; exit 1
fi
trap - EXIT

merged="$RUN_DIR/gunicorn-slots.otlp.pb"
"$VENV/bin/python" "$HERE/../flask-notes/merge_captures.py" "$merged" "$spans"/*.otlp.pb
gzip -9 -n -c "$merged" >"$OUT_DIR/gunicorn-slots.otlp.pb.gz"
cp "$RUN_DIR/loadgen.json" "$OUT_DIR/gunicorn-slots.loadgen.json"
log "wrote $OUT_DIR/gunicorn-slots.otlp.pb.gz and gunicorn-slots.loadgen.json"
