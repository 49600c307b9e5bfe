//! The cost of exporting the aggregates (issue 11): how many series an instance writes, what
//! encoding them costs (every view refresh) and what a remote-write of them costs (every
//! `export.remote_write_interval`), in CPU and bytes. Inputs: the simulated shop, and the
//! largest real file beside the checkout (`../shared/realdata`, skipped with a note when
//! absent). Series counts and sizes are printed before the timings.
//!
//! Run: `cargo bench --bench export`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use chokepoint::analyze::engine::{Engine, EngineConfig};
use chokepoint::analyze::graph::GraphAgg;
use chokepoint::model::problem::BatchReport;
use chokepoint::replay::load_files;
use chokepoint::scale::exchange::{encode, write_text};
use chokepoint::scale::remote_write::requests;
use chokepoint::simulate::{generate, Scenario, SimConfig};

fn shop() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    let cfg = SimConfig {
        scenario: Scenario::SlowPayment,
        traces: 5000,
        rate_per_s: 50.0,
        ..Default::default()
    };
    for req in generate(&cfg) {
        engine.ingest(&req.resource_spans, &mut BatchReport::default());
    }
    engine.finish();
    engine
}

/// Prints what one instance holding `engine`'s aggregates exports.
fn describe(what: &str, engine: &Engine, all: &GraphAgg) {
    let samples = encode(all, engine.nodes(), engine.interner());
    let mut text = String::new();
    write_text(&samples, &mut text);
    let bodies = requests(&samples, "bench", 0);
    let snappy: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{what}: {} traces, {} nodes, {} edges -> {} series; /metrics text {} KiB; \
         remote-write {} request(s), {} KiB snappy ({:.0} B/series)",
        all.traces,
        all.nodes.len(),
        all.edges.len(),
        samples.len(),
        text.len() / 1024,
        bodies.len(),
        snappy / 1024,
        snappy as f64 / samples.len().max(1) as f64
    );
}

fn bench(c: &mut Criterion) {
    let shop = shop();
    let all = shop.windows().all_time();
    describe("shop (slow-payment, 5000 traces)", &shop, &all);
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/realdata/nezha-onlineboutique-baseline.otlp.jsonl.gz");
    if real.exists() {
        let mut e = Engine::new(EngineConfig::default());
        load_files(&mut e, &[real], &mut ());
        let a = e.windows().all_time();
        describe(
            "nezha-onlineboutique-baseline (largest realdata file)",
            &e,
            &a,
        );
    } else {
        println!("NOT RUN: {} is missing", real.display());
    }
    let samples = encode(&all, shop.nodes(), shop.interner());
    let mut g = c.benchmark_group("export");
    g.sample_size(30);
    g.bench_function("encode/shop", |b| {
        b.iter(|| black_box(encode(&all, shop.nodes(), shop.interner())))
    });
    g.bench_function("metrics_text/shop", |b| {
        b.iter(|| {
            let mut t = String::new();
            write_text(&samples, &mut t);
            black_box(t)
        })
    });
    g.bench_function("remote_write_requests/shop", |b| {
        b.iter(|| black_box(requests(&samples, "bench", 0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
