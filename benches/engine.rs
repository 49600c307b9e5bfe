//! Engine throughput: OTLP protobuf bytes → decode → normalize → assemble → call graph, in
//! spans per second, over the simulated shop. Single-threaded: the figure is per core.
//!
//! Run: `cargo bench --bench engine`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use chokepoint::engine::{Engine, EngineConfig};
use chokepoint::ingest::BatchReport;
use chokepoint::simulate::{generate, Scenario, SimConfig};

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
        spans += req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len() as u64)
            .sum::<u64>();
        batches.push(req.encode_to_vec());
    }
    (batches, spans)
}

fn run(batches: &[Vec<u8>]) -> u64 {
    let mut engine = Engine::new(EngineConfig::default());
    for b in batches {
        let Ok(req) = ExportTraceServiceRequest::decode(b.as_slice()) else {
            unreachable!("bench input is valid")
        };
        let mut report = BatchReport::default();
        engine.ingest(&req.resource_spans, &mut report);
    }
    engine.finish();
    engine.graph().traces
}

fn bench(c: &mut Criterion) {
    let (batches, spans) = shop_batches(Scenario::Healthy, 2000);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(spans));
    g.sample_size(20);
    g.bench_function("protobuf_to_graph/shop_healthy_2000_traces", |b| {
        b.iter(|| black_box(run(&batches)))
    });
    g.bench_function("decode_only/shop_healthy_2000_traces", |b| {
        b.iter(|| {
            for batch in &batches {
                black_box(ExportTraceServiceRequest::decode(batch.as_slice()).ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
