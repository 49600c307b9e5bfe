//! The `chokepoint` command: flags in [`args`] (clap types only), one file per command for
//! what runs them, and [`load`] for what the file-reading commands share. Errors are `anyhow`
//! here and only here.

mod args;
mod critical_path;
mod graph;
mod load;
mod query;
mod replay;
mod serve;
mod simulate;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::Result;

use chokepoint::serve::config;

pub use args::Cli;
use args::Command;

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Graph(a) => graph::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Query(a) => query::run(a),
        Command::CriticalPath(a) => critical_path::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Validate(a) => serve::validate(a),
        Command::GenConfig => {
            print!("{}", config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A command's exit status: 1 when some input could not be read (the rest was used).
fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
