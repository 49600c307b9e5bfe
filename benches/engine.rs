//! The pipeline stage by stage, in spans per second on one thread, over the simulated shop
//! sent as the Collector would batch it (about 20 traces a request), each beside plain prost
//! decoding of the same bytes measured in the same run (`stages/prost_decode`), so every
//! figure can be read as a ratio to it:
//!
//! - `wire_frame`: the framing check a receiver does before taking a request;
//! - `wire_normalize`: the borrowing reader and the normalizer, bytes to model spans (what a
//!   receiver thread does per request);
//! - `assemble`: model spans into traces;
//! - `analyze`: completed traces to aggregates (tree, critical path, facts, histograms);
//! - `protobuf_to_graph`: all of the above in one engine on one thread, as `replay` would do
//!   it without its reading thread;
//! - `score`: a window's aggregates to findings, per span the window holds.
//!
//! Run: `cargo bench --bench engine`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use chokepoint::analyze::assemble::{Assembler, AssemblerConfig};
use chokepoint::analyze::engine::{Engine, EngineConfig};
use chokepoint::ingest::batch::{Batch, WireBatch};
use chokepoint::ingest::Normalizer;
use chokepoint::model::problem::BatchReport;
use chokepoint::model::Span;
use chokepoint::report::finding::Context;
use chokepoint::report::findings::compute;
use chokepoint::simulate::{generate, Scenario, SimConfig};

/// The daemon's allocator, so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shop traffic as the Collector would send it: requests of about 20 traces each.
fn shop_batches(scenario: Scenario, traces: usize) -> (Vec<Vec<u8>>, u64) {
    let cfg = SimConfig {
        scenario,
        traces,
        rate_per_s: 200.0,
        ..Default::default()
    };
    let mut batches = Vec::new();
    let mut spans = 0u64;
    let all: Vec<ExportTraceServiceRequest> = generate(&cfg).collect();
    for chunk in all.chunks(20) {
        let req = ExportTraceServiceRequest {
            resource_spans: chunk
                .iter()
                .flat_map(|r| r.resource_spans.clone())
                .collect(),
        };
        spans += chokepoint::ingest::batch::span_count(&req.resource_spans);
        batches.push(req.encode_to_vec());
    }
    (batches, spans)
}

fn wire(b: &[u8]) -> WireBatch {
    let Ok(w) = WireBatch::new(b.to_vec().into()) else {
        unreachable!("bench input is valid")
    };
    w
}

fn bench(c: &mut Criterion) {
    let (batches, spans) = shop_batches(Scenario::Healthy, 2000);
    let wires: Vec<WireBatch> = batches.iter().map(|b| wire(b)).collect();
    // Every stage's input, prepared once: normalized spans, and the traces they make.
    let mut normalizer = Normalizer::default();
    let mut normalized: Vec<Span> = Vec::new();
    for w in &wires {
        normalizer.normalize_wire(w, &mut normalized, &mut BatchReport::default());
    }
    let mut traces: Vec<Vec<Span>> = Vec::new();
    let mut asm = Assembler::new(AssemblerConfig::default());
    for s in normalized.iter().cloned() {
        asm.push(s, 0, &mut |t| traces.push(t));
    }
    asm.flush(&mut |t| traces.push(t));

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(spans));
    g.sample_size(20);
    g.bench_function("prost_decode/shop_healthy_2000_traces", |b| {
        b.iter(|| {
            for batch in &batches {
                black_box(ExportTraceServiceRequest::decode(batch.as_slice()).ok());
            }
        })
    });
    g.bench_function("wire_frame/shop_healthy_2000_traces", |b| {
        b.iter(|| {
            for batch in &batches {
                black_box(chokepoint::ingest::otlp_wire::count_spans(batch).ok());
            }
        })
    });
    g.bench_function("wire_normalize/shop_healthy_2000_traces", |b| {
        let mut n = Normalizer::default();
        let mut out = Vec::with_capacity(spans as usize);
        b.iter(|| {
            out.clear();
            for w in &wires {
                n.normalize_wire(w, &mut out, &mut BatchReport::default());
            }
            black_box(out.len())
        })
    });
    g.bench_function("assemble/shop_healthy_2000_traces", |b| {
        b.iter_batched(
            || normalized.clone(),
            |spans| {
                let mut asm = Assembler::new(AssemblerConfig::default());
                let mut done = 0;
                for s in spans {
                    asm.push(s, 0, &mut |t| done += t.len());
                }
                asm.flush(&mut |t| done += t.len());
                done
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("analyze/shop_healthy_2000_traces", |b| {
        b.iter_batched(
            || (traces.clone(), Engine::new(EngineConfig::default())),
            |(traces, mut e)| {
                for t in traces {
                    e.complete_trace(t, &normalizer.interner);
                }
                e.windows().spans_added
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("protobuf_to_graph/shop_healthy_2000_traces", |b| {
        b.iter(|| {
            let mut e = Engine::new(EngineConfig::default());
            for w in &wires {
                e.ingest_batch(&Batch::Wire(w.clone()), &mut BatchReport::default());
            }
            e.finish();
            black_box(e.graph().traces)
        })
    });
    let mut e = Engine::new(EngineConfig::default());
    for w in &wires {
        e.ingest_batch(&Batch::Wire(w.clone()), &mut BatchReport::default());
    }
    e.finish();
    let window = e.graph();
    let ctx = Context {
        nodes: e.nodes(),
        names: e.interner(),
    };
    g.bench_function("score/shop_healthy_2000_traces", |b| {
        b.iter(|| black_box(compute(&window, Some(&window), &ctx).findings.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
