"""quotes-web: a Flask app served by gunicorn with a fixed number of sync workers.

Each sync worker serves one request at a time, so the server completes at most
workers / service time requests a second; past that, requests wait in the listen
backlog before a worker accepts them, outside the server span and inside the
caller's client span. `GET /quote` does about 40 ms of work: mostly waiting (a
`time.sleep` standing in for a slow downstream the trace does not show), a little
CPU.
"""

import hashlib
import time

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/quote")
def quote():
    time.sleep(0.038)
    h = hashlib.sha256()
    for i in range(200):
        h.update(i.to_bytes(4, "big"))
    return jsonify(price=int(h.hexdigest()[:6], 16) % 1000)


@app.get("/healthz")
def healthz():
    return "ok"
