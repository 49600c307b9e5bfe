//! `chokepoint query`: findings of every instance's aggregates, summed, from a Prometheus
//! store.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use chokepoint::api::render;

use super::args::{QueryArgs, ReportFormat};

pub fn run(a: QueryArgs) -> Result<ExitCode> {
    let d =
        |what: &str, v: &str| parse_duration_days(v).map_err(|e| anyhow::anyhow!("--{what}: {e}"));
    let window = d("window", &a.window)?.as_secs_f64();
    let to =
        a.at.unwrap_or_else(|| chokepoint::clock::now_ns() as f64 / 1e9);
    let from = to - window;
    let baseline = match &a.baseline_offset {
        Some(off) => {
            let off = d("baseline-offset", off)?.as_secs_f64();
            (from - off, to - off)
        }
        None => (from - d("baseline", &a.baseline)?.as_secs_f64(), from),
    };
    let silent_after = d("silent-after", &a.silent_after)?;
    let store = chokepoint::scale::global::Store::new(&a.prometheus_url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // One range query covers what is contiguous; an offset baseline is asked apart.
    let series = rt.block_on(async {
        if baseline.1 >= from {
            return store.range(baseline.0, to).await;
        }
        let mut s = store.range(baseline.0, baseline.1).await?;
        s.extend(store.range(from, to).await?);
        Ok(s)
    })?;
    if series.is_empty() {
        bail!(
            "{}: no chokepoint series between {} and {} (is export.aggregates on, and the store \
             scraping or receiving them?)",
            a.prometheus_url,
            chokepoint::api::dto::rfc3339((baseline.0.min(from) * 1e9) as u64),
            chokepoint::api::dto::rfc3339((to * 1e9) as u64)
        );
    }
    let contributors = chokepoint::scale::global::contributors(&series, to, silent_after);
    let doc =
        chokepoint::scale::global::findings(&series, (from, to), Some(baseline), &contributors);
    let out = match a.format {
        ReportFormat::Json => serde_json::to_string(&doc)? + "\n",
        ReportFormat::Table => render::findings_table(&doc),
        ReportFormat::Markdown => render::findings_markdown(&doc),
    };
    io::stdout().write_all(out.as_bytes())?;
    Ok(if contributors.iter().any(|c| c.silent) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A duration as the config takes it, plus days (`7d`) for baselines.
fn parse_duration_days(v: &str) -> Result<Duration, String> {
    match v.trim().strip_suffix('d') {
        Some(n) => n
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|d| Duration::try_from_secs_f64(d * 86_400.0).ok())
            .ok_or_else(|| format!("{v:?} is not a duration")),
        None => chokepoint::clock::parse_duration(v),
    }
}
