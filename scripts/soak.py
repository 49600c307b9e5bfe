#!/usr/bin/env python3
"""Soak: mixed load on a live daemon for a while, restarting it between cycles alternately
with SIGTERM and kill -9, and checking after every cycle and restart that nothing was lost.

    cargo build --release && scripts/soak.py [--minutes 30] [--cycle 180]

Each cycle: the shop's single-database scenario over OTLP/gRPC (`chokepoint simulate`),
plus OTLP/HTTP JSON from other services with some bad input mixed in (malformed bodies,
spans with absurd times). Then, with the load stopped:
  - the books balance: received = analysed + rejected + dropped;
  - the daemon stops (SIGTERM; or kill -9 once a snapshot holding everything is on disk)
    and starts again from its state directory;
  - the restarted daemon holds the same spans and gives the same top findings.
Prints one JSON line per cycle and a summary; exits 1 at the first check that fails.
"""
import argparse, json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--minutes", type=float, default=30)
ap.add_argument("--cycle", type=float, default=180, help="seconds of load per cycle")
ap.add_argument("--binary", default="target/release/chokepoint")
ap.add_argument("--rate", type=float, default=40, help="shop requests per second (gRPC)")
a = ap.parse_args()

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(root, a.binary)
work = tempfile.mkdtemp(prefix="chokepoint-soak-")
state = os.path.join(work, "state")
config = os.path.join(work, "c.toml")
with open(config, "w") as f:
    f.write(f"""[receivers]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[api]
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[pipeline]
trace_idle = "2s"
[analysis]
refresh = "1s"
[state]
dir = "{state}"
snapshot_interval = "5s"
""")


def fail(msg):
    print(json.dumps({"FAILED": msg}), flush=True)
    sys.exit(1)


class Daemon:
    def __init__(self):
        self.p = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.PIPE,
                                  stderr=open(os.path.join(work, "daemon.log"), "a"), text=True)
        line = self.p.stdout.readline()
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "api" not in fields:
            fail(f"daemon did not start: {line!r}")
        self.grpc, self.http, self.api = fields["otlp-grpc"], fields["otlp-http"], fields["api"]

    def get(self, path):
        with urllib.request.urlopen(self.api + path, timeout=30) as r:
            body = r.read().decode()
        return json.loads(body) if path != "/metrics" else body

    def metric(self, name):
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        fail(f"metric {name} missing")

    def settle(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.metric("chokepoint_spans_in_flight") == 0 and \
                    self.metric("chokepoint_pipeline_queue_depth") == 0:
                return
            time.sleep(0.5)
        fail("pipeline did not settle in 120 s")

    def spans(self):
        return self.get("/graph?window=1h")["spans"]

    def top(self):
        doc = self.get("/findings")
        return [(f["kind"], f["node"]) for f in doc["findings"][:3]]

    def rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
        return 0


def http_load(d, stop, counts):
    """OTLP/HTTP JSON from two services, with bad input mixed in."""
    rnd = random.Random(7)
    n = 0
    while not stop.is_set():
        n += 1
        now = time.time_ns()
        tid = os.urandom(16).hex()
        root_id, child_id = os.urandom(8).hex(), os.urandom(8).hex()
        dur = rnd.randrange(1_000_000, 30_000_000)
        spans = [
            ("soak-web", {"traceId": tid, "spanId": root_id, "name": "GET /page", "kind": 2,
                          "startTimeUnixNano": str(now - dur), "endTimeUnixNano": str(now)}),
            ("soak-web", {"traceId": tid, "spanId": child_id, "parentSpanId": root_id,
                          "name": "GET", "kind": 3, "startTimeUnixNano": str(now - dur + 1000),
                          "endTimeUnixNano": str(now - 1000),
                          "attributes": [{"key": "server.address",
                                          "value": {"stringValue": "soak-cache"}}]}),
        ]
        if n % 10 == 0:  # absurd times: rejected with a reason, the rest kept
            spans.append(("soak-web", {"traceId": tid, "spanId": os.urandom(8).hex(), "name": "bad",
                                       "kind": 1, "startTimeUnixNano": "1000",
                                       "endTimeUnixNano": str(2**64 - 1)}))
        body = json.dumps({"resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
             "scopeSpans": [{"spans": [s]}]} for svc, s in spans]}).encode()
        if n % 25 == 0:
            body = b'{"resourceSpans": [ {"scopeSpans": [ {"spans": [ {"traceId": 12'  # malformed
        req = urllib.request.Request(d.http_url, data=body, headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).read()
            counts["ok"] += 1
        except urllib.error.HTTPError as e:
            counts[str(e.code)] = counts.get(str(e.code), 0) + 1
        except OSError as e:
            counts["error"] = counts.get("error", 0) + 1
        time.sleep(0.05)


def wait_for(what, cond, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    fail(f"timed out waiting for {what}")


started = time.time()
d = Daemon()
cycle = 0
results = []
while time.time() - started < a.minutes * 60:
    cycle += 1
    d.http_url = f"http://{d.http}/v1/traces"
    stop, counts = threading.Event(), {"ok": 0}
    t = threading.Thread(target=http_load, args=(d, stop, counts), daemon=True)
    t.start()
    sim = subprocess.run([binary, "simulate", "--endpoint", f"http://{d.grpc}", "--scenario",
                          "single-db", "--rate", str(a.rate), "--traces", "100000000",
                          "--seed", str(cycle), "--duration", f"{int(a.cycle)}s"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop.set()
    t.join()
    if sim.returncode != 0:
        fail(f"simulate failed: {sim.stderr[-500:]}")
    d.settle()
    received = d.metric("chokepoint_spans_received_total")
    books = (d.metric("chokepoint_spans_analysed_total"), d.metric("chokepoint_spans_rejected_total"),
             d.metric("chokepoint_spans_dropped_total"))
    if received != sum(books):
        fail(f"cycle {cycle}: received {received} != analysed+rejected+dropped {books}")
    time.sleep(1.5)  # one refresh, so the findings include the last traces
    spans, top, rss = d.spans(), d.top(), d.rss_mb()
    how = "SIGTERM" if cycle % 2 else "kill -9"
    if how == "SIGTERM":
        d.p.send_signal(signal.SIGTERM)
        code = d.p.wait(timeout=60)
        if code != 0:
            fail(f"cycle {cycle}: exit {code} on SIGTERM")
    else:
        snap = os.path.join(state, "state.bin")
        before = os.path.getmtime(snap) if os.path.exists(snap) else 0
        wait_for("a snapshot after the load", lambda: os.path.getmtime(snap) > before, 30)
        time.sleep(0.5)  # the snapshot is written to a temporary file and renamed
        d.p.kill()
        d.p.wait()
    d = Daemon()
    wait_for("the restored spans", lambda: d.spans() == spans, 30)
    wait_for("the same top findings", lambda: d.top() == top, 30)
    r = {"cycle": cycle, "minute": round((time.time() - started) / 60, 1), "restart": how,
         "received": received, "analysed": books[0], "rejected": books[1], "dropped": books[2],
         "spans_kept": spans, "top": top, "rss_mb": rss, "http": counts}
    results.append(r)
    print(json.dumps(r), flush=True)

d.p.send_signal(signal.SIGTERM)
d.p.wait(timeout=60)
print(json.dumps({"summary": {"minutes": round((time.time() - started) / 60, 1), "cycles": cycle,
                              "restarts": cycle, "all_checks": "passed",
                              "max_rss_mb": max(r["rss_mb"] for r in results)}}), flush=True)
shutil.rmtree(work, ignore_errors=True)
