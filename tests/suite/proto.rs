//! The gRPC query API's Rust code is generated from proto/ and checked in (no protoc at build
//! time); this regenerates it with the pure-Rust protox and insists the copy is current.

use std::fs;

use super::root;

#[test]
fn proto_code_is_up_to_date() {
    let fds = protox::compile(["chokepoint/v1/findings.proto"], [root().join("proto")])
        .expect("proto/ compiles");
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");
    let got = fs::read_to_string(out.path().join("chokepoint.v1.rs")).unwrap();
    let path = root().join("src/serve/query/grpc/chokepoint.v1.rs");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(&path, &got).unwrap();
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{} is stale: run UPDATE_EXPECT=1 cargo test proto_code",
        path.display()
    );
}
