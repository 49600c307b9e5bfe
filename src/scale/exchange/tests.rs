use std::collections::BTreeMap;

use super::decode::increases;
use super::*;
use crate::analyze::engine::{Completion, Engine, EngineConfig};
use crate::analyze::graph::GraphAgg;
use crate::analyze::identity;
use crate::analyze::node::NodeTable;
use crate::model::problem::BatchReport;
use crate::model::Interner;
use crate::report::finding::{Context, Report};
use crate::report::findings;
use crate::simulate::{generate, Scenario, SimConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// A series' name and labels.
type Key = (String, Vec<(String, String)>);

/// A store's view of one instance: each series' points, by name and labels.
#[derive(Default)]
struct Store {
    series: BTreeMap<Key, Vec<(f64, f64)>>,
}

impl Store {
    fn scrape(&mut self, t: f64, samples: Vec<Sample>) {
        for s in samples {
            let labels = s
                .labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            self.series
                .entry((s.name.to_owned(), labels))
                .or_default()
                .push((t, s.value));
        }
    }

    fn all(&self) -> Vec<Series> {
        self.series
            .iter()
            .map(|((name, labels), points)| Series {
                name: name.clone(),
                labels: labels.iter().cloned().collect(),
                points: points.clone(),
            })
            .collect()
    }
}

fn end_s(req: &ExportTraceServiceRequest) -> f64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.end_time_unix_nano)
        .max()
        .unwrap_or(0) as f64
        / 1e9
}

fn shard_of(req: &ExportTraceServiceRequest, shards: usize) -> usize {
    let id = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.clone())
        .next()
        .unwrap_or_default();
    (crate::model::stable_hash(&id) % shards as u64) as usize
}

/// Feeds a scenario to `shards` engines by trace id, as the Collector's load-balancing
/// exporter routes it, scraping each every 10 s of span time; and to one engine fed
/// everything. Returns that engine and each shard's store.
fn run(scenario: Scenario, traces: usize, shards: usize) -> (Engine, Vec<Store>) {
    let cfg = SimConfig {
        scenario,
        traces,
        rate_per_s: 20.0,
        ..Default::default()
    };
    // Scraped while fed, as a live daemon is: traces complete when idle, not at the end.
    let live = || EngineConfig {
        completion: Completion::Idle,
        ..Default::default()
    };
    let mut whole = Engine::new(live());
    let mut parts: Vec<Engine> = (0..shards).map(|_| Engine::new(live())).collect();
    let mut stores: Vec<Store> = (0..shards).map(|_| Store::default()).collect();
    let mut next_scrape: Option<f64> = None;
    let scrape = |parts: &mut Vec<Engine>, stores: &mut Vec<Store>, t: f64| {
        for (e, st) in parts.iter_mut().zip(stores.iter_mut()) {
            let agg = e.windows().merged();
            st.scrape(t, encode(&agg, e.nodes(), e.interner()));
        }
    };
    for req in generate(&cfg) {
        let t = end_s(&req);
        let at = *next_scrape.get_or_insert((t / 10.0).floor() * 10.0);
        if t >= at {
            scrape(&mut parts, &mut stores, at);
            next_scrape = Some(at + 10.0);
        }
        whole.ingest(&req.resource_spans, &mut BatchReport::default());
        let i = shard_of(&req, shards);
        parts[i].ingest(&req.resource_spans, &mut BatchReport::default());
    }
    whole.finish();
    for e in &mut parts {
        e.finish();
    }
    let last = next_scrape.unwrap_or(0.0);
    scrape(&mut parts, &mut stores, last);
    scrape(&mut parts, &mut stores, last + 10.0);
    (whole, stores)
}

fn findings_of(agg: &GraphAgg, nodes: &mut NodeTable, names: &mut Interner) -> Report {
    let shown = identity::resolve(&[agg], nodes, names).apply(agg);
    findings::compute(&shown, None, &Context { nodes, names })
}

/// The findings of the engine fed everything, as its API shows them.
fn findings_of_engine(e: &mut Engine) -> Report {
    let shown = e.graph();
    findings::compute(
        &shown,
        None,
        &Context {
            nodes: e.nodes(),
            names: e.interner(),
        },
    )
}

fn summary(r: &Report) -> Vec<(String, String, f64)> {
    let mut v: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.id(), f.severity.as_str().to_owned(), f.score))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Same kind, node and severity; scores within 5%.
fn assert_same(a: &Report, b: &Report) {
    let (a, b) = (summary(a), summary(b));
    let ids = |v: &[(String, String, f64)]| {
        v.iter()
            .map(|x| (x.0.clone(), x.1.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b), "\nwhole:  {a:?}\nglobal: {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.2 - y.2).abs() <= 0.05 * x.2.max(0.05),
            "{}: score {} vs {}",
            x.0,
            x.2,
            y.2
        );
    }
}

fn global(stores: &[Store]) -> (Decoded, NodeTable, Interner) {
    let series: Vec<Series> = stores.iter().flat_map(Store::all).collect();
    let mut nodes = NodeTable::new(10_000);
    let mut names = Interner::default();
    let d = decode(&series, 0.0, f64::MAX, &mut nodes, &mut names);
    (d, nodes, names)
}

#[test]
fn one_instance_read_back_from_its_series_gives_the_same_findings() {
    let (mut whole, stores) = run(Scenario::SlowPayment, 600, 1);
    let raw = whole.windows().merged();
    let want = findings_of_engine(&mut whole);
    let (d, mut gn, mut gi) = global(&stores);
    assert_eq!(d.skipped, 0);
    assert_eq!(d.agg.traces, raw.traces);
    assert_eq!(d.agg.spans, raw.spans);
    assert_eq!(d.agg.facts.traces, raw.facts.traces);
    assert_eq!(d.agg.edges.len(), raw.edges.len());
    let got = findings_of(&d.agg, &mut gn, &mut gi);
    assert!(!want.findings.is_empty());
    assert_same(&want, &got);
}

#[test]
fn two_instances_sharded_by_trace_id_sum_to_the_findings_of_one_fed_everything() {
    for scenario in [
        Scenario::SlowPayment,
        Scenario::SingleDb,
        Scenario::EmailBacklog,
        // Failures pinned on the database their exceptions name, with when they happened.
        Scenario::Lab(crate::simulate::Lab::RefusedConnections),
    ] {
        let (mut whole, stores) = run(scenario, 600, 2);
        let raw = whole.windows().merged();
        let want = findings_of_engine(&mut whole);
        let (d, mut gn, mut gi) = global(&stores);
        assert_eq!(d.agg.traces, raw.traces, "{scenario:?}");
        assert_eq!(
            d.agg.facts.shapes.len(),
            raw.facts.shapes.len(),
            "{scenario:?}: shapes agree across instances"
        );
        let got = findings_of(&d.agg, &mut gn, &mut gi);
        assert!(
            !want.findings.is_empty(),
            "{scenario:?}: {:?}",
            summary(&want)
        );
        eprintln!("{scenario:?}: {:?}", summary(&got));
        assert_same(&want, &got);
        // When failed requests began and ended travels as the times of the counter's
        // increases: by write time, so no earlier than the span times and later by the
        // scrape interval and the traces' assembly.
        for (n, a) in &raw.facts.fail {
            let (Some((first, last)), Some(d)) = (a.failed_between, d.agg.facts.fail.get(n)) else {
                continue;
            };
            let (gf, gl) = d.failed_between.expect("decoded with its times");
            let late = 30_000_000_000;
            assert!(
                gf + 1_000_000_000 >= first && gf <= last + late && gl >= gf && gl <= last + late,
                "{scenario:?}: {a:?} vs {d:?}"
            );
        }
    }
}

#[test]
fn a_window_is_the_increase_over_it_and_a_restart_is_a_reset() {
    let pts = [(0.0, 5.0), (10.0, 8.0), (20.0, 2.0), (30.0, 4.0)];
    let (inc, steps) = increases(&pts, 0.0, 30.0);
    assert_eq!(inc, 3.0 + 2.0 + 2.0);
    assert_eq!(steps, vec![(10.0, 3.0), (20.0, 2.0), (30.0, 2.0)]);
    assert_eq!(increases(&pts, 10.0, 20.0).0, 2.0);
}

#[test]
fn text_exposition_names_every_series_it_writes() {
    let (_, stores) = run(Scenario::SingleKafka, 100, 1);
    let samples: Vec<Sample> = stores[0]
        .all()
        .iter()
        .filter_map(|s| {
            let name = METRICS.iter().find(|m| m.0 == s.name)?.0;
            Some(Sample {
                name,
                labels: vec![],
                value: 1.0,
            })
        })
        .collect();
    let n = stores[0].all().len();
    assert_eq!(
        samples.len(),
        n,
        "every encoded name is described in METRICS"
    );
    let mut out = String::new();
    write_text(&samples, &mut out);
    assert!(out.contains("# TYPE chokepoint_edge_calls_total counter"));
}
