//! Real trace files from public projects (../shared/realdata, beside the checkout in CI).
//! Each test asserts what the folder's README says a careful reader of that file finds.

use chokepoint::api::dto::GraphDoc;

use super::{findings_of, graph_of, realdata};

/// Reads a real file and insists it was read cleanly: no file failures, no rejected spans.
fn read_clean(name: &str) -> Option<GraphDoc> {
    let p = realdata(name)?;
    let (doc, load) = graph_of(&[p]);
    assert!(load.failed.is_empty(), "{name}: {:?}", load.failed);
    assert_eq!(load.spans_rejected, 0, "{name}: {:?}", load.problems);
    assert!(doc.traces > 0, "{name}: no traces");
    Some(doc)
}

fn instances(doc: &GraphDoc, node: &str) -> Option<usize> {
    doc.node(node)
        .unwrap_or_else(|| panic!("node {node} missing"))
        .instances
}

#[test]
fn smartthings_install_shared_spans_keep_their_edges() {
    let Some(doc) = read_clean("zipkin-smartthings-mobile-web-install.json") else {
        return;
    };
    // 1041 spans, 84 of which are annotation-only pieces of a shared span: merged, not lost.
    assert_eq!(doc.spans, 1041 - 84);
    let auth = doc.node("auth").unwrap();
    assert_eq!(auth.callers, 8, "auth's fan-in");
    assert_eq!(
        auth.instances,
        Some(52),
        "auth is a hub on 52 addresses, not a SPOF"
    );
    for single in ["bouncer", "paperboy", "dove", "oreck", "alice"] {
        assert_eq!(instances(&doc, single), Some(1), "{single}");
    }
    // 290 ids are shared by a client and a server half: every one is an RPC edge.
    let sync_calls: u64 = doc
        .edges
        .iter()
        .filter(|e| e.connection_type.is_empty())
        .map(|e| e.calls)
        .sum();
    assert!(sync_calls >= 290, "sync calls {sync_calls}");
    // Database client spans naming their own service are not self-loops…
    assert!(doc.edge("auth", "auth").is_none());
    // …but the Cassandra cluster behind auth, on 10+ hosts.
    let cassandra = doc.node("auth (cassandra)").unwrap();
    assert_eq!(cassandra.node_type, "database");
    assert!(cassandra.instances.unwrap() >= 10);
    // bookie's SQL database has no address: redundancy unknown, never "1".
    let sql = doc.edge("bookie", "sql").expect("bookie -> sql");
    assert_eq!(sql.connection_type, "database");
    assert_eq!(instances(&doc, "sql"), None);
    // The 4.35 s dove span is there (what makes it async is the Findings issue's business).
    let dove = doc.node("dove").unwrap();
    assert!(dove.latency_ms.as_ref().unwrap().p99 > 4000.0);
}

#[test]
fn smartthings_oauth_datamgmt_orchestrates() {
    let Some(doc) = read_clean("zipkin-smartthings-oauth-authorization.json") else {
        return;
    };
    assert_eq!(doc.spans, 172);
    let datamgmt = doc.node("datamgmt").unwrap();
    assert!(
        datamgmt.callees >= 4,
        "datamgmt calls {} services",
        datamgmt.callees
    );
    for single in ["bouncer", "paperboy", "dove"] {
        assert_eq!(instances(&doc, single), Some(1), "{single}");
    }
}

#[test]
fn yelp_without_addresses_has_unknown_redundancy() {
    let Some(doc) = read_clean("zipkin-yelp.json") else {
        return;
    };
    assert_eq!(doc.spans, 16);
    for n in &doc.nodes {
        assert_eq!(n.instances, None, "{} must be unknown, not 1", n.name);
    }
    assert!(
        doc.node("unknown").is_some(),
        "a service literally named unknown"
    );
}

#[test]
fn kafka_producer_consumer_edges_and_empty_error_tags() {
    let Some(doc) = read_clean("zipkin-messaging-kafka.json") else {
        return;
    };
    assert_eq!(doc.spans, 28);
    // servicea reaches serviceb only through the broker.
    let produce = doc.edge("servicea", "kafka").expect("servicea -> kafka");
    assert_eq!(produce.connection_type, "messaging_system");
    let consume = doc.edge("kafka", "serviceb").expect("kafka -> serviceb");
    assert_eq!(consume.connection_type, "messaging_system");
    assert!(
        consume.queue_ms.is_some(),
        "queue delay producer end -> consumer start"
    );
    assert_eq!(doc.node("kafka").unwrap().node_type, "messaging");
    // serviceb's three on-message spans carry `error` tags, one of them empty: all errors.
    assert_eq!(doc.node("serviceb").unwrap().span_errors, 3);
}

#[test]
fn rabbitmq_fragments_are_reported_not_reattached() {
    let Some(doc) = read_clean("zipkin-messaging-rabbitmq-fragmented.json") else {
        return;
    };
    assert_eq!(doc.spans, 11);
    assert_eq!(doc.fragmented_traces, 1);
    // The missing transfer-service server span leaves mobile-gateway without an edge to it:
    // nothing is attached to the wrong parent.
    assert!(doc.edge("mobile-gateway", "transfer-service").is_none());
    // The slow work (send-confirm-transfer, 2.56 s) is transfer-service's own.
    let transfer = doc.node("transfer-service").unwrap();
    assert!(transfer.self_time_ms.as_ref().unwrap().p99 >= 2500.0);
    assert!(doc.edge("transfer-service", "rabbitmq").is_some());
    assert!(doc.edge("rabbitmq", "notification-service").is_some());
}

#[test]
fn deathstarbench_twelve_services_without_kinds() {
    let Some(doc) = read_clean("jaeger-deathstarbench-socialnetwork.json.gz") else {
        return;
    };
    assert_eq!(doc.traces, 20);
    assert_eq!(doc.spans, 660);
    assert_eq!(doc.nodes.len(), 12);
    assert!(doc.nodes.iter().all(|n| n.node_type == "service"));
    // No span.kind anywhere: edges come from parent/child across services.
    let compose = doc.node("compose-post-service").unwrap();
    assert_eq!(compose.callees, 7);
    assert!(doc
        .edge("nginx-web-server", "compose-post-service")
        .is_some());
    let self_mean = |n: &str| doc.node(n).unwrap().self_time_ms.as_ref().unwrap().mean;
    let top = doc
        .nodes
        .iter()
        .max_by(|a, b| self_mean(&a.name).total_cmp(&self_mean(&b.name)))
        .unwrap();
    assert_eq!(top.name, "compose-post-service");
}

#[test]
fn tempo_bookinfo_base64_ids_and_envoy_node_ids() {
    let Some(doc) = read_clean("tempo-kiali-bookinfo.json") else {
        return;
    };
    assert_eq!((doc.traces, doc.spans), (1, 8));
    assert_eq!(doc.nodes.len(), 5);
    for (from, to) in [
        ("istio-ingressgateway.istio-system", "productpage.bookinfo"),
        ("productpage.bookinfo", "details.bookinfo"),
        ("productpage.bookinfo", "reviews.bookinfo"),
        ("reviews.bookinfo", "ratings.bookinfo"),
    ] {
        assert!(doc.edge(from, to).is_some(), "{from} -> {to}");
    }
    // Instance identity only in the span attribute node_id.
    assert!(doc.nodes.iter().all(|n| n.instances == Some(1)));
    let pp = doc.node("productpage.bookinfo").unwrap();
    let own = pp.self_time_ms.as_ref().unwrap().p50;
    assert!(
        (6.5..=7.5).contains(&own),
        "productpage self {own} ms of 11.4"
    );
}

#[test]
fn crisp_case18_exclusive_times() {
    let Some(doc) = read_clean("jaeger-crisp-case18.json") else {
        return;
    };
    // The `testing` block's opTimeExclusive, in µs (one operation per service here).
    for (svc, us) in [
        ("S1", 50.0),
        ("S2", 70.0),
        ("S3", 10.0),
        ("S4", 10.0),
        ("S5", 10.0),
        ("S6", 40.0),
        ("S7", 30.0),
        ("S8", 20.0),
        ("S9", 10.0),
    ] {
        let got = doc.node(svc).unwrap().self_time_ms.as_ref().unwrap().mean * 1000.0;
        assert!((got - us).abs() < 1.0, "{svc}: {got} µs, want {us}");
    }
}

fn nezha(name: &str) -> Option<GraphDoc> {
    let doc = read_clean(name)?;
    for n in &doc.nodes {
        assert_eq!(n.instances, Some(1), "{name}: {} has one pod", n.name);
    }
    Some(doc)
}

#[test]
fn nezha_online_boutique_currency_wait_is_on_the_callers_side() {
    let (Some(base), Some(fault)) = (
        nezha("nezha-onlineboutique-baseline.otlp.jsonl.gz"),
        nezha("nezha-onlineboutique-fault-cpu-contention.otlp.jsonl.gz"),
    ) else {
        return;
    };
    assert_eq!((fault.traces, fault.spans), (147, 6712));
    let b = base.edge("frontend", "currencyservice").unwrap();
    let f = fault.edge("frontend", "currencyservice").unwrap();
    let (bc, fc) = (b.client_ms.as_ref().unwrap(), f.client_ms.as_ref().unwrap());
    let fs = f.server_ms.as_ref().unwrap();
    assert!(bc.p50 < 20.0, "baseline client p50 {}", bc.p50);
    assert!(fc.p50 > 1000.0, "fault client p50 {}", fc.p50);
    assert!(
        fs.p50 < 5.0,
        "currency's own server spans stay short: {}",
        fs.p50
    );
}

#[test]
fn nezha_train_ticket_basic_wait_is_on_the_callers_side() {
    let (Some(base), Some(fault)) = (
        nezha("nezha-trainticket-baseline.otlp.jsonl.gz"),
        nezha("nezha-trainticket-fault-network-delay.otlp.jsonl.gz"),
    ) else {
        return;
    };
    assert_eq!((fault.traces, fault.spans), (40, 2441));
    for caller in [
        "ts-travel-service",
        "ts-travel2-service",
        "ts-preserve-service",
        "ts-preserve-other-service",
    ] {
        assert!(base.edge(caller, "ts-basic-service").is_some(), "{caller}");
        assert!(fault.edge(caller, "ts-basic-service").is_some(), "{caller}");
    }
    // The injected delay shows as client time beyond basic's server time.
    let gap = |d: &GraphDoc| -> f64 {
        let e = d.edge("ts-travel-service", "ts-basic-service").unwrap();
        e.client_ms.as_ref().unwrap().p99 - e.server_ms.as_ref().unwrap().p99
    };
    assert!(
        gap(&fault) > 500.0 && gap(&base) < 100.0,
        "{} vs {}",
        gap(&fault),
        gap(&base)
    );
}

/// Issue 7: one finding per risk everywhere; DeathStarBench (every service one instance)
/// says so once and has at most three findings at high or above.
#[test]
fn every_real_file_has_one_finding_per_risk_and_deathstarbench_few_high_ones() {
    let Some(dsb) = realdata("jaeger-deathstarbench-socialnetwork.json.gz") else {
        return;
    };
    let dir = dsb.parent().unwrap().to_owned();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.ends_with("README.md"))
        .collect();
    files.sort();
    assert!(files.len() >= 12);
    for f in &files {
        let doc = findings_of(std::slice::from_ref(f), &[]);
        let mut seen = std::collections::BTreeSet::new();
        for x in &doc.findings {
            assert!(
                seen.insert((x.kind, x.node.clone())),
                "{}: {} twice",
                f.display(),
                x.id
            );
        }
    }
    let doc = findings_of(&[dsb], &[]);
    let high = doc
        .findings
        .iter()
        .filter(|f| matches!(f.severity, "high" | "critical"))
        .count();
    assert!(high <= 3, "{high} findings at high or above");
    assert!(
        doc.notes.iter().any(|n| n.contains("single instance")),
        "{:?}",
        doc.notes
    );
}
