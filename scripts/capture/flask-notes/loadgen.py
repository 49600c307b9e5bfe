"""loadgen: open-loop traffic for notes-web, traced with the requests
instrumentation (its CLIENT spans are the roots of the traces; the notes-web
SERVER spans are their children through the W3C traceparent header).

Each request goes to one of the notes-web URLs chosen at random. Mix:
  60 %  GET /notes/<id>   (80 % of them on 20 hot notes, so mostly cache hits;
                           2 % of all reads ask for a note that does not exist -> 404)
  15 %  GET /notes
  20 %  POST /notes
   5 %  GET /notes/<id>/rendered (a recently created note)

Usage: python loadgen.py --rate 20 --duration 90 --seed-notes 200 URL [URL...]
"""

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import otel_file

otel_file.setup("loadgen")

from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402

RequestsInstrumentor().instrument()

import requests  # noqa: E402

WORDS = (
    "bottleneck queue cache replica leader follower shard index vacuum latency "
    "throughput backlog worker lock commit snapshot checkpoint buffer pool"
).split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--seed-notes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    lock = threading.Lock()
    max_id = [args.seed_notes]
    recent = []
    stats = {"sent": 0, "ok": 0, "fail": 0}
    local = threading.local()

    def session():
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        return s

    def one(kind, base, arg):
        try:
            if kind == "get":
                resp = session().get(f"{base}/notes/{arg}", timeout=10)
            elif kind == "list":
                resp = session().get(f"{base}/notes", timeout=10)
            elif kind == "rendered":
                resp = session().get(f"{base}/notes/{arg}/rendered", timeout=10)
            else:
                resp = session().post(f"{base}/notes", json=arg, timeout=10)
                if resp.status_code == 201:
                    nid = resp.json()["id"]
                    with lock:
                        max_id[0] = max(max_id[0], nid)
                        recent.append(nid)
                        del recent[:-50]
            with lock:
                stats["ok" if resp.status_code < 500 else "fail"] += 1
        except requests.RequestException:
            with lock:
                stats["fail"] += 1

    pool = ThreadPoolExecutor(max_workers=32)
    interval = 1.0 / args.rate
    start = time.monotonic()
    n = 0
    while True:
        due = start + n * interval
        if due - start >= args.duration:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        base = rng.choice(args.urls)
        p = rng.random()
        with lock:
            top = max_id[0]
            rec = list(recent)
        if p < 0.60:
            if rng.random() < 0.02 / 0.60:
                arg = top + 100000 + rng.randrange(1000)  # missing note
            elif rng.random() < 0.8:
                arg = rng.randint(1, 20)
            else:
                arg = rng.randint(1, top)
            job = ("get", arg)
        elif p < 0.75:
            job = ("list", None)
        elif p < 0.95:
            title = " ".join(rng.choice(WORDS) for _ in range(3))
            body = "\n\n".join(
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
                for _ in range(rng.randint(1, 4))
            )
            job = ("post", {"title": title, "body": body})
        else:
            job = ("rendered", rng.choice(rec) if rec else 1)
        pool.submit(one, job[0], base, job[1])
        stats["sent"] += 1
        n += 1
    pool.shutdown(wait=True)
    print(f"[loadgen] {stats}", flush=True)


if __name__ == "__main__":
    main()
