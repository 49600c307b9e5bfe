//! The API and dashboard over a fixed view, without a daemon: `chokepoint replay FILE
//! --serve` (an incident review on a laptop). The same router as the daemon's; questions
//! the view cannot answer (another window, a trace's critical path) get the view's answer
//! or a 404.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::api::view::View;
use crate::serve::pipeline::{Event, Query};
use crate::serve::query::http::{router, ApiState};
use crate::serve::stats::Stats;

/// Serves `view` on `listen` until `stop` resolves; `on_ready` gets the bound address.
pub async fn serve(
    view: View,
    stats: Stats,
    listen: SocketAddr,
    trace_url: Option<String>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let view = Arc::new(view);
    let (_view_tx, view_rx) = watch::channel(view.clone());
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(64);
    // The one window there is answers every window.
    let answers = view.clone();
    tokio::spawn(async move {
        while let Some(ev) = events_rx.recv().await {
            if let Event::Query(q) = ev {
                match q {
                    Query::Findings { reply, .. } => {
                        let _ = reply.send(answers.findings.clone());
                    }
                    Query::Graph { reply, .. } => {
                        let _ = reply.send(answers.graph.clone());
                    }
                    Query::Node { name, reply, .. } => {
                        let _ = reply.send(answers.detail(&name).cloned());
                    }
                    Query::CriticalPath { reply, .. } => {
                        let _ = reply.send(None);
                    }
                }
            }
        }
    });
    let state = ApiState {
        events: events_tx,
        view: view_rx,
        stats: Arc::new(stats),
        ready: Arc::new(AtomicBool::new(true)),
        window: Duration::from_secs(300),
        refresh: Duration::from_secs(3600),
        trace_url,
        token: None,
        hosts: Vec::new(),
        cors_origins: Vec::new(),
    };
    let listener = TcpListener::bind(listen).await?;
    on_ready(listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
}
