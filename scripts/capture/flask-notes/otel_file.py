"""OpenTelemetry SDK setup shared by notes-web, notes-worker and loadgen.

Spans are not sent over the network: a SpanExporter of our own encodes each
batch of finished spans with the official OTLP encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`, which
returns an `ExportTraceServiceRequest`) and appends it to a per-process file
with the OpenTelemetry Collector file exporter's proto framing: a 4-byte
big-endian length, then the serialized message. Framed files can simply be
concatenated.
"""

import atexit
import os
import signal
import sys
import threading
import uuid

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


class FramedFileSpanExporter(SpanExporter):
    """Appends `len(msg).to_bytes(4, 'big') + msg` per export call."""

    def __init__(self, path):
        self._path = path
        self._lock = threading.Lock()
        self._file = open(path, "ab")
        self.spans_written = 0

    def export(self, spans):
        if not spans:
            return SpanExportResult.SUCCESS
        data = encode_spans(spans).SerializeToString()
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(len(data).to_bytes(4, "big") + data)
            self._file.flush()
            self.spans_written += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def force_flush(self, timeout_millis=30000):
        return True


def setup(service_name):
    """Install a TracerProvider writing to $OTEL_CAPTURE_DIR/<name>-<pid>.otlp.pb
    (and exporting to $LIVE_OTLP_ENDPOINT over OTLP/HTTP, when set).

    Returns the provider; it is shut down (flushing the batch processor) at
    exit and on SIGTERM/SIGINT.
    """
    out_dir = os.environ.get("OTEL_CAPTURE_DIR", ".")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{service_name}-{os.getpid()}.otlp.pb")
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.instance.id": str(uuid.uuid4()),
            "service.version": "1.0.0",
            "deployment.environment": os.environ.get("NOTES_ENV", "capture"),
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = FramedFileSpanExporter(path)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # Live as well: with LIVE_OTLP_ENDPOINT set (e.g. http://127.0.0.1:4318/v1/traces), the
    # same spans also go over OTLP/HTTP to a running chokepoint.
    live = os.environ.get("LIVE_OTLP_ENDPOINT")
    if live:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=live)))
    trace.set_tracer_provider(provider)

    done = threading.Event()

    def _shutdown():
        if done.is_set():
            return
        done.set()
        provider.force_flush()
        provider.shutdown()
        print(
            f"[{service_name} pid={os.getpid()}] wrote {exporter.spans_written} spans to {path}",
            file=sys.stderr,
            flush=True,
        )

    atexit.register(_shutdown)

    def _on_signal(signum, _frame):
        # SystemExit unwinds the main thread (the server loop / worker loop);
        # atexit then flushes the spans.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return provider
