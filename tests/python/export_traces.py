#!/usr/bin/env python3
"""Export a small multi-service trace set to an OTLP endpoint with the Python OTel SDK.

Each trace: py-frontend SERVER "GET /home" -> py-frontend CLIENT "GET" ->
py-catalog SERVER "GET /items" -> py-catalog CLIENT "SELECT catalog.items" (postgresql).
Exits non-zero if any export fails or any span is missing.
"""
import argparse
import sys

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

SERVICES = ("py-frontend", "py-catalog")
SPANS_PER_TRACE = 4


class CountingExporter(SpanExporter):
    """Delegates to a real exporter and records successes and failures."""

    def __init__(self, inner):
        self.inner, self.spans, self.failures = inner, 0, 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.spans += len(spans)
        else:
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def make_exporter(transport, endpoint, tls):
    """tls: None for plain text, else (ca_file, client_cert_file or None, client_key_file or None)."""
    if transport == "grpc":
        if tls is None:
            return GrpcExporter(endpoint=endpoint, insecure=True, compression=grpc.Compression.Gzip,
                                timeout=10)
        ca, cert, key = tls
        read = lambda f: open(f, "rb").read() if f else None
        creds = grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                             certificate_chain=read(cert))
        return GrpcExporter(endpoint=endpoint, insecure=False, credentials=creds,
                            compression=grpc.Compression.Gzip, timeout=10)
    if tls is None:
        return HttpExporter(endpoint=endpoint, compression=HttpCompression.Gzip, timeout=10)
    ca, cert, key = tls
    return HttpExporter(endpoint=endpoint, compression=HttpCompression.Gzip, timeout=10,
                        certificate_file=ca, client_certificate_file=cert, client_key_file=key)


def emit_trace(front, catalog, i):
    kind = trace.SpanKind
    with front.start_as_current_span("GET /home", kind=kind.SERVER, attributes={
            "http.request.method": "GET", "http.route": "/home", "url.path": "/home",
            "http.response.status_code": 200}):
        with front.start_as_current_span("GET", kind=kind.CLIENT, attributes={
                "http.request.method": "GET", "url.full": f"http://py-catalog:8080/items?page={i}",
                "server.address": "py-catalog", "server.port": 8080,
                "http.response.status_code": 200}) as client:
            # Explicit propagation: the catalog server span's parent is the frontend client span.
            with catalog.start_as_current_span("GET /items", kind=kind.SERVER,
                                               context=trace.set_span_in_context(client), attributes={
                    "http.request.method": "GET", "http.route": "/items", "url.path": "/items",
                    "http.response.status_code": 200}):
                with catalog.start_as_current_span("SELECT catalog.items", kind=kind.CLIENT, attributes={
                        "db.system.name": "postgresql", "db.system": "postgresql",
                        "db.namespace": "catalog", "db.operation.name": "SELECT",
                        "db.collection.name": "items", "server.address": "pg-1", "server.port": 5432}):
                    pass


def export_via(transport, endpoint, n_traces, tls):
    exporters, providers = {}, {}
    for svc in SERVICES:
        exporters[svc] = CountingExporter(make_exporter(transport, endpoint, tls))
        providers[svc] = TracerProvider(resource=Resource.create({
            "service.name": svc, "service.instance.id": f"{svc}-{transport}-1"}))
        providers[svc].add_span_processor(BatchSpanProcessor(
            exporters[svc], max_queue_size=max(2048, 2 * n_traces + 16)))
    front = providers["py-frontend"].get_tracer("export_traces")
    catalog = providers["py-catalog"].get_tracer("export_traces")
    for i in range(n_traces):
        emit_trace(front, catalog, i)
    ok = True
    for svc, provider in providers.items():
        if not provider.force_flush(30000):
            print(f"{transport}: force_flush timed out for {svc}", file=sys.stderr)
            ok = False
        provider.shutdown()
    spans = sum(e.spans for e in exporters.values())
    failures = sum(e.failures for e in exporters.values())
    if failures or spans != n_traces * SPANS_PER_TRACE:
        print(f"{transport}: {failures} failed exports, {spans}/{n_traces * SPANS_PER_TRACE} spans "
              f"exported to {endpoint}", file=sys.stderr)
        ok = False
    return ok, spans


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-endpoint", help="OTLP gRPC endpoint, e.g. http://127.0.0.1:4317")
    parser.add_argument("--http-endpoint", help="OTLP/HTTP URL, e.g. http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--traces", type=int, default=20, help="traces per endpoint (default 20)")
    parser.add_argument("--ca-file", help="TLS: PEM CA that signed the server's certificate")
    parser.add_argument("--client-cert", help="mutual TLS: this client's PEM certificate")
    parser.add_argument("--client-key", help="mutual TLS: this client's PEM key")
    args = parser.parse_args()
    tls = (args.ca_file, args.client_cert, args.client_key) if args.ca_file else None
    targets = [(t, e) for t, e in (("grpc", args.grpc_endpoint), ("http", args.http_endpoint)) if e]
    if not targets:
        parser.error("give --grpc-endpoint and/or --http-endpoint")

    all_ok, total_spans = True, 0
    for transport, endpoint in targets:
        ok, spans = export_via(transport, endpoint, args.traces, tls)
        all_ok, total_spans = all_ok and ok, total_spans + spans
    if not all_ok:
        sys.exit(1)
    print(f"exported {args.traces * len(targets)} traces ({total_spans} spans) "
          f"via {','.join(t for t, _ in targets)}")


if __name__ == "__main__":
    main()
