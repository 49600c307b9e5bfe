"""Polls a chokepoint daemon's /findings while a capture runs live, and prints
one line per poll: the time, the SPOF finding of NODE (severity, active,
failed requests, since, until) and every active finding's id. For the live
runs of README.md ("What chokepoint said live").

Usage: python watch_findings.py API_URL NODE SECONDS [INTERVAL]
"""

import json
import sys
import time
import urllib.request

api, node, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
end = time.time() + seconds
while time.time() < end:
    try:
        with urllib.request.urlopen(f"{api}/findings", timeout=5) as r:
            doc = json.load(r)
    except OSError as e:
        print(time.strftime("%H:%M:%S"), "no answer:", e, flush=True)
        time.sleep(interval)
        continue
    f = next((x for x in doc["findings"] if x["id"] == f"spof/{node}"), None)
    active = [x["id"] for x in doc["findings"] if x["active"]]
    if f is None:
        state = "no finding"
    else:
        state = (
            f"{f['severity']} active={f['active']} failed={f.get('failed_requests')} "
            f"since={f.get('since')} until={f.get('until')}"
        )
    print(time.strftime("%H:%M:%S"), f"requests={doc['requests']}", state, "active:", active, flush=True)
    time.sleep(interval)
