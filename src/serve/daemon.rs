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
use tokio::task::JoinHandle;

use crate::analyze::engine::{Engine, EngineConfig};
use crate::api::view::View;
use crate::serve::auth::Token;
use crate::serve::config::Config;
use crate::serve::listener::{grpc_incoming, serve_http};
use crate::serve::pipeline::{engine_config, Event, Pipeline};
use crate::serve::query::http::ApiState;
use crate::serve::receive::submit::{Submission, Submitter};
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
    #[error("source server failed: {0}")]
    Source(#[from] crate::scale::global::GlobalError),
    #[error("{what} server failed: {source}")]
    Server {
        what: &'static str,
        source: ServerError,
    },
}

/// Why a server task ended in error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The bound addresses, known once listening (ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub api_grpc: SocketAddr,
}

type ServerTask = JoinHandle<Result<(), ServerError>>;

/// A server that cannot fail once listening, typed like those that can.
async fn ok(f: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
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
///
/// In phases: guard (tokens, TLS), restore (the engine from its snapshot), start the
/// pipeline, bind the listeners, spawn the receivers, the APIs and the timers, serve until
/// `stop`, drain.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(Bound),
) -> Result<(), DaemonError> {
    let guards = Guards::load(&cfg)?;
    let stats = Arc::new(Stats::default());
    let ecfg = engine_config(&cfg);
    let (engine, state) = restore(&cfg, ecfg)?;
    let (pipeline, batches) = start_pipeline(&cfg, engine, state, stats.clone()).await?;
    let (listeners, bound) = Listeners::bind(&cfg).await?;
    let receivers = spawn_receivers(
        &cfg,
        listeners.grpc,
        listeners.http,
        &guards,
        batches,
        &stats,
        ecfg.max_names,
    );
    let ready = Arc::new(AtomicBool::new(false));
    let api = spawn_api(
        &cfg,
        listeners.api,
        listeners.api_grpc,
        &guards,
        &pipeline,
        &stats,
        ready.clone(),
    );
    spawn_timers(&cfg, &pipeline.events);
    spawn_remote_write(&cfg, bound, &pipeline, &stats);
    ready.store(true, Ordering::Relaxed);
    on_ready(bound);

    stop.await;
    tracing::info!("stopping: receivers close, the pipeline drains");
    ready.store(false, Ordering::Relaxed);
    drain(receivers, pipeline, api).await
}

/// Who may talk to the daemon, and over what: bearer tokens and TLS for the receivers and
/// the API, with a warning for each exposure that has no such guard.
struct Guards {
    ingest_token: Option<Token>,
    api_token: Option<Token>,
    grpc_tls: Option<Reloading>,
    http_tls: Option<Reloading>,
    api_grpc_tls: Option<Reloading>,
    api_tls: Option<Reloading>,
}

impl Guards {
    fn load(cfg: &Config) -> Result<Guards, DaemonError> {
        let token = |f: &Option<std::path::PathBuf>| -> Result<Option<Token>, DaemonError> {
            Ok(match f {
                Some(p) => Some(Token::from_file(p)?),
                None => None,
            })
        };
        let ingest_token = token(&cfg.receivers_token_file)?;
        let api_token = token(&cfg.api_token_file)?;
        warn_exposed(cfg, &ingest_token, &api_token);
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
        Ok(Guards {
            grpc_tls: tls(&cfg.receivers_tls, ALPN_GRPC, "OTLP/gRPC")?,
            http_tls: tls(&cfg.receivers_tls, ALPN_HTTP1, "OTLP/HTTP")?,
            api_grpc_tls: tls(&cfg.api_tls, ALPN_GRPC, "gRPC query API")?,
            api_tls: tls(&cfg.api_tls, ALPN_HTTP1, "API")?,
            ingest_token,
            api_token,
        })
    }
}

/// Says loudly what listens beyond loopback without a token, or sends one in plain text.
fn warn_exposed(cfg: &Config, ingest_token: &Option<Token>, api_token: &Option<Token>) {
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
            ingest_token,
            [cfg.grpc_listen, cfg.http_listen],
        ),
        (
            "api",
            &cfg.api_tls,
            api_token,
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
}

/// The engine, from the state directory's snapshot when there is one. A bad snapshot must
/// not keep the daemon down: it starts empty and says so loudly.
fn restore(cfg: &Config, ecfg: EngineConfig) -> Result<(Engine, Option<StateDir>), DaemonError> {
    let mut engine = Engine::new(ecfg);
    let state = match &cfg.state_dir {
        Some(d) => {
            let dir = StateDir::open(d)?;
            match dir.restore(&mut engine, ecfg.max_names, ecfg.max_nodes) {
                Ok(true) => tracing::info!(path = %dir.path().display(), "state restored"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(%e, "state not restored; starting empty");
                    eprintln!("chokepoint: STATE NOT RESTORED, starting empty: {e}");
                }
            }
            Some(dir)
        }
        None => None,
    };
    Ok((engine, state))
}

/// The pipeline task and the ends of its channels.
struct PipelineHandles {
    events: mpsc::Sender<Event>,
    view: watch::Receiver<Arc<View>>,
    task: JoinHandle<()>,
}

/// Spawns the one task that owns the engine, and asks it for a first view. The batch
/// sender goes to the receivers alone: once they are gone, the queue closes.
async fn start_pipeline(
    cfg: &Config,
    engine: Engine,
    state: Option<StateDir>,
    stats: Arc<Stats>,
) -> Result<(PipelineHandles, mpsc::Sender<Submission>), DaemonError> {
    let (batch_tx, batch_rx) = mpsc::channel(cfg.queue_batches);
    let (event_tx, event_rx) = mpsc::channel(256);
    let (view_tx, view_rx) = watch::channel(Arc::new(View::empty()));
    let view_tx = global_view(cfg, view_tx)?;
    let pipeline = Pipeline::new(engine, cfg.clone(), stats, view_tx, state);
    let task = tokio::spawn(pipeline.run(event_rx, batch_rx));
    let _ = event_tx.send(Event::Refresh).await;
    let handles = PipelineHandles {
        events: event_tx,
        view: view_rx,
        task,
    };
    Ok((handles, batch_tx))
}

/// With `[source] prometheus_url`, the API reads what the store's series sum to: the global
/// view publishes to `view_tx`, and this daemon's own pipeline still runs (and keeps its
/// books) but publishes where nobody reads. Returns where the pipeline publishes.
fn global_view(
    cfg: &Config,
    view_tx: watch::Sender<Arc<View>>,
) -> Result<watch::Sender<Arc<View>>, DaemonError> {
    let Some(url) = cfg.source.prometheus_url.as_deref() else {
        return Ok(view_tx);
    };
    let store = crate::scale::global::Store::new(url)?;
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
    Ok(watch::channel(Arc::new(View::empty())).0)
}

struct Listeners {
    grpc: TcpListener,
    http: TcpListener,
    api: TcpListener,
    api_grpc: TcpListener,
}

impl Listeners {
    async fn bind(cfg: &Config) -> Result<(Listeners, Bound), DaemonError> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, what, source })
        };
        let l = Listeners {
            grpc: bind(cfg.grpc_listen, "OTLP/gRPC").await?,
            http: bind(cfg.http_listen, "OTLP/HTTP").await?,
            api: bind(cfg.api_listen, "API").await?,
            api_grpc: bind(cfg.api_grpc_listen, "gRPC query API").await?,
        };
        let local = |l: &TcpListener, a| l.local_addr().unwrap_or(a);
        let bound = Bound {
            grpc: local(&l.grpc, cfg.grpc_listen),
            http: local(&l.http, cfg.http_listen),
            api: local(&l.api, cfg.api_listen),
            api_grpc: local(&l.api_grpc, cfg.api_grpc_listen),
        };
        Ok((l, bound))
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The OTLP receivers, and how to tell them to stop.
struct Receivers {
    grpc: ServerTask,
    http: ServerTask,
    stop: watch::Sender<bool>,
}

/// HTTP/2 streams a gRPC client may hold open at once on one connection: an exporter uses a
/// few (one per export in flight).
const GRPC_STREAMS: u32 = 32;

fn spawn_receivers(
    cfg: &Config,
    grpc_l: TcpListener,
    http_l: TcpListener,
    guards: &Guards,
    batches: mpsc::Sender<Submission>,
    stats: &Arc<Stats>,
    max_names: usize,
) -> Receivers {
    let limits = crate::ingest::local::LocalLimits {
        time: crate::serve::pipeline::time_limits(cfg),
        max_names,
    };
    let sub = Submitter::new(batches, stats.clone(), cfg.max_request_bytes, limits);
    let (stop, stop_rx) = watch::channel(false);
    let grpc = tokio::spawn({
        let svc = crate::serve::receive::grpc::service(
            sub.clone(),
            guards.ingest_token.clone(),
            cfg.receivers_request_timeout,
        );
        let grpc_stats = stats.clone();
        let s = stopped(stop_rx.clone());
        let incoming = grpc_incoming(
            grpc_l,
            guards.grpc_tls.clone(),
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
                // Streams per connection (one connection held 20,000 open streams); the
                // service itself cuts an export not whole within `request_timeout`.
                .max_concurrent_streams(Some(GRPC_STREAMS))
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .layer(tower::util::MapResponseLayer::new(move |r| {
                    crate::serve::receive::grpc::too_large_is_not_retryable(r, &grpc_stats)
                }))
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, s)
                .await
                .map_err(ServerError::from)
        }
    });
    let http = tokio::spawn(ok(serve_http(
        http_l,
        guards.http_tls.clone(),
        cfg.receivers_limits,
        stats.receivers_conns.clone(),
        crate::serve::receive::http::router(
            sub,
            guards.ingest_token.clone(),
            cfg.receivers_request_timeout,
        ),
        stop_rx,
    )));
    Receivers { grpc, http, stop }
}

/// The query APIs (HTTP with the dashboard, and gRPC), and how to tell them to stop.
struct Apis {
    http: ServerTask,
    grpc: ServerTask,
    stop: watch::Sender<bool>,
}

fn spawn_api(
    cfg: &Config,
    api_l: TcpListener,
    api_grpc_l: TcpListener,
    guards: &Guards,
    pipeline: &PipelineHandles,
    stats: &Arc<Stats>,
    ready: Arc<AtomicBool>,
) -> Apis {
    let (stop, stop_rx) = watch::channel(false);
    let api_state = ApiState {
        events: pipeline.events.clone(),
        view: pipeline.view.clone(),
        stats: stats.clone(),
        ready,
        window: cfg.window,
        refresh: cfg.refresh,
        trace_url: cfg.trace_url.clone(),
        token: guards.api_token.clone(),
        hosts: cfg.api_hosts.clone(),
        cors_origins: cfg.api_cors_origins.clone(),
    };
    let grpc = tokio::spawn({
        let svc = crate::serve::query::grpc::service(api_state.clone());
        let s = stopped(stop_rx.clone());
        let incoming = grpc_incoming(
            api_grpc_l,
            guards.api_grpc_tls.clone(),
            cfg.api_limits,
            stats.api_conns.clone(),
            stop_rx.clone(),
        );
        async move {
            tonic::transport::Server::builder()
                .max_concurrent_streams(Some(GRPC_STREAMS))
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, s)
                .await
                .map_err(ServerError::from)
        }
    });
    let http = tokio::spawn(ok(serve_http(
        api_l,
        guards.api_tls.clone(),
        cfg.api_limits,
        stats.api_conns.clone(),
        crate::serve::query::http::router(api_state),
        stop_rx,
    )));
    Apis { http, grpc, stop }
}

/// Ticks (complete idle traces), refreshes (publish the view) and snapshots.
fn spawn_timers(cfg: &Config, events: &mpsc::Sender<Event>) {
    every(events.clone(), Duration::from_millis(500), || Event::Tick);
    every(events.clone(), cfg.refresh, || Event::Refresh);
    if cfg.state_dir.is_some() {
        every(events.clone(), cfg.snapshot_interval, || Event::Snapshot);
    }
}

/// Remote-writes the published aggregates, unless this daemon serves the global view (which
/// re-exported would count every instance twice).
fn spawn_remote_write(cfg: &Config, bound: Bound, pipeline: &PipelineHandles, stats: &Stats) {
    let remote_write = cfg.export.remote_write_url.clone();
    if remote_write.is_some() && cfg.source.prometheus_url.is_some() {
        tracing::warn!("export.remote_write_url is ignored with source.prometheus_url: the global view re-exported would count every instance twice");
    }
    let Some(url) = remote_write.filter(|_| cfg.source.prometheus_url.is_none()) else {
        return;
    };
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
        pipeline.view.clone(),
        stats.remote_write.clone(),
    ));
}

/// Stops in the order that loses nothing: receivers first (each finishes its requests, or
/// is cut off after a grace period), then the pipeline drains what was queued, completes
/// every trace in flight and snapshots; the API answers until then.
async fn drain(
    receivers: Receivers,
    pipeline: PipelineHandles,
    api: Apis,
) -> Result<(), DaemonError> {
    let _ = receivers.stop.send(true);
    let server = |what: &'static str| {
        move |r: Result<Result<(), ServerError>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DaemonError::Server { what, source }),
            Err(e) => Err(DaemonError::Server {
                what,
                source: e.into(),
            }),
        }
    };
    // A client that stalls mid-request must not hold shutdown hostage: past the grace
    // period its connection is cut and the drain goes on.
    let grace = Duration::from_secs(10);
    let finish = |task: ServerTask, what: &'static str| async move {
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
    let g = finish(receivers.grpc, "OTLP/gRPC").await;
    let h = finish(receivers.http, "OTLP/HTTP").await;
    let (done_tx, done_rx) = oneshot::channel();
    if pipeline.events.send(Event::Shutdown(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    let _ = pipeline.task.await;
    let _ = api.stop.send(true);
    let a = server("API")(api.http.await);
    // Watch streams never end on their own; the shutdown drops them.
    api.grpc.abort();
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
