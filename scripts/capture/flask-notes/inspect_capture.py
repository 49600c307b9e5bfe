"""Summarize a framed OTLP protobuf capture (gzip or not): messages, spans,
traces, and per (service, span kind, span name) the attribute keys with one
example value; the trace shapes by count.

Usage: python inspect_capture.py FILE
"""

import collections
import gzip
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KIND = {v: k.replace("SPAN_KIND_", "") for k, v in Span.SpanKind.items()}


def any_value(v):
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


def read(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    off = 0
    while off < len(raw):
        n = int.from_bytes(raw[off : off + 4], "big")
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(raw[off + 4 : off + 4 + n])
        off += 4 + n
        yield msg


def main():
    path = sys.argv[1]
    msgs = spans = 0
    traces = collections.defaultdict(list)
    groups = collections.OrderedDict()
    resources = set()
    scopes = set()
    status = collections.Counter()
    for msg in read(path):
        msgs += 1
        for rs in msg.resource_spans:
            res = {a.key: any_value(a.value) for a in rs.resource.attributes}
            resources.add(tuple(sorted(res.items())))
            svc = res.get("service.name")
            for ss in rs.scope_spans:
                scopes.add((svc, ss.scope.name, ss.scope.version))
                for sp in ss.spans:
                    spans += 1
                    kind = KIND[sp.kind]
                    traces[sp.trace_id].append((svc, kind, sp.name, sp.span_id, sp.parent_span_id, sp.start_time_unix_nano))
                    status[(svc, kind, Span.SpanKind.Name(sp.kind), sp.status.code)] += 1
                    g = groups.setdefault((svc, kind, sp.name), {"n": 0, "attrs": {}})
                    g["n"] += 1
                    for a in sp.attributes:
                        g["attrs"].setdefault(a.key, any_value(a.value))
    print(f"{path}: {msgs} messages, {spans} spans, {len(traces)} traces")
    print("\nRESOURCES")
    for r in sorted(resources):
        print("  ", dict(r))
    print("\nSCOPES")
    for s in sorted(scopes):
        print("  ", s)
    print("\nSTATUS CODES (service, kind, code): count")
    for (svc, kind, _, code), n in sorted(status.items()):
        print(f"   {svc} {kind} status={code}: {n}")
    print("\nSPAN GROUPS (service / kind / name: count, attributes with one example)")
    for (svc, kind, name), g in groups.items():
        print(f"  {svc} / {kind} / {name!r}: {g['n']}")
        for k, v in g["attrs"].items():
            print(f"      {k} = {v!r}")
    # trace shapes: nested (service kind name) with children in start order
    shapes = collections.Counter()
    for tid, sps in traces.items():
        by_parent = collections.defaultdict(list)
        ids = {s[3] for s in sps}
        for s in sorted(sps, key=lambda s: s[5]):
            by_parent[s[4] if s[4] in ids else b"root"].append(s)

        def shape(s, depth):
            lines = ["  " * depth + f"{s[0]} {s[1]} {s[2]}"]
            for c in by_parent.get(s[3], []):
                lines += shape(c, depth + 1)
            return lines

        out = []
        for r in by_parent[b"root"]:
            out += shape(r, 0)
        shapes["\n".join(out)] += 1
    print(f"\nTRACE SHAPES ({len(shapes)} distinct)")
    for sh, n in shapes.most_common(15):
        print(f"--- {n} traces")
        print(sh)


if __name__ == "__main__":
    main()
