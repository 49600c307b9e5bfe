//! `chokepoint serve`: the one place the daemon's tasks and channels are wired.
//!
//! ```text
//! OTLP/gRPC :4317 ─┐                         ┌─ view (watch) ─► API, dashboard, Watch
//!                  ├─► Submitter ─► batches ─► Pipeline task (engine)
//! OTLP/HTTP :4318 ─┘        (bounded, try_send) ▲ events: queries, ticks, snapshots, shutdown
//!                                               └─ API :8787 (queries)
//! ```
//! Shutdown (SIGTERM, SIGINT): receivers stop accepting and finish their requests, the
//! pipeline drains what was queued, completes every trace in flight, snapshots, and exits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::analyze::engine::Engine;
use crate::api::view::View;
use crate::serve::auth::Token;
use crate::serve::config::Config;
use crate::serve::listener::{grpc_incoming, serve_http};
use crate::serve::pipeline::{engine_config, Event, Pipeline};
use crate::serve::query::http::ApiState;
use crate::serve::receive::submit::Submitter;
use crate::serve::state::StateDir;
use crate::serve::stats::Stats;
use crate::serve::tls::{Reloading, ALPN_GRPC, ALPN_HTTP1};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("state: {0}")]
    State(#[from] crate::serve::state::StateError),
    #[error("bearer token: {0}")]
    Token(#[from] crate::serve::auth::TokenError),
    #[error("TLS ({what}): {source}")]
    Tls {
        what: &'static str,
        source: crate::serve::tls::TlsError,
    },
    #[error("{what} server failed: {message}")]
    Server { what: &'static str, message: String },
}

/// The bound addresses, known once listening (ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub api_grpc: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, what, source })
}

/// A server that cannot fail once listening, typed like those that can.
async fn ok(f: impl std::future::Future<Output = ()>) -> Result<(), String> {
    f.await;
    Ok(())
}

fn every(events: mpsc::Sender<Event>, period: Duration, make: fn() -> Event) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            if events.send(make()).await.is_err() {
                return;
            }
        }
    });
}

/// Runs the daemon until `stop` resolves. `on_ready` is called once everything listens.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(Bound),
) -> Result<(), DaemonError> {
    let token = |f: &Option<std::path::PathBuf>| -> Result<Option<Token>, DaemonError> {
        Ok(match f {
            Some(p) => Some(Token::from_file(p)?),
            None => None,
        })
    };
    let ingest_token = token(&cfg.receivers_token_file)?;
    let api_token = token(&cfg.api_token_file)?;
    let exposed = |a: SocketAddr| !a.ip().is_loopback();
    if ingest_token.is_none() && (exposed(cfg.grpc_listen) || exposed(cfg.http_listen)) {
        tracing::warn!(
            grpc = %cfg.grpc_listen, http = %cfg.http_listen,
            "the OTLP receivers listen beyond loopback WITHOUT a token: anyone who can reach \
             them can send spans (set receivers.bearer_token_file)"
        );
    }
    if api_token.is_none() && (exposed(cfg.api_listen) || exposed(cfg.api_grpc_listen)) {
        tracing::warn!(
            api = %cfg.api_listen, api_grpc = %cfg.api_grpc_listen,
            "the API listens beyond loopback WITHOUT a token: anyone who can reach it can read \
             your service graph (set api.bearer_token_file)"
        );
    }
    for (what, tls, token, addrs) in [
        (
            "receivers",
            &cfg.receivers_tls,
            &ingest_token,
            [cfg.grpc_listen, cfg.http_listen],
        ),
        (
            "api",
            &cfg.api_tls,
            &api_token,
            [cfg.api_listen, cfg.api_grpc_listen],
        ),
    ] {
        if token.is_some() && tls.is_none() && addrs.iter().any(|a| exposed(*a)) {
            tracing::warn!(
                what,
                "bearer token over plain text beyond loopback: anyone on the path can read it \
                 (configure {what}.tls)"
            );
        }
    }
    let tls = |files: &Option<crate::serve::tls::TlsFiles>,
               alpn: &'static [&'static [u8]],
               what: &'static str|
     -> Result<Option<Reloading>, DaemonError> {
        files
            .clone()
            .map(|f| Reloading::start(f, alpn, what))
            .transpose()
            .map_err(|source| DaemonError::Tls { what, source })
    };
    let grpc_tls = tls(&cfg.receivers_tls, ALPN_GRPC, "OTLP/gRPC")?;
    let http_tls = tls(&cfg.receivers_tls, ALPN_HTTP1, "OTLP/HTTP")?;
    let api_grpc_tls = tls(&cfg.api_tls, ALPN_GRPC, "gRPC query API")?;
    let api_tls = tls(&cfg.api_tls, ALPN_HTTP1, "API")?;
    let stats = Arc::new(Stats::default());
    let ecfg = engine_config(&cfg);
    let mut engine = Engine::new(ecfg);
    let state = match &cfg.state_dir {
        Some(d) => {
            let dir = StateDir::open(d)?;
            match dir.restore(&mut engine, ecfg.max_names, ecfg.max_nodes) {
                Ok(true) => tracing::info!(path = %dir.path().display(), "state restored"),
                Ok(false) => {}
                // A bad snapshot must not keep the daemon down: start empty, say so loudly.
                Err(e) => {
                    tracing::error!(%e, "state not restored; starting empty");
                    eprintln!("chokepoint: STATE NOT RESTORED, starting empty: {e}");
                }
            }
            Some(dir)
        }
        None => None,
    };
    let (batch_tx, batch_rx) = mpsc::channel(cfg.queue_batches);
    let (event_tx, event_rx) = mpsc::channel(256);
    let (view_tx, view_rx) = watch::channel(Arc::new(View::empty()));
    // The global view: the API reads what the store's series sum to; this daemon's own
    // pipeline still runs (and keeps its books) but publishes where nobody reads.
    let store = cfg
        .source
        .prometheus_url
        .as_deref()
        .map(crate::scale::global::Store::new)
        .transpose()
        .map_err(|e| DaemonError::Server {
            what: "source",
            message: e.to_string(),
        })?;
    let view_tx = match store {
        Some(store) => {
            tracing::info!(
                url = ?cfg.source.prometheus_url,
                "serving the global view: findings from the instances' aggregates in the store; \
                 spans sent to this daemon's receivers are not in it"
            );
            tokio::spawn(crate::scale::global::publish(
                store,
                crate::scale::global::ViewSettings {
                    window: cfg.window,
                    history: cfg.history,
                    bucket: cfg.bucket,
                    refresh: cfg.refresh,
                    silent_after: cfg.source.silent_after,
                },
                view_tx,
            ));
            watch::channel(Arc::new(View::empty())).0
        }
        None => view_tx,
    };
    let pipeline = Pipeline::new(engine, cfg.clone(), stats.clone(), view_tx, state);
    let pipeline_task = tokio::spawn(pipeline.run(event_rx, batch_rx));
    let _ = event_tx.send(Event::Refresh).await;

    let grpc_l = bind(cfg.grpc_listen, "OTLP/gRPC").await?;
    let http_l = bind(cfg.http_listen, "OTLP/HTTP").await?;
    let api_l = bind(cfg.api_listen, "API").await?;
    let api_grpc_l = bind(cfg.api_grpc_listen, "gRPC query API").await?;
    let local = |l: &TcpListener, a| l.local_addr().unwrap_or(a);
    let bound = Bound {
        grpc: local(&grpc_l, cfg.grpc_listen),
        http: local(&http_l, cfg.http_listen),
        api: local(&api_l, cfg.api_listen),
        api_grpc: local(&api_grpc_l, cfg.api_grpc_listen),
    };

    let limits = crate::ingest::local::LocalLimits {
        time: crate::serve::pipeline::time_limits(&cfg),
        max_names: ecfg.max_names,
    };
    let sub = Submitter::new(batch_tx, stats.clone(), cfg.max_request_bytes, limits);
    let (stop_rx_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc = tokio::spawn({
        let svc = crate::serve::receive::grpc::service(sub.clone(), ingest_token.clone());
        let grpc_stats = stats.clone();
        let s = stopped(stop_rx.clone());
        let incoming = grpc_incoming(
            grpc_l,
            grpc_tls,
            cfg.receivers_limits,
            stats.receivers_conns.clone(),
            stop_rx.clone(),
        );
        async move {
            // HTTP/2 windows large enough for a typical export request in one round trip;
            // pings keep idle exporters' connections alive and find dead ones.
            tonic::transport::Server::builder()
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .layer(tower::util::MapResponseLayer::new(move |r| {
                    crate::serve::receive::grpc::too_large_is_not_retryable(r, &grpc_stats)
                }))
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, s)
                .await
                .map_err(|e| e.to_string())
        }
    });
    let http = tokio::spawn(ok(serve_http(
        http_l,
        http_tls,
        cfg.receivers_limits,
        stats.receivers_conns.clone(),
        crate::serve::receive::http::router(sub.clone(), ingest_token.clone()),
        stop_rx.clone(),
    )));
    drop(sub);
    let ready = Arc::new(AtomicBool::new(false));
    let (api_stop_tx, api_stop_rx) = watch::channel(false);
    let api_state = ApiState {
        events: event_tx.clone(),
        view: view_rx.clone(),
        stats: stats.clone(),
        ready: ready.clone(),
        window: cfg.window,
        refresh: cfg.refresh,
        trace_url: cfg.trace_url.clone(),
        token: api_token.clone(),
        hosts: cfg.api_hosts.clone(),
        cors_origins: cfg.api_cors_origins.clone(),
    };
    let api_grpc = tokio::spawn({
        let svc = crate::serve::query::grpc::service(api_state.clone());
        let s = stopped(api_stop_rx.clone());
        let incoming = grpc_incoming(
            api_grpc_l,
            api_grpc_tls,
            cfg.api_limits,
            stats.api_conns.clone(),
            api_stop_rx.clone(),
        );
        async move {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, s)
                .await
                .map_err(|e| e.to_string())
        }
    });
    let api = tokio::spawn(ok(serve_http(
        api_l,
        api_tls,
        cfg.api_limits,
        stats.api_conns.clone(),
        crate::serve::query::http::router(api_state),
        api_stop_rx,
    )));
    every(event_tx.clone(), Duration::from_millis(500), || Event::Tick);
    every(event_tx.clone(), cfg.refresh, || Event::Refresh);
    if cfg.state_dir.is_some() {
        every(event_tx.clone(), cfg.snapshot_interval, || Event::Snapshot);
    }
    let remote_write = cfg.export.remote_write_url.clone();
    if remote_write.is_some() && cfg.source.prometheus_url.is_some() {
        tracing::warn!("export.remote_write_url is ignored with source.prometheus_url: the global view re-exported would count every instance twice");
    }
    if let Some(url) = remote_write.filter(|_| cfg.source.prometheus_url.is_none()) {
        let instance = if cfg.export.instance.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "chokepoint".into());
            format!("{host}:{}", bound.grpc.port())
        } else {
            cfg.export.instance.clone()
        };
        tracing::info!(%url, %instance, "remote-writing the aggregates");
        tokio::spawn(crate::scale::remote_write::run(
            url,
            instance,
            cfg.export.remote_write_interval,
            view_rx.clone(),
            stats.remote_write.clone(),
        ));
    }
    ready.store(true, Ordering::Relaxed);
    on_ready(bound);

    stop.await;
    tracing::info!("stopping: receivers close, the pipeline drains");
    ready.store(false, Ordering::Relaxed);
    let _ = stop_rx_tx.send(true);
    let server = |what: &'static str| {
        move |r: Result<Result<(), String>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(DaemonError::Server { what, message }),
            Err(e) => Err(DaemonError::Server {
                what,
                message: e.to_string(),
            }),
        }
    };
    // A client that stalls mid-request must not hold shutdown hostage: past the grace
    // period its connection is cut and the drain goes on.
    let grace = Duration::from_secs(10);
    let finish = |task: tokio::task::JoinHandle<Result<(), String>>, what: &'static str| async move {
        let abort = task.abort_handle();
        match tokio::time::timeout(grace, task).await {
            Ok(r) => server(what)(r),
            Err(_) => {
                abort.abort();
                tracing::warn!(
                    what,
                    "receiver did not stop within the grace period; cut off"
                );
                Ok(())
            }
        }
    };
    let g = finish(grpc, "OTLP/gRPC").await;
    let h = finish(http, "OTLP/HTTP").await;
    let (done_tx, done_rx) = oneshot::channel();
    if event_tx.send(Event::Shutdown(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    let _ = pipeline_task.await;
    let _ = api_stop_tx.send(true);
    let a = server("API")(api.await);
    // Watch streams never end on their own; the shutdown drops them.
    api_grpc.abort();
    g.and(h).and(a)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
