#!/usr/bin/env python3
"""Floods of distinct names over many buckets of span time, over OTLP/HTTP JSON: the memory
cases of issues 10 and 24.

    scripts/flood.py http://127.0.0.1:4318 [--vary service|operation|address]
        [--distinct 5000] [--minutes 30] [--spans 150000]

--vary service:   one-span traces of --distinct service names (issue 10: 5,000 services,
                  150k spans, 30 one-minute buckets; issue 24: 50,000 services)
--vary operation: one service, --distinct span names (issue 24: 1M operation names)
--vary address:   one service's CLIENT spans to --distinct server.address values, each a peer
                  node (issue 24: 1M addresses)
Retries 503 (the daemon's retryable refusal) with a short pause, as an exporter would.
"""
import argparse, json, os, random, time, urllib.error, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("endpoint")
ap.add_argument("--vary", choices=["service", "operation", "address"], default="service")
ap.add_argument("--distinct", "--services", type=int, default=5000, dest="distinct")
ap.add_argument("--minutes", type=int, default=30)
ap.add_argument("--spans", type=int, default=150_000)
ap.add_argument("--batch", type=int, default=500)
ap.add_argument("--token", default=None)
a = ap.parse_args()
rnd = random.Random(1)
now = time.time_ns()
sent = refused = 0


def attr(k, v):
    return {"key": k, "value": {"stringValue": v}}


while sent < a.spans:
    by_service = {}
    for i in range(min(a.batch, a.spans - sent)):
        start = now - rnd.randrange(a.minutes * 60) * 1_000_000_000 - rnd.randrange(1_000_000_000)
        span = {"traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "GET /",
                "kind": 2, "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + rnd.randrange(1_000, 50_000_000))}
        svc = "flood"
        # Distinct values in order, then at random, so that every one of them is seen.
        n = sent % a.distinct if sent < a.distinct else rnd.randrange(a.distinct)
        if a.vary == "service":
            svc = f"svc-{n:07d}"
        elif a.vary == "operation":
            span["name"] = f"GET /items/{n:07d}"
        else:
            span["kind"] = 3
            span["attributes"] = [attr("server.address", f"host-{n:07d}.example"),
                                  attr("http.request.method", "GET")]
        by_service.setdefault(svc, []).append(span)
        sent += 1
    body = json.dumps({"resourceSpans": [
        {"resource": {"attributes": [attr("service.name", s)]},
         "scopeSpans": [{"spans": spans}]} for s, spans in by_service.items()]}).encode()
    req = urllib.request.Request(a.endpoint + "/v1/traces", data=body,
                                 headers={"Content-Type": "application/json"})
    if a.token:
        req.add_header("Authorization", "Bearer " + a.token)
    for attempt in range(600):
        try:
            urllib.request.urlopen(req, timeout=30).read()
            break
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            refused += 1
            time.sleep(0.1)
print(json.dumps({"spans_sent": sent, "refused_requests": refused}))
