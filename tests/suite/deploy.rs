//! The deployment files (`deploy/`, `Containerfile`): the Kubernetes base and its scale-out
//! overlay render with kustomize and validate against the Kubernetes 1.30 schemas; every
//! port, path, user and memory figure in them is the daemon's own (read from the rendered
//! YAML, the TOML it mounts and a running daemon, so they cannot drift); the alert rules load
//! in promtool and fire as their unit tests say; the Collector recipes send to the daemon's
//! port. The image itself is built and run by `scripts/image-test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::daemon::Daemon;
use super::root;

/// A program the checks need: on PATH, or beside the test venv's Python (.ci/run installs
/// both). Missing under CI is a failure: a check that did not run is not green.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("CHOKEPOINT_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let found = venv
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed and CI is set (scripts/test installs it): a test that did \
             not run is not green"
        );
        eprintln!("NOT RUN: {name} is not installed (scripts/test installs it)");
    }
    found
}

fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {}: {}\n{text}",
        program.display(),
        args.join(" "),
        out.status
    );
    text
}

/// What `kubectl kustomize` renders from a directory of deploy/kubernetes.
fn render(kubectl: &Path, dir: &str) -> String {
    let out = Command::new(kubectl)
        .args(["kustomize", &format!("deploy/kubernetes/{dir}")])
        .current_dir(root())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 YAML")
}

/// The YAML documents of `text`, as JSON values (read by PyYAML in the test venv).
fn documents(python: &str, text: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run Python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write YAML");
    let out = child.wait_with_output().expect("read JSON");
    assert!(out.status.success(), "PyYAML could not read the YAML");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The rendered base (".") and overlay ("scale-out"), as text and as documents; `None` (not
/// run) without kubectl or the venv.
fn rendered() -> Option<Vec<(&'static str, String, Vec<Value>)>> {
    let kubectl = tool("kubectl")?;
    let python = super::daemon::python()?;
    Some(
        [".", "scale-out"]
            .into_iter()
            .map(|dir| {
                let text = render(&kubectl, dir);
                let docs = documents(&python, &text);
                (dir, text, docs)
            })
            .collect(),
    )
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let kind = kind.to_owned();
    docs.iter().filter(move |d| d["kind"] == kind.as_str())
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn port_of(listen: &str) -> u64 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listen:?}"))
}

/// Quantities as the manifests write memory: "384Mi".
fn mebibytes(q: &str) -> f64 {
    q.strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("memory {q:?} is not in Mi"))
}

/// The daemon's defaults, as `chokepoint gen-config` prints them.
fn defaults() -> toml::Table {
    let out = run(Path::new(env!("CARGO_BIN_EXE_chokepoint")), &["gen-config"]);
    out.parse().expect("gen-config is TOML")
}

/// A key of a chokepoint TOML, or its default.
fn key(cfg: &toml::Table, defaults: &toml::Table, path: &str) -> String {
    let get = |t: &toml::Table| -> Option<String> {
        let mut v: Option<&toml::Value> = None;
        let mut table = t;
        for part in path.split('.') {
            let next = table.get(part)?;
            if let Some(t) = next.as_table() {
                table = t;
            }
            v = Some(next);
        }
        v.map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    get(cfg)
        .or_else(|| get(defaults))
        .unwrap_or_else(|| panic!("no key {path}"))
}

#[test]
fn the_manifests_render_validate_against_kubernetes_1_30_and_lint_clean() {
    let Some(rendered) = rendered() else { return };
    let (Some(validate), Some(yamllint)) = (tool("kubernetes-validate"), tool("yamllint")) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (name, text, docs) in &rendered {
        let file = dir
            .path()
            .join(format!("{}.yaml", name.replace('.', "base")));
        std::fs::write(&file, text).expect("write rendered YAML");
        let out = run(
            &validate,
            &["-k", "1.30.0", "--strict", file.to_str().expect("path")],
        );
        // Every resource validated, but the Prometheus Operator's two kinds (no schema in
        // the bundle; their fields are checked below and by promtool).
        let schemaless: BTreeSet<&str> = out
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
            .filter_map(|l| l.split("kind ").nth(1)?.split(' ').next())
            .collect();
        assert_eq!(
            schemaless,
            BTreeSet::from(["PrometheusRule", "ServiceMonitor"]),
            "{name}: {out}"
        );
        let passed = out.lines().filter(|l| l.contains(" passed ")).count();
        assert_eq!(passed, docs.len() - 2, "{name}: {out}");
        files.push(file);
    }
    run(
        &yamllint,
        &[
            "-s",
            "-f",
            "parsable",
            "-c",
            "deploy/.yamllint.yaml",
            "deploy",
        ],
    );
    // What kustomize writes is its own layout; its long lines are the TOML's.
    let relaxed = "{extends: default, rules: {line-length: disable, document-start: disable, \
                   indentation: {indent-sequences: whatever}}}";
    let mut args = vec!["-s", "-f", "parsable", "-d", relaxed];
    args.extend(files.iter().map(|f| f.to_str().expect("path")));
    run(&yamllint, &args);
}

#[test]
fn the_alert_rules_load_fire_as_tested_and_read_metrics_the_daemon_serves() {
    let Some(rendered) = rendered() else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (_, _, docs) = &rendered[0];
    let rule = kind(docs, "PrometheusRule")
        .next()
        .expect("a PrometheusRule");
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rule["spec"].to_string()).expect("write rules");
    let out = run(
        &promtool,
        &["check", "rules", rules.to_str().expect("path")],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let tests = dir.path().join("alerts.test.yaml");
    std::fs::copy(root().join("testdata/deploy/alerts.test.yaml"), &tests).expect("copy tests");
    run(&promtool, &["test", "rules", tests.to_str().expect("path")]);

    // Each alert has a unit test.
    let alerts: BTreeSet<String> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| str_of(&r["alert"]).to_owned())
        .collect();
    let tested = std::fs::read_to_string(&tests).expect("read tests");
    for a in &alerts {
        assert!(
            tested.contains(&format!("alertname: {a}")),
            "{a} has no test in testdata/deploy/alerts.test.yaml"
        );
    }

    // Every metric and label the rules read is on a running daemon's /metrics, with findings
    // and capacity (the demo shop).
    // (Headroom needs a few 10 s load buckets: a longer wait than Daemon::wait_for's.)
    let d = Daemon::start(&["--demo", "--demo-schedule", "single-db"]);
    let start = std::time::Instant::now();
    let metrics = loop {
        let m = d.text("/metrics");
        if m.contains("\nchokepoint_finding_score{") && m.contains("\nchokepoint_headroom{") {
            break m;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no finding and headroom on /metrics after 2 minutes of the demo"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!("finding and headroom after {:?}", start.elapsed());
    let exprs: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| str_of(&r["expr"]))
        .collect();
    let mut names = BTreeSet::new();
    for e in &exprs {
        let mut rest = *e;
        while let Some(i) = rest.find(|c: char| c.is_ascii_lowercase()) {
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if word.starts_with("chokepoint_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
            rest = &rest[end..];
        }
    }
    assert!(names.len() >= 8, "{names:?}");
    for n in &names {
        assert!(
            metrics.contains(&format!("\n# TYPE {n} ")),
            "the rules read {n}, which /metrics does not serve"
        );
    }
    let labels_of = |metric: &str| -> BTreeSet<String> {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{metric}{{")))
            .unwrap_or_else(|| panic!("no {metric} series"));
        line[metric.len() + 1..]
            .split("\",")
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
            .collect()
    };
    assert_eq!(
        labels_of("chokepoint_finding_score"),
        ["kind", "node", "severity", "active"]
            .map(str::to_owned)
            .into(),
    );
    assert_eq!(
        labels_of("chokepoint_headroom"),
        ["node", "limit"].map(str::to_owned).into()
    );
}

#[test]
fn every_port_path_user_and_memory_figure_in_the_manifests_is_the_daemons() {
    let Some(rendered) = rendered() else { return };
    let defaults = defaults();
    let dir = tempfile::tempdir().expect("temp dir");
    let containerfile = std::fs::read_to_string(root().join("Containerfile")).expect("read");
    let image_uid: u64 = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next()?.trim().parse().ok())
        .expect("a numeric USER in the Containerfile");
    let version = env!("CARGO_PKG_VERSION");
    let d = Daemon::start(&[]);

    for (name, _, docs) in &rendered {
        let configs: Vec<(&str, &Value)> = kind(docs, "ConfigMap")
            .map(|c| (str_of(&c["metadata"]["name"]), &c["data"]))
            .collect();
        let mut checked = 0;
        for w in kind(docs, "StatefulSet").chain(kind(docs, "Deployment")) {
            let wname = str_of(&w["metadata"]["name"]);
            let pod = &w["spec"]["template"]["spec"];
            let Some(c) = pod["containers"]
                .as_array()
                .expect("containers")
                .iter()
                .find(|c| str_of(&c["image"]).contains("chokepoint:"))
            else {
                continue;
            };
            checked += 1;
            let at = format!("{name}: {wname}");
            assert_eq!(
                str_of(&c["image"]),
                format!("localhost/chokepoint:{version}"),
                "{at}"
            );

            // The TOML it mounts is one the daemon accepts.
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(str_of)
                .collect();
            let cfg_path = args[args
                .iter()
                .position(|a| *a == "--config")
                .expect("--config")
                + 1];
            let mounts = c["volumeMounts"].as_array().expect("mounts");
            let cfg_mount = mounts
                .iter()
                .find(|m| cfg_path.starts_with(str_of(&m["mountPath"])))
                .expect("the config's mount");
            let volume = pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == cfg_mount["name"])
                .expect("the config's volume");
            let cm = str_of(&volume["configMap"]["name"]);
            let file = cfg_path.rsplit('/').next().expect("file name");
            let (_, data) = configs
                .iter()
                .find(|(n, _)| *n == cm)
                .unwrap_or_else(|| panic!("{at}: no ConfigMap {cm}"));
            let toml_text = str_of(&data[file]);
            let toml_file = dir.path().join(format!("{wname}.toml"));
            std::fs::write(&toml_file, toml_text).expect("write TOML");
            run(
                Path::new(env!("CARGO_BIN_EXE_chokepoint")),
                &["validate", "--config", toml_file.to_str().expect("path")],
            );
            let cfg: toml::Table = toml_text.parse().expect("TOML");

            // Container ports are the ports it listens on beyond loopback, by name.
            let ports: Vec<(&str, u64)> = c["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(|p| {
                    (
                        str_of(&p["name"]),
                        p["containerPort"].as_u64().expect("port"),
                    )
                })
                .collect();
            let mut listening = Vec::new();
            for (port, k) in [
                ("otlp-grpc", "receivers.grpc_listen"),
                ("otlp-http", "receivers.http_listen"),
                ("api", "api.listen"),
                ("api-grpc", "api.grpc_listen"),
            ] {
                let listen = key(&cfg, &defaults, k);
                if listen.starts_with("127.") {
                    assert!(
                        !ports.iter().any(|(n, _)| *n == port),
                        "{at}: {port} is loopback"
                    );
                    continue;
                }
                assert!(listen.starts_with("0.0.0.0:"), "{at}: {k} = {listen}");
                listening.push(port);
                assert!(
                    ports.contains(&(port, port_of(&listen))),
                    "{at}: {k} = {listen} but ports are {ports:?}"
                );
            }
            assert_eq!(ports.len(), listening.len(), "{at}: {ports:?}");

            // Probes reach paths the daemon answers, on its API port.
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let Some(get) = c[probe]["httpGet"].as_object() else {
                    assert_ne!(probe, "livenessProbe", "{at}: no liveness probe");
                    continue;
                };
                assert_eq!(get["port"], "api", "{at}: {probe}");
                let path = str_of(&get["path"]);
                let status = reqwest::blocking::get(format!("{}{path}", d.api))
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                assert_eq!(status, 200, "{at}: {probe} {path}");
            }
            assert!(c["readinessProbe"].is_object(), "{at}: no readiness probe");

            // Memory follows analysis.memory_budget_mb: request 1.5x, limit 3x.
            let budget: f64 = key(&cfg, &defaults, "analysis.memory_budget_mb")
                .parse()
                .expect("budget");
            let res = &c["resources"];
            assert_eq!(
                mebibytes(str_of(&res["requests"]["memory"])),
                1.5 * budget,
                "{at}"
            );
            assert_eq!(
                mebibytes(str_of(&res["limits"]["memory"])),
                3.0 * budget,
                "{at}"
            );

            // The image's user, unprivileged, read-only root, state on its volume.
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsUser"].as_u64(), Some(image_uid), "{at}");
            assert_eq!(psc["runAsNonRoot"], true, "{at}");
            assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{at}"
            );
            let state = key(&cfg, &defaults, "state.dir");
            if !state.is_empty() {
                assert!(
                    mounts.iter().any(|m| m["mountPath"] == state.as_str()),
                    "{at}: state.dir {state} is not a mounted volume"
                );
                let claims = w["spec"]["volumeClaimTemplates"].as_array();
                assert!(
                    claims.is_some_and(|c| c
                        .iter()
                        .any(|c| mounts.iter().any(|m| m["mountPath"] == state.as_str()
                            && m["name"] == c["metadata"]["name"]))),
                    "{at}: state.dir is not on a PersistentVolumeClaim"
                );
            }

            // Services that select it name ports it has, and their names are api.hosts.
            let labels = &w["spec"]["template"]["metadata"]["labels"];
            let hosts = key(&cfg, &defaults, "api.hosts");
            for s in kind(docs, "Service") {
                let sel = s["spec"]["selector"].as_object().expect("selector");
                if !sel.iter().all(|(k, v)| labels[k] == *v) {
                    continue;
                }
                let sname = str_of(&s["metadata"]["name"]);
                for p in s["spec"]["ports"].as_array().expect("ports") {
                    let target = str_of(&p["targetPort"]);
                    assert!(
                        listening.contains(&target),
                        "{at}: Service {sname} targets {target}"
                    );
                }
                if s["spec"]["clusterIP"] != "None" {
                    let ns = str_of(&s["metadata"]["namespace"]);
                    for host in [
                        sname.to_owned(),
                        format!("{sname}.{ns}.svc"),
                        format!("{sname}.{ns}.svc.cluster.local"),
                    ] {
                        assert!(
                            hosts.split(',').any(|h| h.trim() == host),
                            "{at}: api.hosts lacks {host}, so the API refuses requests through Service {sname}"
                        );
                    }
                }
            }
        }
        assert!(checked >= 1, "{name}: no chokepoint workload");

        // The ServiceMonitor scrapes /metrics on the API port of the analysers' Service.
        let sm = kind(docs, "ServiceMonitor")
            .next()
            .expect("a ServiceMonitor");
        let ep = &sm["spec"]["endpoints"][0];
        assert_eq!(ep["port"], "api");
        assert_eq!(ep["path"], "/metrics");
        assert!(d
            .text("/metrics")
            .contains("# TYPE chokepoint_spans_received_total"));
        let sel = sm["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        let scraped: Vec<&str> = kind(docs, "Service")
            .filter(|s| sel.iter().all(|(k, v)| s["metadata"]["labels"][k] == *v))
            .map(|s| str_of(&s["metadata"]["name"]))
            .collect();
        assert_eq!(
            scraped,
            ["chokepoint"],
            "{name}: the ServiceMonitor selects {scraped:?}"
        );
    }

    // The overlay: the routing Collector resolves the shards' headless Service on their OTLP
    // port; the global reader reads a Prometheus.
    let (_, _, docs) = &rendered[1];
    let otelcol = kind(docs, "ConfigMap")
        .find(|c| c["data"]["otelcol.yaml"].is_string())
        .expect("the Collector's ConfigMap");
    let python = super::daemon::python().expect("python");
    let col = documents(&python, str_of(&otelcol["data"]["otelcol.yaml"]));
    let lb = &col[0]["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"], "traceID");
    let headless = kind(docs, "Service")
        .find(|s| s["spec"]["clusterIP"] == "None")
        .expect("a headless Service");
    assert_eq!(
        lb["resolver"]["dns"]["hostname"],
        headless["metadata"]["name"]
    );
    let grpc = port_of(&key(
        &toml::Table::new(),
        &defaults,
        "receivers.grpc_listen",
    ));
    assert_eq!(lb["resolver"]["dns"]["port"], grpc.to_string());
    assert!(headless["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["port"] == grpc && p["targetPort"] == "otlp-grpc"));
    let shards = kind(docs, "StatefulSet").next().expect("shards");
    assert!(shards["spec"]["replicas"].as_u64() > Some(1));
    assert_eq!(shards["spec"]["serviceName"], headless["metadata"]["name"]);
    let global = kind(docs, "ConfigMap")
        .find(|c| str_of(&c["metadata"]["name"]).starts_with("chokepoint-global-config"))
        .expect("the global reader's config");
    let global: toml::Table = str_of(&global["data"]["chokepoint.toml"])
        .parse()
        .expect("TOML");
    assert!(key(&global, &defaults, "source.prometheus_url").starts_with("http"));

    // The Collector recipes send to the daemon's OTLP/gRPC port.
    for f in [
        "beside-jaeger-tempo.yaml",
        "loadbalancing.yaml",
        "sampling.yaml",
    ] {
        let text = std::fs::read_to_string(root().join("deploy/collector").join(f)).expect("read");
        let doc = &documents(&python, &text)[0];
        let exporters = doc["exporters"].as_object().expect("exporters");
        let mut to_us = 0;
        for (k, e) in exporters {
            if k == "otlp/chokepoint" {
                assert!(str_of(&e["endpoint"]).ends_with(&format!(":{grpc}")), "{f}");
                to_us += 1;
            } else if k == "loadbalancing" {
                for h in e["resolver"]["static"]["hostnames"]
                    .as_array()
                    .expect("hosts")
                {
                    assert!(str_of(h).ends_with(&format!(":{grpc}")), "{f}");
                }
                to_us += 1;
            }
        }
        assert_eq!(to_us, 1, "{f}: one exporter to chokepoint");
        for (p, pipe) in doc["service"]["pipelines"].as_object().expect("pipelines") {
            for e in pipe["exporters"].as_array().expect("exporters") {
                assert!(exporters.contains_key(str_of(e)), "{f}: {p} exports to {e}");
            }
        }
    }

    // The image: its config listens where the Containerfile says it exposes.
    let image: toml::Table = std::fs::read_to_string(root().join("deploy/image/chokepoint.toml"))
        .expect("read")
        .parse()
        .expect("TOML");
    let exposed: BTreeSet<u64> = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    let listens: BTreeSet<u64> = [
        "receivers.grpc_listen",
        "receivers.http_listen",
        "api.listen",
        "api.grpc_listen",
    ]
    .into_iter()
    .map(|k| {
        let l = key(&image, &defaults, k);
        assert!(l.starts_with("0.0.0.0:"), "the image's {k} = {l}");
        port_of(&l)
    })
    .collect();
    assert_eq!(exposed, listens);
}
