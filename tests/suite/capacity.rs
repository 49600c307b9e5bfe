//! Capacity and headroom against systems whose capacity is known: the lab's generated ones
//! (configured workers and service times), the shop's e-mail provider (100 mails a minute),
//! and a real gunicorn server under the Python SDK, measured by its own load generator.

use std::path::PathBuf;

use chokepoint::api::dto::{CapacityDto, FindingsDoc};

use super::{ev, findings_of, root};

fn testdata(name: &str) -> PathBuf {
    root().join("testdata").join(name)
}

fn cap<'a>(d: &'a FindingsDoc, node: &str) -> &'a CapacityDto {
    d.capacity
        .iter()
        .find(|c| c.node == node)
        .unwrap_or_else(|| panic!("{node} has no capacity entry: {:?}", d.capacity))
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got / want - 1.0).abs() <= tolerance
}

/// `inventory`: two instances of two workers, a reservation lognormal with median 175 ms
/// and shape 0.25 (mean 175 · e^(0.25²/2) = 180.6 ms): 4 / 0.1806 = 22.1 a second.
const INVENTORY_RPS: f64 = 4.0 / 0.1806;

#[test]
fn a_ramp_past_the_workers_capacity_measures_it_and_names_it_first_to_saturate() {
    let d = findings_of(&[testdata("lab-worker-slots.otlp.jsonl.gz")], &[]);
    let c = cap(&d, "inventory");
    let got = c.capacity_rps.expect("a capacity");
    assert!(within(got, INVENTORY_RPS, 0.15), "{got} vs {INVENTORY_RPS}");
    assert_eq!(c.limit, "concurrency");
    assert_eq!(c.confidence, "high");
    let slots = c.slots_per_instance.expect("slots");
    assert!((slots - 2.0).abs() < 0.3, "{slots}");
    assert_eq!(c.instances, Some(2));
    assert!(c.headroom.unwrap() < 1.0 && c.queue_growing, "{c:?}");
    let first = d.first_to_saturate.as_ref().expect("a first to saturate");
    assert_eq!(first.node, "inventory");
    // Its callers, unlimited, have no capacity to speak of.
    assert_eq!(cap(&d, "checkout-api").capacity_rps, None);
    assert_eq!(cap(&d, "checkout-api").limit, "unknown");
    // Beyond its capacity now: an active, critical bottleneck with cause capacity.
    let f = d
        .findings
        .iter()
        .find(|f| f.kind == "bottleneck" && f.node == "inventory")
        .expect("a bottleneck on inventory");
    assert_eq!(f.severity, "critical");
    assert!(f.active);
    let e = ev(f);
    assert_eq!(e["cause"], "capacity");
    assert_eq!(e["capacity"]["limit"], "concurrency");
    assert!(f.remediation.contains("instance"), "{}", f.remediation);
}

#[test]
fn the_same_system_at_30_percent_load_has_about_3x_headroom_and_says_it_extrapolates() {
    let d = findings_of(&[testdata("lab-worker-slots-light.otlp.jsonl.gz")], &[]);
    let c = cap(&d, "inventory");
    let got = c.capacity_rps.expect("a capacity");
    assert!(within(got, INVENTORY_RPS, 0.15), "{got} vs {INVENTORY_RPS}");
    let h = c.headroom.unwrap();
    assert!((2.6..=4.0).contains(&h), "headroom {h}");
    assert_eq!(c.confidence, "low", "{c:?}");
    assert!(c.reason.contains("extrapolated"), "{}", c.reason);
    assert_eq!(d.first_to_saturate.as_ref().unwrap().node, "inventory");
    // Far from its capacity: no capacity finding.
    assert!(
        d.findings.iter().all(|f| ev(f)["cause"] != "capacity"),
        "{:?}",
        d.findings
    );
    // What if the traffic grew 2.5×: still under capacity, with a longer wait; at 4×, over.
    let at = |load: f64| d.clone().with_load(load).what_if_load.unwrap().nodes;
    let w = at(2.5);
    let inv = w.iter().find(|n| n.node == "inventory").unwrap();
    assert!(!inv.over_capacity && inv.expected_latency_ms.unwrap() > c.service_time_ms.unwrap());
    let w = at(4.0);
    let inv = w.iter().find(|n| n.node == "inventory").unwrap();
    assert!(
        inv.over_capacity && inv.expected_latency_ms.is_none(),
        "{inv:?}"
    );
}

#[test]
fn a_consumer_behind_its_queue_has_its_completion_rate_as_capacity() {
    // 20 jobs a second arrive; one thumbnailer at 1 / mean(lognormal(75 ms, 0.2)) = 13.07/s.
    let d = findings_of(&[testdata("lab-slow-consumer.otlp.jsonl.gz")], &[]);
    let c = cap(&d, "thumbnailer");
    let got = c.capacity_rps.expect("a capacity");
    assert!(within(got, 13.07, 0.25), "{got}");
    assert_eq!(c.limit, "consumer");
    assert!(within(c.rate_rps, 20.0, 0.15), "arriving {}", c.rate_rps);
    assert!(c.queue_growing);
    assert_eq!(d.first_to_saturate.as_ref().unwrap().node, "thumbnailer");
}

#[test]
fn the_shops_email_provider_limit_is_email_services_capacity_and_first_to_saturate() {
    // DOMAIN.md: the provider sends 100 mails a minute, checkouts ask for about 400.
    let d = findings_of(&[testdata("shop-email-backlog.otlp.jsonl.gz")], &[]);
    let first = d.first_to_saturate.as_ref().expect("a first to saturate");
    assert_eq!(first.node, "email-service");
    assert!(first.at_load_factor < 1.0, "{first:?}");
    let c = cap(&d, "email-service");
    let per_min = c.capacity_rps.expect("a capacity") * 60.0;
    assert!(within(per_min, 100.0, 0.1), "{per_min} a minute");
    assert_eq!(c.limit, "consumer");
    // On a healthy day nothing is near its capacity.
    let h = findings_of(&[testdata("shop-healthy.otlp.jsonl.gz")], &[]);
    assert!(h.findings.iter().all(|f| ev(f)["cause"] != "capacity"));
}

#[test]
fn sampled_spans_count_by_their_adjusted_count() {
    // Keep every other trace of the light system and mark each span as sampled at 1/2
    // (`ot=th:8`: threshold 2^55, half the randomness space rejected): rates and capacity
    // are the full system's.
    let full = findings_of(&[testdata("lab-worker-slots-light.otlp.jsonl.gz")], &[]);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(testdata("lab-worker-slots-light.otlp.jsonl.gz")).unwrap(),
        ),
        &mut text,
    )
    .unwrap();
    let kept: Vec<String> = text
        .lines()
        .step_by(2)
        .map(|l| l.replace("\"spanId\":", "\"traceState\":\"ot=th:8\",\"spanId\":"))
        .collect();
    assert!(kept[0].contains("ot=th:8"), "{}", &kept[0][..200]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sampled.otlp.jsonl");
    std::fs::write(&path, kept.join("\n")).unwrap();
    let half = findings_of(&[path], &[]);
    let (a, b) = (cap(&full, "inventory"), cap(&half, "inventory"));
    assert!(b.sampled && !a.sampled);
    assert!(
        within(b.rate_rps, a.rate_rps, 0.15),
        "{} vs {}",
        b.rate_rps,
        a.rate_rps
    );
    assert!(
        within(b.concurrency.unwrap(), a.concurrency.unwrap(), 0.15),
        "{b:?} vs {a:?}"
    );
}

#[test]
fn a_real_gunicorn_server_under_the_python_sdk_tops_out_where_its_load_generator_measured() {
    // scripts/capture/gunicorn-slots: Flask on gunicorn with 2 sync workers, an open-loop
    // ramp past its capacity; the load generator's own measure is what it completed per
    // second while requests queued.
    let measured: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata("gunicorn-slots.loadgen.json")).unwrap(),
    )
    .unwrap();
    let want = measured["capacity_rps"]
        .as_f64()
        .expect("measured capacity");
    let d = findings_of(&[testdata("gunicorn-slots.otlp.pb.gz")], &[]);
    let c = cap(&d, "quotes-web");
    let got = c.capacity_rps.expect("a capacity");
    assert!(within(got, want, 0.25), "{got} vs {want} measured: {c:?}");
    assert_eq!(c.limit, "concurrency");
    assert_eq!(d.first_to_saturate.as_ref().unwrap().node, "quotes-web");
}
