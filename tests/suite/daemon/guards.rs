//! Who may talk to the daemon: bearer tokens, the Host check, CORS.

use super::*;

/// Issue 10: with tokens, exporters without one get UNAUTHENTICATED / 401 and nothing is
/// counted as received; the API wants its own token (probes excepted); a Host the API does
/// not answer to gets 421.
#[test]
fn tokens_keep_strangers_out_and_the_api_checks_host() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = (
        dir.path().join("ingest.token"),
        dir.path().join("api.token"),
    );
    std::fs::write(&ingest, "in-s3cret\n").unwrap();
    std::fs::write(&api, "api-s3cret").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[receivers]\nbearer_token_file = \"{}\"\n[api]\nbearer_token_file = \"{}\"\nhosts = \"chokepoint.example\"\n",
            ingest.display(),
            api.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let reqs = shop(Scenario::Healthy, 5);
    let body = reqs[0].encode_to_vec();
    let http = reqwest::blocking::Client::new();
    let send_http = |auth: Option<&str>| {
        let mut r = http
            .post(format!("http://{}/v1/traces", d.http))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().unwrap().status()
    };
    assert_eq!(send_http(None), 401);
    assert_eq!(send_http(Some("Bearer wrong")), 401);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let grpc = |token: Option<&'static str>| {
        rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", d.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::with_interceptor(
                ch,
                move |mut req: tonic::Request<()>| {
                    if let Some(t) = token {
                        req.metadata_mut()
                            .insert("authorization", format!("Bearer {t}").parse().unwrap());
                    }
                    Ok(req)
                },
            );
            c.export(reqs[1].clone()).await.map(|_| ()).map_err(|s| s.code())
        })
    };
    assert_eq!(grpc(None), Err(tonic::Code::Unauthenticated));
    assert_eq!(grpc(Some("wrong")), Err(tonic::Code::Unauthenticated));
    // Nothing from strangers was counted.
    let api_get = |path: &str, auth: Option<&str>, host: Option<&str>| {
        let mut r = http.get(format!("{}{path}", d.api));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r.send().unwrap()
    };
    let metrics = api_get("/metrics", Some("Bearer api-s3cret"), None)
        .text()
        .unwrap();
    assert!(
        metrics.contains("chokepoint_spans_received_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chokepoint_export_requests_total 0"),
        "{metrics}"
    );
    // With the token: taken.
    assert_eq!(send_http(Some("Bearer in-s3cret")), 200);
    assert_eq!(grpc(Some("in-s3cret")), Ok(()));
    // The API: its own token, not the receivers'.
    assert_eq!(api_get("/findings", None, None).status(), 401);
    assert_eq!(
        api_get("/findings", Some("Bearer in-s3cret"), None).status(),
        401
    );
    assert_eq!(
        api_get("/findings", Some("Bearer api-s3cret"), None).status(),
        200
    );
    assert_eq!(api_get("/healthz", None, None).status(), 200);
    // The hostile round: /ui-config was open, and showed `api.trace_url` (an internal
    // tracing host) to anyone. It is data now; the page shell stays open to ask for the token.
    assert_eq!(api_get("/ui-config", None, None).status(), 401);
    assert_eq!(
        api_get("/ui-config", Some("Bearer api-s3cret"), None).status(),
        200
    );
    assert_eq!(api_get("/", None, None).status(), 200);
    // DNS rebinding: a foreign Host is refused; configured names and IPs answer.
    let bad = api_get("/healthz", None, Some("evil.example"));
    assert_eq!(bad.status(), 421);
    assert_eq!(
        api_get("/healthz", None, Some("chokepoint.example:8787")).status(),
        200
    );
    assert_eq!(api_get("/healthz", None, Some("localhost")).status(), 200);
}

/// Issue 10: CORS is off unless configured: a page on another origin gets no
/// Access-Control-Allow-Origin; a configured origin gets it, and its preflight an answer
/// that allows reads only.
#[test]
fn cors_is_off_unless_the_origin_is_configured() {
    let d = Daemon::start(&["--set", "api.cors_origins=https://grafana.example"]);
    let c = reqwest::blocking::Client::new();
    let get = |origin: &str| {
        c.get(format!("{}/findings", d.api))
            .header("origin", origin)
            .send()
            .unwrap()
    };
    let r = get("https://grafana.example");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://grafana.example"
    );
    let r = get("https://evil.example");
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let pre = c
        .request(reqwest::Method::OPTIONS, format!("{}/findings", d.api))
        .header("origin", "https://grafana.example")
        .header("access-control-request-method", "GET")
        .send()
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-methods"], "GET, HEAD");
    let plain = Daemon::start(&[]);
    let r = c
        .get(format!("{}/findings", plain.api))
        .header("origin", "https://grafana.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
