//! `chokepoint serve` and `chokepoint validate`: the daemon, and its configuration checked
//! without starting it.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use chokepoint::serve::config::{self, Config, Overrides};
use chokepoint::serve::daemon::{self, Bound};
use chokepoint::simulate::stream;

use super::args::{ServeArgs, ValidateArgs};
use super::load::runtime;

fn load_config(path: Option<&PathBuf>, o: &Overrides) -> Result<Config> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read config {}", p.display()))?,
        None => String::new(),
    };
    // With no file, the fault is in a flag or the environment, and the error names its key.
    Config::from_toml(&text, o).with_context(|| match path {
        Some(p) => format!("invalid configuration in {}", p.display()),
        None => "invalid configuration".to_owned(),
    })
}

pub fn validate(a: ValidateArgs) -> Result<ExitCode> {
    let o = Overrides {
        set: config::env_overrides(std::env::vars()),
        ..Default::default()
    };
    load_config(Some(&a.config), &o)?;
    println!("ok: {}", a.config.display());
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let mut set = config::env_overrides(std::env::vars());
    set.extend(a.set.iter().cloned());
    let o = Overrides {
        set,
        grpc_listen: a.grpc_listen.clone(),
        http_listen: a.http_listen.clone(),
        api_listen: a.api_listen.clone(),
        api_grpc_listen: a.api_grpc_listen.clone(),
        state_dir: a.state_dir.clone(),
        window: a.window.clone(),
        refresh: a.refresh.clone(),
        trace_idle: a.trace_idle.clone(),
        queue_batches: a.queue_batches,
    };
    let cfg = load_config(a.config.as_ref(), &o)?;
    let schedule = if a.demo {
        Some(stream::parse_schedule(&a.demo_schedule).map_err(|e| anyhow::anyhow!(e))?)
    } else {
        None
    };
    let rate = a.demo_rate;
    let rt = runtime()?;
    rt.block_on(async move {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Bound>();
        let demo = schedule.map(|schedule| {
            tokio::spawn(async move {
                let Ok(bound) = ready_rx.await else { return };
                let endpoint = format!("http://{}", bound.grpc);
                if let Err(e) = stream::stream(&endpoint, &schedule, rate, 1, None).await {
                    tracing::warn!(%e, "demo traffic stopped");
                }
            })
        });
        let api_scheme = if cfg.api_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let result = daemon::run(cfg, daemon::signals(), |b: Bound| {
            println!(
                "chokepoint listening: otlp-grpc={} otlp-http={} api={api_scheme}://{} api-grpc={}",
                b.grpc, b.http, b.api, b.api_grpc
            );
            let _ = io::stdout().flush();
            let _ = ready_tx.send(b);
        })
        .await;
        if let Some(d) = demo {
            d.abort();
        }
        result
    })?;
    Ok(ExitCode::SUCCESS)
}
