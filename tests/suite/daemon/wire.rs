//! What arrives over the wire that should not: malformed, hostile, compressed, oversized and
//! absurdly timed requests, and more than the queue holds. Each gets the answer the OTLP
//! specification asks for, and the good spans beside it count.

use super::*;

#[test]
fn bad_input_over_the_wire_gets_the_spec_status_and_good_spans_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[receivers]\nmax_request_bytes = 200000\n").unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let pb = "application/x-protobuf";
    // Garbage protobuf: 400 with a google.rpc.Status body.
    let r = post(&d, pb, None, b"\xff\xff\xff not protobuf".to_vec());
    assert_eq!(r.status(), 400);
    let st = chokepoint::serve::receive::wire::RpcStatus::decode(r.bytes().unwrap()).unwrap();
    assert!(st.message.contains("not a valid OTLP"), "{}", st.message);
    // Wrong content type: 415.
    assert_eq!(
        post(&d, "text/plain", None, b"hello".to_vec()).status(),
        415
    );
    // A body over the limit: 413.
    assert_eq!(post(&d, pb, None, vec![0u8; 300_000]).status(), 413);
    // A gzip bomb (small compressed, huge inflated): 413, checked after decompression.
    assert_eq!(
        post(&d, pb, Some("gzip"), gzip(&vec![0u8; 50_000_000])).status(),
        413
    );
    // Some invalid spans: 200 with partial success; the good ones count.
    let mut req = shop(Scenario::Healthy, 1).remove(0);
    let total = chokepoint::ingest::batch::span_count(&req.resource_spans);
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    let r = post(&d, pb, None, req.encode_to_vec());
    assert_eq!(r.status(), 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.bytes().unwrap(),
        )
        .unwrap();
    let p = resp.partial_success.expect("partial success");
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message.contains("trace id has 3 bytes"),
        "{}",
        p.error_message
    );
    // JSON with snake_case keys decodes to nothing: accepted, with a warning.
    let r = post(
        &d,
        "application/json",
        None,
        br#"{"resource_spans": []}"#.to_vec(),
    );
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("zero spans"));
    // gRPC over the limit: RESOURCE_EXHAUSTED.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(async {
        let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", d.grpc),
        )
        .await
        .unwrap();
        let mut big = shop(Scenario::Healthy, 1).remove(0);
        big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(300_000);
        c.export(big).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::ResourceExhausted);
    // Still serving, and the good spans were analysed.
    d.settle();
    assert_eq!(d.metric("chokepoint_spans_rejected_total"), 1);
    assert_eq!(d.metric("chokepoint_spans_analysed_total"), total - 1);
    assert!(d.metric("chokepoint_requests_invalid_total") >= 4);
    assert_eq!(d.text("/healthz"), "ok\n");
}

#[test]
fn flooding_past_the_queue_gets_retryable_answers_and_the_books_balance() {
    let d = Daemon::start(&["--queue-batches", "1"]);
    let reqs: Vec<Vec<u8>> = shop(Scenario::Healthy, 400)
        .into_iter()
        .map(|r| r.encode_to_vec())
        .collect();
    let url = format!("http://{}/v1/traces", d.http);
    let (ok, busy): (u64, u64) = std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .chunks(50)
            .map(|chunk| {
                let url = url.clone();
                s.spawn(move || {
                    let c = reqwest::blocking::Client::new();
                    let (mut ok, mut busy) = (0, 0);
                    for body in chunk {
                        let r = c
                            .post(&url)
                            .header("content-type", "application/x-protobuf")
                            .body(body.clone())
                            .send()
                            .unwrap();
                        match r.status().as_u16() {
                            200 => ok += 1,
                            503 => {
                                assert_eq!(r.headers()["retry-after"], "1");
                                busy += 1
                            }
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    (ok, busy)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!(ok + busy, 400);
    assert!(
        busy > 0,
        "a one-batch queue under eight concurrent senders must refuse some"
    );
    d.settle();
    let received = d.metric("chokepoint_spans_received_total");
    let analysed = d.metric("chokepoint_spans_analysed_total");
    let rejected = d.metric("chokepoint_spans_rejected_total");
    let dropped = d.metric("chokepoint_spans_dropped_total");
    assert_eq!(
        received,
        analysed + rejected + dropped,
        "received = analysed + rejected + dropped"
    );
    assert!(d.metric("chokepoint_spans_refused_total") > 0);
}

#[test]
fn grpc_backpressure_is_unavailable_with_retry_info() {
    use chokepoint::serve::receive::wire::{RetryInfo, RpcStatus};
    let d = Daemon::start(&["--queue-batches", "1"]);
    let reqs = shop(Scenario::Healthy, 400);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<tonic::Status> = rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in reqs.chunks(50) {
            let chunk = chunk.to_vec();
            let addr = format!("http://{}", d.grpc);
            tasks.push(tokio::spawn(async move {
                let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(addr)
                    .await
                    .unwrap();
                let mut refused = Vec::new();
                for r in chunk {
                    if let Err(s) = c.export(r).await {
                        refused.push(s);
                    }
                }
                refused
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert!(!statuses.is_empty(), "some exports must be refused");
    for s in &statuses {
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let details = RpcStatus::decode(s.details()).expect("google.rpc.Status details");
        let any = &details.details[0];
        assert_eq!(any.type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(any.value.as_slice()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 1);
    }
    d.settle();
    let received = d.metric("chokepoint_spans_received_total");
    let accounted = d.metric("chokepoint_spans_analysed_total")
        + d.metric("chokepoint_spans_rejected_total")
        + d.metric("chokepoint_spans_dropped_total");
    assert_eq!(received, accounted);
}

#[test]
fn grpc_accepts_zstd_and_gzip_compressed_requests() {
    let d = Daemon::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent: u64 = rt.block_on(async {
        let mut sent = 0;
        for (seed, enc) in [
            (10, tonic::codec::CompressionEncoding::Zstd),
            (11, tonic::codec::CompressionEncoding::Gzip),
        ] {
            let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
                format!("http://{}", d.grpc),
            )
            .await
            .unwrap()
            .send_compressed(enc);
            let cfg = SimConfig {
                traces: 20,
                seed,
                start_unix_ns: now_ns() - 2_000_000_000,
                ..Default::default()
            };
            for r in generate(&cfg) {
                sent += chokepoint::ingest::batch::span_count(&r.resource_spans);
                c.export(r).await.unwrap();
            }
        }
        // The same traces again: every repeated span is counted as dropped, none lost.
        let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", d.grpc),
        )
        .await
        .unwrap();
        for r in shop(Scenario::Healthy, 5) {
            c.export(r.clone()).await.unwrap();
            c.export(r).await.unwrap();
        }
        sent
    });
    d.settle();
    let received = d.metric("chokepoint_spans_received_total");
    let dropped = d.metric("chokepoint_spans_dropped_total");
    assert_eq!(
        d.metric("chokepoint_spans_analysed_total"),
        received - dropped
    );
    assert!(d.metric("chokepoint_spans_analysed_total") >= sent);
    assert!(
        d.metric("chokepoint_spans_dropped_total") > 0,
        "the repeats"
    );
}

#[test]
fn hostile_input_is_refused_and_counted_not_harmful() {
    let d = Daemon::start(&[]);
    let pb = "application/x-protobuf";
    // A window too large for a duration: a 400, and the API keeps serving.
    let r = reqwest::blocking::get(format!("{}/graph?window=99999999999999999999", d.api)).unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(d.text("/healthz"), "ok\n");
    // Traces from a clock 80 years ahead are refused and counted, not kept as history.
    let mut future = shop(Scenario::Healthy, 3);
    for r in &mut future {
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for s in &mut ss.spans {
                    s.start_time_unix_nano += 80 * 365 * 86_400 * 1_000_000_000;
                    s.end_time_unix_nano += 80 * 365 * 86_400 * 1_000_000_000;
                }
            }
        }
    }
    let n_future: u64 = future
        .iter()
        .map(|r| chokepoint::ingest::batch::span_count(&r.resource_spans))
        .sum();
    for r in &future {
        assert_eq!(post(&d, pb, None, r.encode_to_vec()).status(), 200);
    }
    // Two gzip members in one body (concatenated protobuf is one merged message): both count.
    let two = shop(Scenario::Healthy, 2);
    let n_two: u64 = two
        .iter()
        .map(|r| chokepoint::ingest::batch::span_count(&r.resource_spans))
        .sum();
    let mut body = gzip(&two[0].encode_to_vec());
    body.extend(gzip(&two[1].encode_to_vec()));
    assert_eq!(post(&d, pb, Some("gzip"), body).status(), 200);
    d.settle();
    // Issue 10: refused at the door with their reason, not taken and dropped later.
    assert_eq!(d.metric("chokepoint_spans_rejected_total"), n_future);
    assert_eq!(d.metric("chokepoint_spans_dropped_total"), 0);
    assert_eq!(d.metric("chokepoint_spans_analysed_total"), n_two);
    assert_eq!(d.get("/graph?window=1h")["spans"], n_two);
}

/// Issue 10: a span ending in the year 2554, one from 1970 and one an hour ahead of the
/// clock are rejected at the door, each with its reason in the partial-success answer; the
/// good spans beside them count and the findings stay sane.
#[test]
fn absurd_span_times_are_rejected_at_the_door_with_their_reason() {
    let d = Daemon::start(&[]);
    let now = now_ns();
    let span = |id: &str, start: u64, end: u64| {
        serde_json::json!({"traceId": format!("{id:0>32}"), "spanId": format!("{id:0>16}"),
            "name": "GET /x", "kind": 2,
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string()})
    };
    let body = serde_json::json!({"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
    "scopeSpans": [{"spans": [
        span("a1", now - 1_000_000_000, u64::MAX),
        span("a2", 1_000_000_000, 2_000_000_000),
        span("a3", now + 3_600_000_000_000, now + 3_600_001_000_000),
        span("a4", now - 2_000_000_000, now - 1_990_000_000),
        // Starts now and lasts five hours: it ends where the window's end then went.
        span("a5", now - 1_000_000_000, now + 18_000_000_000_000),
    ]}]}]});
    let r = post(&d, "application/json", None, body.to_string().into_bytes());
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().unwrap();
    let ps = &answer["partialSuccess"];
    assert_eq!(ps["rejectedSpans"].as_str().unwrap_or("0"), "4", "{answer}");
    let msg = ps["errorMessage"].as_str().unwrap();
    for why in [
        "longer than",
        "before 2000",
        "clock is wrong",
        "cannot have been exported yet",
    ] {
        assert!(msg.contains(why), "{why} in {msg}");
    }
    d.settle();
    assert_eq!(d.metric("chokepoint_spans_rejected_total"), 4);
    assert_eq!(d.metric("chokepoint_spans_analysed_total"), 1);
    let end = d.get("/findings")["window"]["end"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        end.as_str() < chokepoint::model::rfc3339(now + 3_600_000_000_000).as_str(),
        "{end}"
    );
    let g = d.get("/graph?window=1h");
    let web = &g["nodes"][0];
    assert!(web["latency_ms"]["p99"].as_f64().unwrap() < 100.0, "{g}");
}

#[test]
fn grpc_far_over_the_limit_is_resource_exhausted_not_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[receivers]\nmax_request_bytes = 100000\n").unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(async {
        let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", d.grpc),
        )
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
        // Ten times the limit: stopped by the decoder itself, before the handler.
        let mut big = shop(Scenario::Healthy, 1).remove(0);
        big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(1_000_000);
        c.export(big).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::ResourceExhausted);
    assert_eq!(d.text("/healthz"), "ok\n");
}

#[test]
fn http_accepts_zstd_and_stops_a_zstd_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[receivers]\nmax_request_bytes = 300000\n").unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let req = shop(Scenario::Healthy, 2).remove(0);
    let n = chokepoint::ingest::batch::span_count(&req.resource_spans);
    let body = zstd::encode_all(&req.encode_to_vec()[..], 3).unwrap();
    assert_eq!(
        post(&d, "application/x-protobuf", Some("zstd"), body).status(),
        200
    );
    let bomb = zstd::encode_all(&vec![0u8; 50_000_000][..], 3).unwrap();
    assert!(bomb.len() < 300_000);
    assert_eq!(
        post(&d, "application/x-protobuf", Some("zstd"), bomb).status(),
        413
    );
    d.settle();
    assert_eq!(d.metric("chokepoint_spans_analysed_total"), n);
}

/// OTLP/JSON decodes to structs far larger than its text: 3 MB of `{}` as resource spans
/// decoded to 220 MB, 15 MiB to 1.1 GB, whatever the memory budget. What a request may
/// decode to is now estimated first: past half the budget it is refused (413, not
/// retryable), and a good request beside it is taken.
#[test]
fn a_json_request_built_to_decode_huge_is_refused_before_it_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[analysis]\nmemory_budget_mb = 8\n").unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let hollow = format!("{{\"resourceSpans\":[{}{{}}]}}", "{},".repeat(1_000_000));
    let r = post(&d, "application/json", None, hollow.into_bytes());
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("memory_budget_mb"));
    let many = format!(
        "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"a\",\"value\":\
         {{\"arrayValue\":{{\"values\":[{}{{}}]}}}}}}]}}}}]}}",
        "{\"intValue\":1},".repeat(300_000)
    );
    assert_eq!(
        post(&d, "application/json", None, many.into_bytes()).status(),
        413
    );
    let req = shop(Scenario::Healthy, 2).remove(0);
    let n = chokepoint::ingest::batch::span_count(&req.resource_spans);
    let good = chokepoint::ingest::encode::encode_line(&req);
    assert_eq!(
        post(&d, "application/json", None, good.into_bytes()).status(),
        200
    );
    d.settle();
    assert_eq!(d.metric("chokepoint_spans_analysed_total"), n);
}
