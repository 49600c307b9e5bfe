//! Text renderings for people and tools: aligned tables and Graphviz DOT.

use std::fmt::Write as _;

use crate::api::dto::{GraphDoc, Percentiles};
use crate::report::format::{pct1, table_ms};

fn ms(p: &Option<Percentiles>) -> (String, String) {
    match p {
        Some(p) => (table_ms(p.p50), table_ms(p.p99)),
        None => ("-".into(), "-".into()),
    }
}

/// A table with a header row; columns are left-aligned except the numeric ones (all but the
/// first `left` columns), which align right.
pub fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut parts = Vec::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            parts.push(if i < left {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            });
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

pub fn graph_table(g: &GraphDoc) -> String {
    let mut out = format!(
        "{} traces, {} spans ({} fragmented traces)\n\nNODES\n",
        g.traces, g.spans, g.fragmented_traces
    );
    let rows: Vec<Vec<String>> = g
        .nodes
        .iter()
        .map(|n| {
            let (p50, p99) = ms(&n.latency_ms);
            let (s50, _) = ms(&n.self_time_ms);
            let inst = match n.instances {
                None => "unknown".to_owned(),
                Some(k) if n.instances_more => format!("{k}+"),
                Some(k) => k.to_string(),
            };
            vec![
                n.name.clone(),
                n.node_type.to_owned(),
                n.requests.to_string(),
                pct1(n.error_rate),
                p50,
                p99,
                s50,
                inst,
                n.callers.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "node",
            "type",
            "requests",
            "errors",
            "p50 ms",
            "p99 ms",
            "self p50",
            "instances",
            "callers",
        ],
        &rows,
        2,
    ));
    out.push_str("\nEDGES\n");
    let rows: Vec<Vec<String>> = g
        .edges
        .iter()
        .map(|e| {
            let (c50, c99) = ms(&e.client_ms);
            let (s50, s99) = ms(&e.server_ms);
            let (q50, q99) = ms(&e.queue_ms);
            let kind = match e.connection_type {
                "" => "sync",
                "messaging_system" => "messaging",
                "database" => "database",
                _ => "external",
            };
            vec![
                format!("{} -> {}", e.from, e.to),
                kind.to_owned(),
                e.calls.to_string(),
                pct1(e.error_rate),
                c50,
                c99,
                s50,
                s99,
                if e.queue_ms.is_some() {
                    format!("{q50} / {q99}")
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "edge",
            "kind",
            "calls",
            "errors",
            "client p50",
            "client p99",
            "server p50",
            "server p99",
            "queue p50/p99",
        ],
        &rows,
        2,
    ));
    out
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn graph_dot(g: &GraphDoc) -> String {
    let mut out =
        String::from("digraph chokepoint {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for n in &g.nodes {
        let shape = match n.node_type {
            "database" => "cylinder",
            "messaging" => "cds",
            "external" => "box3d",
            _ => "box",
        };
        let inst = n.instances.map_or("?".to_owned(), |k| k.to_string());
        let _ = writeln!(
            out,
            "  {} [shape={shape}, label={}];",
            dot_id(&n.name),
            dot_id(&format!("{}\\n{} req, {} inst", n.name, n.requests, inst))
        );
    }
    for e in &g.edges {
        let p99 = e
            .client_ms
            .as_ref()
            .or(e.server_ms.as_ref())
            .map_or(String::new(), |p| format!(", p99 {} ms", table_ms(p.p99)));
        let style = if e.connection_type == "messaging_system" {
            ", style=dashed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{style}];",
            dot_id(&e.from),
            dot_id(&e.to),
            dot_id(&format!("{} calls{p99}", e.calls))
        );
    }
    out.push_str("}\n");
    out
}

use crate::api::dto::FindingsDoc;

fn window_line(doc: &FindingsDoc) -> String {
    let mut s = format!(
        "window {} .. {}: {} traces, {} spans",
        doc.window.start, doc.window.end, doc.traces, doc.spans
    );
    if let Some(b) = &doc.baseline {
        s.push_str(&format!(
            "; baseline {} traces ({} .. {})",
            b.traces, b.window.start, b.window.end
        ));
    }
    s
}

pub fn findings_table(doc: &FindingsDoc) -> String {
    let mut out = window_line(doc);
    out.push_str("\n\n");
    if doc.findings.is_empty() {
        out.push_str(
            "No findings: no node stands out as a bottleneck or a single point of failure.\n",
        );
        return out;
    }
    let rows: Vec<Vec<String>> = doc
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            vec![
                (i + 1).to_string(),
                f.kind.to_owned(),
                f.severity.to_owned(),
                format!("{:.2}", f.score),
                f.confidence.to_owned(),
                f.node.clone(),
                f.node_type.to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "#",
            "kind",
            "severity",
            "score",
            "confidence",
            "node",
            "type",
        ],
        &rows,
        0,
    ));
    out.push('\n');
    for (i, f) in doc.findings.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, f.summary);
        let _ = writeln!(out, "   cure: {}", f.remediation);
    }
    capacity_table(doc, &mut out);
    out
}

/// Nodes with a known capacity, least headroom first, the first to saturate, and the
/// what-if load when asked.
fn capacity_table(doc: &FindingsDoc, out: &mut String) {
    let mut known: Vec<_> = doc
        .capacity
        .iter()
        .filter(|c| c.capacity_rps.is_some())
        .collect();
    if known.is_empty() {
        return;
    }
    known.sort_by(|a, b| {
        a.headroom
            .unwrap_or(f64::MAX)
            .total_cmp(&b.headroom.unwrap_or(f64::MAX))
    });
    let n = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let rows: Vec<Vec<String>> = known
        .iter()
        .map(|c| {
            vec![
                c.node.clone(),
                format!("{:.2}", c.rate_rps),
                n(c.capacity_rps),
                n(c.headroom),
                c.limit.to_owned(),
                c.confidence.to_owned(),
            ]
        })
        .collect();
    out.push_str("\nCapacity (requests/s):\n");
    out.push_str(&table(
        &[
            "node",
            "rate",
            "capacity",
            "headroom",
            "limit",
            "confidence",
        ],
        &rows,
        1,
    ));
    if let Some(f) = &doc.first_to_saturate {
        let _ = writeln!(
            out,
            "First to saturate: {} at {:.2}× today's entry traffic.",
            f.node, f.at_load_factor
        );
    }
    if let Some(w) = &doc.what_if_load {
        let _ = writeln!(out, "\nAt {}× today's entry traffic:", w.load);
        for c in &w.nodes {
            let latency = c
                .expected_latency_ms
                .map_or("its queue grows without bound".to_owned(), |l| {
                    format!("expected latency {l:.1} ms")
                });
            let _ = writeln!(
                out,
                "  {}: {:.2}/s of {:.2}/s ({:.0}%){}, {latency}",
                c.node,
                c.rate_rps,
                c.capacity_rps,
                100.0 * c.utilisation,
                if c.over_capacity {
                    ", OVER CAPACITY"
                } else {
                    ""
                }
            );
        }
    }
}

fn evidence_lines(v: &serde_json::Value, prefix: &str, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        let _ = writeln!(out, "{prefix}- {k}:");
                        evidence_lines(v, &format!("{prefix}  "), out);
                    }
                    _ => {
                        let _ = writeln!(out, "{prefix}- {k}: {v}");
                    }
                }
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                match v {
                    serde_json::Value::Object(m) => {
                        let parts: Vec<String> =
                            m.iter().map(|(k, v)| format!("{k} {v}")).collect();
                        let _ = writeln!(out, "{prefix}- {}", parts.join(", "));
                    }
                    _ => {
                        let _ = writeln!(out, "{prefix}- {v}");
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{prefix}- {other}");
        }
    }
}

pub fn findings_markdown(doc: &FindingsDoc) -> String {
    let mut out = String::from("# chokepoint findings\n\n");
    let _ = writeln!(out, "{}\n", window_line(doc));
    if doc.findings.is_empty() {
        out.push_str(
            "No findings: no node stands out as a bottleneck or a single point of failure.\n",
        );
        return out;
    }
    out.push_str(
        "| # | kind | severity | score | confidence | node |\n|---|---|---|---|---|---|\n",
    );
    for (i, f) in doc.findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | `{}` ({}) |",
            i + 1,
            f.kind,
            f.severity,
            f.score,
            f.confidence,
            f.node,
            f.node_type
        );
    }
    for (i, f) in doc.findings.iter().enumerate() {
        let _ = writeln!(out, "\n## {}. {} `{}`\n", i + 1, f.kind, f.node);
        let _ = writeln!(out, "{}\n", f.summary);
        let _ = writeln!(out, "**Cure:** {}\n", f.remediation);
        out.push_str("**Evidence:**\n\n");
        evidence_lines(
            &serde_json::to_value(&f.evidence).unwrap_or_default(),
            "",
            &mut out,
        );
        if !f.exemplar_trace_ids.is_empty() {
            let _ = writeln!(
                out,
                "\nExemplar traces: {}",
                f.exemplar_trace_ids
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    out
}
