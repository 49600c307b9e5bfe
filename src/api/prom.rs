//! The Prometheus text exposition format, written in one place: label values escaped one way,
//! one `# HELP`/`# TYPE` header shape, one sample line. `/metrics` (the service graph, the
//! findings' scores, the daemon's counters) and the exported aggregates of
//! [`crate::scale::exchange`] all go through it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One series' value at an instant, as `/metrics` shows it and remote-write sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` of one metric family.
pub fn header(out: &mut String, name: &str, ty: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
}

/// `name{k="v",...} value`; no braces without labels.
pub fn line<'a, V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    value: V,
) {
    out.push_str(name);
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Samples grouped by metric, in the order of `families` (`(name, type, help)`), each family
/// under its header; samples of names not in `families` are left out.
pub fn write_samples(samples: &[Sample], families: &[(&str, &str, &str)], out: &mut String) {
    let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_name.entry(s.name).or_default().push(s);
    }
    for (name, ty, help) in families {
        let Some(v) = by_name.get(name) else {
            continue;
        };
        header(out, name, ty, help);
        for s in v {
            line(
                out,
                name,
                s.labels.iter().map(|(k, v)| (*k, v.as_str())),
                s.value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_bare_series_have_no_braces() {
        let mut out = String::new();
        line(&mut out, "m", [("a", "x\"y\\z\nw"), ("b", "2")], 1.5);
        line(&mut out, "n", [], 3);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\",b=\"2\"} 1.5\nn 3\n");
    }
}
