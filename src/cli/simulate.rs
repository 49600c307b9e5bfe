//! `chokepoint simulate`: the reference shop's traffic, to a file or to a running daemon.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;

use chokepoint::ingest::encode;
use chokepoint::simulate::{self, stream, Scenario, SimConfig};

use super::args::SimulateArgs;
use super::load::runtime;

pub fn run(a: SimulateArgs) -> Result<ExitCode> {
    if let Some(endpoint) = &a.endpoint {
        let schedule = stream::parse_schedule(&a.scenario).map_err(|e| anyhow::anyhow!(e))?;
        let total = a.duration.map(Duration::from_nanos);
        let sent =
            runtime()?.block_on(stream::stream(endpoint, &schedule, a.rate, a.seed, total))?;
        eprintln!("sent {sent} traces to {endpoint}");
        return Ok(ExitCode::SUCCESS);
    }
    let scenario: Scenario = a.scenario.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let traces = a.traces.unwrap_or(match scenario {
        Scenario::Lab(l) => l.default_traces(),
        _ => SimConfig::default().traces,
    });
    if traces == 0 || a.rate.is_nan() || a.rate <= 0.0 {
        bail!("--traces and --rate must be positive");
    }
    let cfg = SimConfig {
        scenario,
        seed: a.seed,
        traces,
        rate_per_s: a.rate,
        ..Default::default()
    };
    let write_all = |w: &mut dyn Write| -> io::Result<()> {
        for req in simulate::generate(&cfg) {
            writeln!(w, "{}", encode::encode_line(&req))?;
        }
        Ok(())
    };
    match &a.out {
        None => {
            let mut w = BufWriter::new(io::stdout().lock());
            write_all(&mut w)?;
            w.flush()?;
        }
        Some(p) if p.extension().is_some_and(|e| e == "binpb") => {
            let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let mut w = BufWriter::new(f);
            let mut write = |resource_spans| -> io::Result<()> {
                let req =
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                        resource_spans,
                    };
                let bytes = prost::Message::encode_to_vec(&req);
                w.write_all(&(bytes.len() as u32).to_be_bytes())?;
                w.write_all(&bytes)
            };
            let mut chunk = Vec::new();
            let mut written = Ok(());
            for (i, req) in simulate::generate(&cfg).enumerate() {
                chunk.extend(req.resource_spans);
                if i % 20 == 19 {
                    written = written.and_then(|()| write(std::mem::take(&mut chunk)));
                }
            }
            if !chunk.is_empty() {
                written = written.and_then(|()| write(chunk));
            }
            written
                .and_then(|()| w.flush())
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Some(p) if p.extension().is_some_and(|e| e == "pb") => {
            // One serialized ExportTraceServiceRequest holding every trace.
            let all = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                resource_spans: simulate::generate(&cfg)
                    .flat_map(|r| r.resource_spans)
                    .collect(),
            };
            std::fs::write(p, prost::Message::encode_to_vec(&all))
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Some(p) => {
            let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let written = if p.extension().is_some_and(|e| e == "gz") {
                let mut enc = GzEncoder::new(BufWriter::new(f), flate2::Compression::best());
                write_all(&mut enc).and_then(|()| enc.finish()?.flush())
            } else {
                let mut w = BufWriter::new(f);
                write_all(&mut w).and_then(|()| w.flush())
            };
            written.with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
