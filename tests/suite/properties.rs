//! Issue 10: the fuzz targets' invariants (`fuzz/`, `cargo +nightly fuzz`) as property tests
//! on stable, so CI checks them on every run.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_trace_file_never_panic_and_the_books_balance(
        data in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let mut batches = Vec::new();
        let mut sink = |_: chokepoint::ingest::Location,
                        rs: chokepoint::ingest::batch::Batch,
                        _: chokepoint::model::problem::BatchReport| batches.push(rs);
        let _ = chokepoint::ingest::file::read_bytes(std::path::Path::new("prop"), &data, &mut sink);
        prop_assert_eq!(chokepoint::testkit::check_engine(&batches), Ok(()));
    }

    /// A real request with bytes overwritten: where prost still decodes it (a changed id,
    /// time, kind or string), the wire reader must read exactly what prost reads.
    #[test]
    fn the_wire_reader_reads_what_prost_reads_in_damaged_requests(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
    ) {
        let mut bytes = shop_request();
        for (at, b) in edits {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        prop_assert_eq!(chokepoint::testkit::check_wire_matches_prost(&bytes), Ok(()));
    }

    #[test]
    fn the_critical_path_of_any_tree_lies_inside_it_and_adds_up(
        data in proptest::collection::vec(any::<u8>(), 0..1400),
        tol in 0u8..4,
    ) {
        let spans = chokepoint::testkit::spans_from_bytes(&data);
        prop_assert_eq!(
            chokepoint::testkit::check_critical_path(spans, f64::from(tol) * 0.01),
            Ok(())
        );
    }

    #[test]
    fn any_bytes_as_a_snapshot_are_refused_not_a_crash(
        data in proptest::collection::vec(any::<u8>(), 0..4096)
    ) {
        let _ = chokepoint::serve::state::check_snapshot(&data, 1000, 1000);
        // Behind a valid header and checksum, the payload decoder sees the same bytes.
        let _ = chokepoint::serve::state::check_snapshot(&chokepoint::serve::state::frame(&data), 1000, 1000);
    }
}

#[test]
fn valid_json_of_every_reader_shape_goes_through() {
    // Shapes the byte-level properties rarely reach: each reader's document, mutated.
    let docs = [
        r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"01","startTimeUnixNano":"5","endTimeUnixNano":"1"}]}]}]}"#,
        r#"{"data":[{"traceID":"ab","spans":[{"traceID":"ab","spanID":"cd","operationName":"x","startTime":1,"duration":-5,"references":[{"refType":"CHILD_OF","traceID":"ab","spanID":"cd"}],"processID":"p9"}],"processes":{}}]}"#,
        r#"[{"traceId":"a","id":"b","parentId":"b","timestamp":18446744073709551615,"duration":18446744073709551615}]"#,
        r#"{"batches":[{"resource":{"attributes":[]},"scopeSpans":[{"spans":[{"traceId":"AAAAAAAAAAAAAAAAAAAAAA==","spanId":"AAAAAAAAAAE=","kind":"SPAN_KIND_NONSENSE"}]}]}]}"#,
    ];
    for d in docs {
        let mut batches = Vec::new();
        let mut sink =
            |_: chokepoint::ingest::Location,
             rs: chokepoint::ingest::batch::Batch,
             _: chokepoint::model::problem::BatchReport| batches.push(rs);
        let _ = chokepoint::ingest::file::read_bytes(
            std::path::Path::new("doc"),
            d.as_bytes(),
            &mut sink,
        );
        assert_eq!(chokepoint::testkit::check_engine(&batches), Ok(()), "{d}");
    }
}

/// One simulated shop request of a few traces, as protobuf.
fn shop_request() -> Vec<u8> {
    use prost::Message;
    let cfg = chokepoint::simulate::SimConfig {
        scenario: chokepoint::simulate::Scenario::SlowPayment,
        traces: 4,
        ..Default::default()
    };
    let resource_spans = chokepoint::simulate::generate(&cfg)
        .flat_map(|r| r.resource_spans)
        .collect();
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest { resource_spans }
        .encode_to_vec()
}
