"""notes-web: a tiny Flask notes service on PostgreSQL with a Redis cache and a
Redis job queue.

    GET  /notes/<id>           Redis GET note:<id>; on a miss SELECT from
                               PostgreSQL and SET note:<id> (TTL 30 s)
    GET  /notes/<id>/rendered  Redis GET rendered:<id> (written by the worker)
    GET  /notes                SELECT the 20 newest notes
    POST /notes                INSERT ... RETURNING id, then LPUSH render-jobs;
                               with SPAMCHECK_URL set, first POSTs the note to
                               that (uninstrumented) spam checker and answers
                               502 if it does not answer 2xx

A connection the database broke (a restart) is thrown away, not put back in
the pool, so the service reconnects by itself; while the database is down the
requests that need it fail with 500 (the exception reaches Flask, whose
instrumentation records it on the server span).

Usage: python app.py PORT   (env: PGHOST PGPORT PGDATABASE PGUSER REDIS_URL
OTEL_CAPTURE_DIR SPAMCHECK_URL)
"""

import json
import os
import sys

import otel_file

otel_file.setup("notes-web")

# Instrument the libraries before any connection or app exists.
from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor  # noqa: E402
from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: E402

Psycopg2Instrumentor().instrument()
RedisInstrumentor().instrument()
SPAMCHECK_URL = os.environ.get("SPAMCHECK_URL")
if SPAMCHECK_URL:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402

    RequestsInstrumentor().instrument()
    import requests  # noqa: E402

import psycopg2  # noqa: E402
import psycopg2.pool  # noqa: E402
import redis  # noqa: E402
from flask import Flask, abort, jsonify, request  # noqa: E402

CACHE_TTL_S = 30

app = Flask("notes-web")
FlaskInstrumentor().instrument_app(app)

pool = psycopg2.pool.ThreadedConnectionPool(
    2,
    32,
    host=os.environ.get("PGHOST", "localhost"),
    port=int(os.environ.get("PGPORT", "5432")),
    dbname=os.environ.get("PGDATABASE", "notes"),
    user=os.environ.get("PGUSER", "postgres"),
)
cache = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


class Db:
    def __enter__(self):
        self.conn = pool.getconn()
        if self.conn.closed:
            # Broken by a database restart: replace it (connect may fail while it is down).
            pool.putconn(self.conn, close=True)
            self.conn = pool.getconn()
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        broken = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
        if exc_type is None:
            self.conn.commit()
        elif not broken and not self.conn.closed:
            self.conn.rollback()
        pool.putconn(self.conn, close=broken or bool(self.conn.closed))


@app.get("/notes/<int:note_id>")
def get_note(note_id):
    key = f"note:{note_id}"
    cached = cache.get(key)
    if cached is not None:
        return app.response_class(cached, mimetype="application/json")
    with Db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, title, body, created_at FROM notes WHERE id = %s", (note_id,)
        )
        row = cur.fetchone()
    if row is None:
        abort(404)
    doc = json.dumps(
        {"id": row[0], "title": row[1], "body": row[2], "created_at": row[3].isoformat()}
    )
    cache.set(key, doc, ex=CACHE_TTL_S)
    return app.response_class(doc, mimetype="application/json")


@app.get("/notes/<int:note_id>/rendered")
def get_rendered(note_id):
    html = cache.get(f"rendered:{note_id}")
    if html is None:
        abort(404)
    return app.response_class(html, mimetype="text/html")


@app.get("/notes")
def list_notes():
    with Db() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, title FROM notes ORDER BY id DESC LIMIT 20")
        rows = cur.fetchall()
    return jsonify([{"id": r[0], "title": r[1]} for r in rows])


@app.post("/notes")
def create_note():
    doc = request.get_json(force=True)
    if SPAMCHECK_URL:
        verdict = requests.post(SPAMCHECK_URL, json={"text": doc["body"]}, timeout=2)
        if not verdict.ok:
            return jsonify({"error": f"spam check answered {verdict.status_code}"}), 502
    with Db() as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO notes (title, body) VALUES (%s, %s) RETURNING id",
            (doc["title"], doc["body"]),
        )
        note_id = cur.fetchone()[0]
    cache.lpush("render-jobs", json.dumps({"note_id": note_id}))
    return jsonify({"id": note_id}), 201


if __name__ == "__main__":
    port = int(sys.argv[1])
    app.run(host="127.0.0.1", port=port, threaded=True)
