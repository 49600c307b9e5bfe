#!/usr/bin/env python3
"""A flood of distinct service names over many buckets of span time, over OTLP/HTTP JSON:
the memory case of issue 10 (150k spans as 5,000 services over 30 one-minute buckets).

    scripts/flood.py http://127.0.0.1:4318 [--services 5000] [--minutes 30] [--spans 150000]
"""
import argparse, json, os, random, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("endpoint")
ap.add_argument("--services", type=int, default=5000)
ap.add_argument("--minutes", type=int, default=30)
ap.add_argument("--spans", type=int, default=150_000)
ap.add_argument("--batch", type=int, default=500)
ap.add_argument("--token", default=None)
a = ap.parse_args()
rnd = random.Random(1)
now = time.time_ns()
sent = 0
while sent < a.spans:
    by_service = {}
    for _ in range(min(a.batch, a.spans - sent)):
        svc = f"svc-{rnd.randrange(a.services):05d}"
        start = now - rnd.randrange(a.minutes * 60) * 1_000_000_000 - rnd.randrange(1_000_000_000)
        span = {"traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "GET /",
                "kind": 2, "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + rnd.randrange(1_000, 50_000_000))}
        by_service.setdefault(svc, []).append(span)
        sent += 1
    body = json.dumps({"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]},
         "scopeSpans": [{"spans": spans}]} for s, spans in by_service.items()]}).encode()
    req = urllib.request.Request(a.endpoint + "/v1/traces", data=body,
                                 headers={"Content-Type": "application/json"})
    if a.token:
        req.add_header("Authorization", "Bearer " + a.token)
    for attempt in range(50):
        try:
            urllib.request.urlopen(req, timeout=30).read()
            break
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            time.sleep(0.2)
print(json.dumps({"spans_sent": sent}))
