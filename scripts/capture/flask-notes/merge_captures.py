"""Merge per-process framed OTLP protobuf files into one capture, in the order
a Collector would have received the batches.

Each input file holds one process's export requests in export order
(`len(msg).to_bytes(4, 'big') + msg`). Plain concatenation is a valid capture
too, but then a 90 s run of one process comes before the next process's spans,
and a reader that completes a trace after some seconds of span time without a
new span (chokepoint's --trace-idle, 10 s by default) splits every trace that
crosses processes. So the messages are k-way merged by their latest span end
time (a BatchSpanProcessor exports a batch shortly after its last span ends),
keeping each file's own order. The messages are copied byte for byte.

Usage: python merge_captures.py OUT IN [IN...]
"""

import heapq
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)


def frames(path):
    raw = open(path, "rb").read()
    off = 0
    while off < len(raw):
        n = int.from_bytes(raw[off : off + 4], "big")
        body = raw[off + 4 : off + 4 + n]
        if len(body) != n:
            raise SystemExit(f"{path}: truncated frame at byte {off}")
        off += 4 + n
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(body)
        end = max(
            sp.end_time_unix_nano
            for rs in msg.resource_spans
            for ss in rs.scope_spans
            for sp in ss.spans
        )
        yield end, raw[off - 4 - n : off]


def main():
    out, inputs = sys.argv[1], sys.argv[2:]
    # a file's messages are already in export order; make the key monotonic
    # within a file so the merge never reorders one process's exports
    def keyed(i, path):
        last = 0
        for seq, (end, frame) in enumerate(frames(path)):
            last = max(last, end)
            yield last, i, seq, frame

    n = 0
    with open(out, "wb") as f:
        for _, _, _, frame in heapq.merge(*(keyed(i, p) for i, p in enumerate(inputs))):
            f.write(frame)
            n += 1
    print(f"merged {n} messages from {len(inputs)} files into {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
