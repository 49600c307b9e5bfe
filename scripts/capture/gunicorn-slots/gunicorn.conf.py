"""gunicorn settings for the capture: WORKERS sync workers (default 2) on PORT.

Every worker is one of the server's slots: the OpenTelemetry SDK is set up in each
worker after the fork (a TracerProvider does not survive one), all with the same
`service.instance.id`, so the server is one instance with WORKERS slots.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

bind = f"127.0.0.1:{os.environ.get('PORT', '5080')}"
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "sync"
backlog = 2048
timeout = 120
accesslog = None


def post_fork(server, worker):
    import otel_setup

    otel_setup.setup("quotes-web")
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    import app as quotes

    FlaskInstrumentor().instrument_app(quotes.app)


def worker_exit(server, worker):
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.force_flush()
        provider.shutdown()
