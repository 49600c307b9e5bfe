"""spamcheck: an uninstrumented HTTP dependency that fails 30% of its calls.

`POST /v1/check` answers 503 to 30% of calls (a seeded random.Random, so runs
repeat) and 200 with a small JSON verdict otherwise, after 2-5 ms. No
OpenTelemetry here at all: chokepoint sees it only through its callers'
client spans, as an external API.

Usage: python flaky_api.py PORT [FAIL_SHARE] [SEED]
"""

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 58080
FAIL = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        with lock:
            fail = rng.random() < FAIL
            delay = rng.uniform(0.002, 0.005)
        time.sleep(delay)
        if fail:
            body = b'{"error": "overloaded"}'
            self.send_response(503)
        else:
            body = json.dumps({"spam": False}).encode()
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
