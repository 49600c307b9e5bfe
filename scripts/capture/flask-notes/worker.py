"""notes-worker: renders notes queued by notes-web.

Loops on `BRPOP render-jobs 5`; for each job it reads the note from
PostgreSQL, renders it to HTML and SETs rendered:<id> in Redis. Only the
library instrumentations make spans (no manual spans, no context carried in
the job), so each Redis/PostgreSQL call is the root of a trace of its own.

Usage: python worker.py   (env as app.py)
"""

import html
import json
import os
import time

import otel_file

otel_file.setup("notes-worker")

from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor  # noqa: E402
from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: E402

Psycopg2Instrumentor().instrument()
RedisInstrumentor().instrument()

import psycopg2  # noqa: E402
import redis  # noqa: E402


def render(title, body):
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n"))
    return f"<article><h1>{html.escape(title)}</h1>{paragraphs}</article>"


def connect():
    conn = psycopg2.connect(
        host=os.environ.get("PGHOST", "localhost"),
        port=int(os.environ.get("PGPORT", "5432")),
        dbname=os.environ.get("PGDATABASE", "notes"),
        user=os.environ.get("PGUSER", "postgres"),
    )
    conn.autocommit = True
    return conn


def main():
    conn = connect()
    r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    while True:
        try:
            item = r.brpop("render-jobs", 5)
        except redis.exceptions.TimeoutError:
            # redis-py's default socket timeout (5 s) equals the BRPOP timeout, so a queue
            # empty for 5 s (no new notes, e.g. while the database is down) can end the read
            # before Redis answers nil. Same as an empty queue: ask again (the client
            # reconnects by itself).
            continue
        if item is None:
            continue
        job = json.loads(item[1])
        try:
            if conn is None or conn.closed:
                conn = connect()
            with conn.cursor() as cur:
                cur.execute("SELECT title, body FROM notes WHERE id = %s", (job["note_id"],))
                row = cur.fetchone()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            # The database is down or restarted: drop the job, reconnect on the next one.
            conn = None
            time.sleep(0.5)
            continue
        if row is None:
            continue
        r.set(f"rendered:{job['note_id']}", render(row[0], row[1]), ex=600)


if __name__ == "__main__":
    main()
