//! The `chokepoint` command: a thin layer that parses arguments and calls the library.

mod cli;

use clap::Parser;

/// Receivers allocate on one thread and the pipeline frees on another; glibc's arenas then
/// contend on a lock per free (a third of the daemon's CPU under load, by perf). mimalloc
/// frees across threads without it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error worth a message.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", chain_text(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: most library errors already put their cause in
/// their own message, so a cause whose text the message holds is not repeated.
fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
