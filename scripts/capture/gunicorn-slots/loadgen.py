"""loadgen: an open-loop ramp past the server's capacity, traced with the requests
instrumentation (its CLIENT spans are the traces' roots), and the capacity measured
from the outside: what the server completed per second while it was overloaded.

Arrivals are a Poisson process whose rate rises linearly from --from to --to
requests/s over --duration seconds (seeded). Every request runs on its own thread
from a large pool, so a slow server never slows the arrivals (open loop).

At the end it writes --out (JSON): the schedule, and `capacity_rps`, the median of
the per-second completion counts over the seconds in which more than
2 × --workers requests were outstanding (the server's workers all busy and a
queue in front of them), with those seconds listed.

Usage: python loadgen.py --from 10 --to 70 --duration 90 --workers 2 --out X URL
"""

import argparse
import json
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import otel_setup

otel_setup.setup("loadgen")

from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402

RequestsInstrumentor().instrument()

import requests  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--from", dest="lo", type=float, default=10.0)
    ap.add_argument("--to", dest="hi", type=float, default=70.0)
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    lock = threading.Lock()
    outstanding = 0
    done_at = []
    failed = 0
    samples = []  # (second, outstanding) once a second
    session_local = threading.local()

    def one():
        nonlocal outstanding, failed
        s = getattr(session_local, "s", None)
        if s is None:
            s = session_local.s = requests.Session()
        try:
            r = s.get(a.url, timeout=120)
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        with lock:
            outstanding -= 1
            if ok:
                done_at.append(time.monotonic())
            else:
                failed += 1

    pool = ThreadPoolExecutor(max_workers=800)
    t0 = time.monotonic()
    t = 0.0
    sent = 0
    next_sample = 1.0
    while t < a.duration:
        rate = a.lo + (a.hi - a.lo) * t / a.duration
        t += rng.expovariate(rate)
        while time.monotonic() - t0 < t:
            now = time.monotonic() - t0
            if now >= next_sample:
                with lock:
                    samples.append((next_sample, outstanding))
                next_sample += 1.0
            time.sleep(min(0.002, max(0.0, t - now)))
        with lock:
            outstanding += 1
        sent += 1
        pool.submit(one)
    pool.shutdown(wait=True)
    end = time.monotonic() - t0

    per_second = {}
    for d in done_at:
        sec = int(d - t0)
        per_second[sec] = per_second.get(sec, 0) + 1
    # Seconds [s-1, s) in which the server was saturated: a queue in front of its workers
    # at both ends of the second.
    busy = dict(samples)
    overloaded = [
        s
        for s in range(2, int(a.duration))
        if busy.get(float(s), 0) > 2 * a.workers and busy.get(float(s + 1), 0) > 2 * a.workers
    ]
    rates = [per_second.get(s, 0) for s in overloaded]
    report = {
        "url": a.url,
        "schedule": {"from_rps": a.lo, "to_rps": a.hi, "duration_s": a.duration, "seed": a.seed},
        "sent": sent,
        "completed": len(done_at),
        "failed": failed,
        "ran_s": round(end, 1),
        "overloaded_seconds": overloaded,
        "completed_per_overloaded_second": rates,
        "capacity_rps": statistics.median(rates) if rates else None,
    }
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(json.dumps({k: report[k] for k in ("sent", "completed", "failed", "capacity_rps")}))


if __name__ == "__main__":
    main()
