//! Analysis throughput: per-trace critical path and facts, the whole per-trace fold (graph +
//! facts), and scoring a window into findings. Inputs are the simulated shop's traces,
//! assembled once up front.
//!
//! Run: `cargo bench --bench findings`

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use chokepoint::analyze::critical_path::{critical_path, CriticalPathConfig, Segment};
use chokepoint::analyze::engine::{Engine, EngineConfig};
use chokepoint::analyze::facts::{extract, FactsAgg};
use chokepoint::analyze::graph::GraphAgg;
use chokepoint::analyze::node::NodeTable;
use chokepoint::analyze::tree::Trace;
use chokepoint::model::problem::BatchReport;
use chokepoint::model::Span;
use chokepoint::report::finding::Context;
use chokepoint::report::findings::compute;
use chokepoint::simulate::{generate, Scenario, SimConfig};

/// The shop's traces as assembled span lists, plus the engine that named them.
fn traces(scenario: Scenario, n: usize) -> (Vec<Vec<Span>>, Engine) {
    let mut engine = Engine::new(EngineConfig::default());
    let out: Arc<Mutex<Vec<Vec<Span>>>> = Arc::default();
    let sink = out.clone();
    engine.set_on_trace(Some(Box::new(move |t: &Trace, _: &[Segment]| {
        sink.lock().unwrap().push(t.spans.clone())
    })));
    let cfg = SimConfig {
        scenario,
        traces: n,
        rate_per_s: 200.0,
        ..Default::default()
    };
    for req in generate(&cfg) {
        engine.ingest(&req.resource_spans, &mut BatchReport::default());
    }
    engine.finish();
    engine.set_on_trace(None);
    let v = out.lock().unwrap().clone();
    (v, engine)
}

fn bench(c: &mut Criterion) {
    let (spans, mut engine) = traces(Scenario::SlowPayment, 2000);
    let built: Vec<Trace> = spans.iter().cloned().map(Trace::build).collect();
    let cfg = CriticalPathConfig::default();
    let mut g = c.benchmark_group("findings");
    g.throughput(Throughput::Elements(built.len() as u64));
    g.sample_size(20);
    g.bench_function("critical_path/shop_2000_traces", |b| {
        b.iter(|| {
            for t in &built {
                black_box(critical_path(t, &cfg));
            }
        })
    });
    g.bench_function("critical_path_and_facts/shop_2000_traces", |b| {
        let mut nodes = NodeTable::new(10_000);
        b.iter(|| {
            let mut agg = FactsAgg::default();
            for t in &built {
                let path = critical_path(t, &cfg);
                if let Some(f) = extract(t, &path, &mut nodes, engine.interner()) {
                    agg.add(&f);
                }
            }
            black_box(agg.traces)
        })
    });
    g.bench_function("build_graph_and_facts/shop_2000_traces", |b| {
        let mut nodes = NodeTable::new(10_000);
        b.iter(|| {
            let mut agg = GraphAgg::default();
            for s in &spans {
                let t = Trace::build(s.clone());
                agg.add_trace(&t, &critical_path(&t, &cfg), &mut nodes, engine.interner());
            }
            black_box(agg.traces)
        })
    });
    let window = engine.graph();
    let names = std::mem::take(engine.interner_mut());
    let ctx = Context {
        nodes: engine.nodes(),
        names: &names,
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("score_window/shop_2000_traces", |b| {
        b.iter(|| black_box(compute(&window, Some(&window), &ctx).findings.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
