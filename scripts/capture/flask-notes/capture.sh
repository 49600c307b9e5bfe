#!/usr/bin/env bash
# Make the flask-notes trace captures: start PostgreSQL and Redis on localhost,
# two notes-web processes, one notes-worker, the load generator, and (for
# slow-db) the lock fault; stop everything; write the framed OTLP protobuf
# capture, gzipped, to $OUT_DIR.
#
# Usage: ./capture.sh [healthy|slow-db|all|db-outage|flaky-api]   (default: all =
#        healthy and slow-db)
# Env:   DURATION=90 RATE=20 OUT_DIR=<repo>/testdata RUN_DIR=/tmp/flask-notes-capture
#        VENV=$RUN_DIR/venv PGPORT=55432 REDIS_PORT=56379 WEB_PORTS="5001 5002"
#        SEED_NOTES=200 OUTAGE_AT=35 OUTAGE_FOR=10 SPAMCHECK_PORT=58080
# Needs: Debian packages postgresql and redis-server (installed with apt-get if
# missing, when run as root), python3 with venv, PyPI for the venv.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
SCENARIOS=${1:-all}
DURATION=${DURATION:-90}
RATE=${RATE:-20}
OUT_DIR=${OUT_DIR:-$REPO/testdata}
RUN_DIR=${RUN_DIR:-/tmp/flask-notes-capture}
VENV=${VENV:-$RUN_DIR/venv}
PGPORT=${PGPORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
WEB_PORTS=${WEB_PORTS:-"5001 5002"}
SEED_NOTES=${SEED_NOTES:-200}
OUTAGE_AT=${OUTAGE_AT:-35}
OUTAGE_FOR=${OUTAGE_FOR:-10}
SPAMCHECK_PORT=${SPAMCHECK_PORT:-58080}

log() { echo "[capture $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- packages
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then
    log "installing postgresql and redis-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

mkdir -p "$RUN_DIR" "$OUT_DIR"
chmod 755 "$RUN_DIR"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # One pip command, every package pinned (see requirements.txt).
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------- cleanup
PIDS=()
FAULT_PGID=""
PG_STARTED=""
REDIS_STARTED=""

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pid() {  # stop_pid PID: SIGTERM, wait up to 20 s, then SIGKILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.2
    done
    log "pid $pid did not stop, killing"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_fault() {
    if [ -n "$FAULT_PGID" ]; then
        kill -TERM -- "-$FAULT_PGID" 2>/dev/null || true
        wait "$FAULT_PGID" 2>/dev/null || true
        FAULT_PGID=""
    fi
}

stop_apps() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

cleanup() {
    stop_fault
    stop_apps
    if [ -n "$REDIS_STARTED" ]; then
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        REDIS_STARTED=""
    fi
    if [ -n "$PG_STARTED" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/data" -m fast -w stop >/dev/null || true
        PG_STARTED=""
    fi
}
trap cleanup EXIT

wait_port() {  # wait_port PORT: until something listens on 127.0.0.1:PORT
    local i
    for i in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    log "nothing listens on port $1"; return 1
}

# ---------------------------------------------------------------- servers
start_postgres() {
    rm -rf "$RUN_DIR/pg"
    mkdir -p "$RUN_DIR/pg/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$RUN_DIR/pg"
    as_pg "$PGBIN/initdb" -D "$RUN_DIR/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/data" -l "$RUN_DIR/pg/server.log" -w \
        -o "-c port=$PGPORT -c listen_addresses=localhost -c unix_socket_directories=$RUN_DIR/pg/sock" start >/dev/null
    PG_STARTED=1
    psql_notes() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h localhost -p "$PGPORT" -U postgres "$@"; }
    "$PGBIN/psql" -X -q -h localhost -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE notes"
    psql_notes -d notes -f "$HERE/schema.sql"
    log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on localhost:$PGPORT"
}

start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --dir "$RUN_DIR" --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
    REDIS_STARTED=1
    wait_port "$REDIS_PORT"
    log "Redis $(redis-server --version | awk '{print $3}') on localhost:$REDIS_PORT"
}

reset_data() {  # same starting state for every capture: SEED_NOTES notes, empty cache and queue
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h localhost -p "$PGPORT" -U postgres -d notes <<EOF
TRUNCATE notes RESTART IDENTITY;
INSERT INTO notes (title, body)
SELECT 'note ' || i, repeat('seed text for note ' || i || '. ', 1 + i % 7)
FROM generate_series(1, $SEED_NOTES) AS i;
VACUUM ANALYZE notes;
EOF
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
}

# ---------------------------------------------------------------- the fault
# Slow PostgreSQL without touching the app: one psql session repeatedly holds
# an ACCESS EXCLUSIVE lock on `notes` for 100 ms, then releases it for 50 ms.
# Every statement on `notes` (the web's SELECT/INSERT, the worker's SELECT)
# queues behind the lock while it is held.
start_fault() {
    setsid bash -c '
        while :; do
            echo "BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(0.1); COMMIT; SELECT pg_sleep(0.05);"
        done | "$0" -X -q -o /dev/null -h localhost -p "$1" -U postgres -d notes
    ' "$PGBIN/psql" "$PGPORT" &
    FAULT_PGID=$!
    sleep 1
    log "fault on: ACCESS EXCLUSIVE lock on notes 100 ms of every 150 ms (pgid $FAULT_PGID)"
}

# ---------------------------------------------------------------- db-outage
# PostgreSQL stopped hard (no shutdown checkpoint, every connection cut) OUTAGE_AT
# seconds into the load, kept down OUTAGE_FOR seconds, then started again; the
# services reconnect by themselves. The times go to <capture>.fault.json.
pg_options() { echo "-c port=$PGPORT -c listen_addresses=localhost -c unix_socket_directories=$RUN_DIR/pg/sock"; }
outage() {  # outage FAULT_JSON
    sleep "$OUTAGE_AT"
    local down up
    down=$(date +%s%N)
    as_pg "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/data" -m immediate -w stop >/dev/null
    log "db-outage: PostgreSQL stopped (pg_ctl -m immediate stop)"
    sleep "$OUTAGE_FOR"
    as_pg "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/data" -l "$RUN_DIR/pg/server.log" -w -o "$(pg_options)" start >/dev/null
    up=$(date +%s%N)
    log "db-outage: PostgreSQL started again"
    cat >"$1" <<JSON
{
  "fault": "PostgreSQL stopped with pg_ctl -m immediate stop, started again with pg_ctl start -w",
  "address": "localhost:$PGPORT",
  "down_unix_ns": $down,
  "up_unix_ns": $up
}
JSON
}

# ---------------------------------------------------------------- one capture
capture() {  # capture NAME
    local name=$1 spans="$RUN_DIR/spans-$1" out="$OUT_DIR/flask-notes-$1.otlp.pb.gz" port urls=()
    rm -rf "$spans"; mkdir -p "$spans"
    reset_data
    export OTEL_CAPTURE_DIR="$spans" PGHOST=localhost PGPORT PGDATABASE=notes PGUSER=postgres \
        REDIS_URL="redis://localhost:$REDIS_PORT/0" PYTHONUNBUFFERED=1
    unset SPAMCHECK_URL
    cd "$HERE"
    if [ "$name" = flaky-api ]; then
        "$PY" flaky_api.py "$SPAMCHECK_PORT" 0.3 7 >"$RUN_DIR/flaky-api.log" 2>&1 &
        PIDS+=($!)
        wait_port "$SPAMCHECK_PORT"
        export SPAMCHECK_URL="http://localhost:$SPAMCHECK_PORT/v1/check"
        log "flaky-api: spam checker on localhost:$SPAMCHECK_PORT answers 503 to 30% of calls"
    fi
    for port in $WEB_PORTS; do
        "$PY" app.py "$port" >"$RUN_DIR/web-$port-$name.log" 2>&1 &
        PIDS+=($!)
        urls+=("http://localhost:$port")
    done
    "$PY" worker.py >"$RUN_DIR/worker-$name.log" 2>&1 &
    PIDS+=($!)
    for port in $WEB_PORTS; do wait_port "$port"; done
    sleep 1

    [ "$name" = slow-db ] && start_fault
    local outage_pid=""
    if [ "$name" = db-outage ]; then
        outage "$OUT_DIR/flask-notes-$name.fault.json" &
        outage_pid=$!
    fi
    log "$name: loadgen $RATE req/s for $DURATION s against ${urls[*]}"
    "$PY" loadgen.py --rate "$RATE" --duration "$DURATION" --seed-notes "$SEED_NOTES" "${urls[@]}" \
        2>&1 | tee "$RUN_DIR/loadgen-$name.log" >&2
    [ -n "$outage_pid" ] && wait "$outage_pid"
    sleep 3   # let the worker drain the queue
    stop_fault
    stop_apps
    cat "$RUN_DIR"/web-*-"$name".log "$RUN_DIR/worker-$name.log" | grep -F 'wrote' >&2 || true

    # Interleave the per-process files in export-time order (see merge_captures.py;
    # `cat "$spans"/*.otlp.pb` is a valid capture too, but not in time order).
    "$PY" merge_captures.py "$RUN_DIR/flask-notes-$name.otlp.pb" "$spans"/*.otlp.pb
    gzip -9 -n -c "$RUN_DIR/flask-notes-$name.otlp.pb" > "$out"
    log "$name: $(stat -c %s "$out") bytes -> $out"
}

start_postgres
start_redis
case "$SCENARIOS" in
    healthy) capture healthy ;;
    slow-db) capture slow-db ;;
    db-outage) capture db-outage ;;
    flaky-api) capture flaky-api ;;
    all) capture healthy; capture slow-db ;;
    *) echo "usage: $0 [healthy|slow-db|all|db-outage|flaky-api]" >&2; exit 2 ;;
esac
