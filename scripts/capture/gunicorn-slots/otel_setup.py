"""The OpenTelemetry SDK for the capture's processes: spans go to a framed OTLP file per
process (the Collector file exporter's proto framing, `FramedFileSpanExporter` of
`../flask-notes/otel_file.py`), in $OTEL_CAPTURE_DIR. The instance id comes from
$INSTANCE_ID when set (gunicorn's workers share their server's), else a fresh one.
"""

import atexit
import os
import sys
import uuid

# Appended, not prepended: this directory's app.py must win over flask-notes'.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "flask-notes"))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from otel_file import FramedFileSpanExporter  # noqa: E402


def setup(service_name):
    out_dir = os.environ.get("OTEL_CAPTURE_DIR", ".")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{service_name}-{os.getpid()}.otlp.pb")
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.instance.id": os.environ.get("INSTANCE_ID") or str(uuid.uuid4()),
            "service.version": "1.0.0",
            "deployment.environment": "capture",
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = FramedFileSpanExporter(path)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    trace.set_tracer_provider(provider)

    def _shutdown():
        provider.force_flush()
        provider.shutdown()
        print(f"[{service_name} pid={os.getpid()}] wrote {exporter.spans_written} spans", file=sys.stderr)

    atexit.register(_shutdown)
    return provider
