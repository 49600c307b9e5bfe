//! The API and its consumers: the gRPC Watch stream, every series the Grafana dashboard
//! queries, and the endpoints of the view the dashboard reads.

use super::*;

#[test]
fn grpc_watch_streams_the_flip_from_healthy_to_single_db() {
    use chokepoint::serve::query::grpc::pb::{
        findings_client::FindingsClient, ListRequest, WatchRequest,
    };
    let d = Daemon::start(&["--window", "1m"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = FindingsClient::connect(format!("http://{}", d.api_grpc))
            .await
            .unwrap();
        let mut otlp = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", d.grpc),
        )
        .await
        .unwrap();
        let mut stream = client
            .watch(WatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(first.findings.iter().all(|f| f.severity != "critical"));
        // A healthy history three minutes back, then the incident now.
        let cfg = SimConfig {
            scenario: Scenario::Healthy,
            traces: 300,
            rate_per_s: 100.0,
            start_unix_ns: now_ns() - 180_000_000_000,
            ..Default::default()
        };
        for r in generate(&cfg) {
            otlp.export(r).await.unwrap();
        }
        for r in shop(Scenario::SingleDb, 300) {
            otlp.export(r).await.unwrap();
        }
        let flipped = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let msg = stream.message().await.unwrap().expect("stream open");
                if msg
                    .findings
                    .iter()
                    .any(|f| f.id == "spof/orders (postgresql)" && f.severity == "critical")
                {
                    return msg;
                }
            }
        })
        .await
        .expect("a streamed change naming the database");
        let f = &flipped.findings[0];
        let evidence: serde_json::Value = serde_json::from_str(&f.evidence_json).unwrap();
        assert!(evidence.is_object());
        let listed = client
            .list(ListRequest {
                kind: "spof".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.findings.iter().all(|f| f.kind == "spof"));
        assert!(client
            .list(ListRequest {
                kind: "nonsense".into(),
                ..Default::default()
            })
            .await
            .is_err());
    });
}

/// Issue 9: every series the Grafana dashboard queries is in a live `/metrics` scrape.
#[test]
fn every_series_the_grafana_dashboard_queries_is_in_a_live_scrape() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("dashboards/chokepoint-grafana.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = std::collections::BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("chokepoint_") || word.starts_with("traces_service_graph_") {
                    wanted.insert(word.to_owned());
                }
            }
        }
    }
    assert!(wanted.len() >= 8, "{wanted:?}");
    // One database from the start: a finding, so its score is exported too.
    let d = Daemon::start(&[
        "--demo",
        "--demo-rate",
        "50",
        "--demo-schedule",
        "single-db",
    ]);
    d.wait_for("findings over demo traffic", |d| {
        d.get("/findings")["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
            && d.text("/metrics")
                .contains("traces_service_graph_request_total{")
    });
    let text = d.text("/metrics");
    let present: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for m in &wanted {
        assert!(present.contains(m.as_str()), "{m} is not in /metrics");
    }
}

/// Issue 9: the API the dashboard reads, from the published view: node ids, series,
/// entry operations, finding history, ingest health, the event stream, Node Graph frames.
#[test]
fn the_views_api_serves_ids_series_operations_history_health_and_events() {
    let d = Daemon::start(&[]);
    let endpoint = format!("http://{}", d.grpc);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    export_with_sdk(&shop(Scenario::SingleDb, 300), || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .unwrap()
    });
    d.wait_for("all shop nodes and a finding in the view", |d| {
        d.get("/nodes").as_array().is_some_and(|n| n.len() >= 10)
            && d.get("/findings")["findings"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
    });
    // Capacity, live: every node that served has an entry, the what-if answers at a load,
    // and a load that is not a factor is refused with the reason.
    let cap = d.get("/capacity?load=2");
    let entries = cap["capacity"].as_array().expect("capacity entries");
    assert!(
        entries.iter().any(|c| c["node"] == "order-service"),
        "{cap}"
    );
    assert!(cap["what_if"].is_array() && cap["load"] == 2.0, "{cap}");
    assert!(cap.get("first_to_saturate").is_some(), "{cap}");
    let bad = d
        .http_client
        .get(format!("{}/capacity?load=-1", d.api))
        .send()
        .expect("API request");
    assert_eq!(bad.status(), 400);
    assert!(d
        .text("/metrics")
        .contains("# TYPE chokepoint_capacity_rps gauge"));
    let nodes = d.get("/nodes");
    let ids: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique");
    assert!(ids.iter().all(|i| i
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))));
    let db = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "orders (postgresql)")
        .unwrap();
    let id = db["id"].as_str().unwrap();
    // By id and by name alike.
    assert_eq!(
        d.get(&format!("/nodes/{id}"))["node"]["name"],
        "orders (postgresql)"
    );
    assert_eq!(d.get("/nodes/orders%20(postgresql)")["node"]["id"], id);
    let series = d.get(&format!("/series/nodes/{id}?from=1h&step=1m"));
    let pts = series["points"].as_array().unwrap();
    assert!(!pts.is_empty(), "{series}");
    assert!(pts[0]["requests_per_s"].as_f64().unwrap() > 0.0, "{series}");
    let r = reqwest::blocking::get(format!("{}/series/nodes/{id}?from=yesterday", d.api)).unwrap();
    assert_eq!(r.status(), 400);
    let edge = &d.get(&format!("/nodes/{id}"))["callers"][0];
    let e = d.get(&format!(
        "/series/edges/{}/{}",
        edge["from_id"].as_str().unwrap(),
        edge["to_id"].as_str().unwrap()
    ));
    assert!(!e["points"].as_array().unwrap().is_empty(), "{e}");
    let ops = d.get("/operations");
    let checkout = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "api-gateway POST /checkout")
        .unwrap_or_else(|| panic!("{ops}"));
    assert!(
        checkout["breakdown"].as_array().unwrap().len() >= 5,
        "{checkout}"
    );
    let history = d.get("/findings/history");
    let h = &history.as_array().unwrap()[0];
    assert!(
        h["first_seen"].as_str().unwrap().ends_with('Z')
            && !h["points"].as_array().unwrap().is_empty()
    );
    // A past range of the history: the last ten minutes up to now, asked of the pipeline.
    let past = d.get("/graph?from=10m&to=0s");
    assert!(past["nodes"].as_array().unwrap().len() >= 10, "{past}");
    let past = d.get("/findings?from=10m&to=0s");
    assert!(past["traces"].as_u64().unwrap() > 0, "{past}");
    let health = d.get("/health");
    assert!(health["spans_received"].as_u64().unwrap() > 0, "{health}");
    let graph = d.get("/node-graph");
    assert!(graph["nodes"][0]["id"].is_string() && graph["nodes"][0]["mainstat"].is_string());
    assert!(graph["edges"][0]["source"].is_string() && graph["edges"][0]["target"].is_string());
    // The event stream pushes a refresh with the findings' scores.
    use std::io::Read;
    let mut events = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}/events", d.api))
        .send()
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("event: refresh") {
        let n = events.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("\"score\""), "{text}");
    // Every route is documented.
    let spec = d.get("/openapi.json");
    for path in [
        "/findings",
        "/findings/history",
        "/capacity",
        "/graph",
        "/nodes",
        "/nodes/{name}",
        "/series/nodes/{id}",
        "/series/edges/{caller}/{callee}",
        "/operations",
        "/health",
        "/events",
        "/node-graph",
        "/node-graph/nodes",
        "/node-graph/edges",
        "/traces/{trace_id}/critical-path",
        "/metrics",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} is not in openapi.json"
        );
    }
}
