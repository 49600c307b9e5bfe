//! The daemon's accept loops: TLS when configured, a cap on open connections, and the
//! timeouts that keep a slow or silent client from holding a connection (and its task,
//! buffers and file descriptor) forever.
//!
//! - the TLS handshake and the request head must arrive within `header_read_timeout`;
//! - a connection on which nothing moves either way for `idle_timeout` is closed (HTTP/2
//!   clients stay: the gRPC server pings them, which is traffic);
//! - past `max_connections` a new connection is closed at once and counted, and so is one
//!   from an address that holds three quarters of them already: one peer's flood (even of
//!   connections it drops and makes again) leaves a quarter for everyone else, the
//!   kubelet's probes and the exporters that open a connection per request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::serve::tls::Reloading;

/// Per-listener limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What the listeners refused or cut, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections closed for a slow handshake or head, or for idling.
    pub timed_out: AtomicU64,
    /// TLS handshakes that failed (wrong CA, no client certificate, not TLS at all).
    pub tls_failed: AtomicU64,
}

/// A byte stream that fails with `TimedOut` once nothing has moved either way for `idle`.
pub struct IdleIo<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Where the cut is counted (once).
    stats: Option<Arc<ConnStats>>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, idle: Duration, stats: Option<Arc<ConnStats>>) -> Self {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            stats,
        }
    }

    fn moved(&mut self) {
        let at = Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if let Some(s) = self.stats.take() {
                    s.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, b) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection, in the clear or over TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write(cx, b))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_shutdown(cx))
    }
}

/// A connection's place while it is open: one of the listener's `max_connections`, and one
/// of its peer's share of them.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

type Peers = Arc<std::sync::Mutex<rustc_hash::FxHashMap<std::net::IpAddr, usize>>>;

/// One connection of one peer address, given back when dropped.
struct PeerSlot {
    peers: Peers,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    /// A place for `ip`, unless it holds `most` already.
    fn take(peers: &Peers, ip: std::net::IpAddr, most: usize) -> Option<PeerSlot> {
        let mut m = peers.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A connection as tonic takes it, holding its place under `max_connections` while open.
pub struct GrpcConn {
    io: IdleIo<Conn>,
    _slot: Slot,
}

impl tonic::transport::server::Connected for GrpcConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts on `listener` until `stop` turns true, handing each connection (its TLS
/// handshake done within the header timeout) to `serve`. Returns once every connection has
/// finished.
async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    tls: Option<Reloading>,
    limits: Limits,
    stats: Arc<ConnStats>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(IdleIo<Conn>, Slot, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers = Peers::default();
    let per_peer = (limits.max_connections - limits.max_connections / 4).max(1);
    let serve = Arc::new(serve);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off rather than spin.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let Some(peer) = PeerSlot::take(&peers, peer.ip(), per_peer) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let slot = Slot {
            _permit: permit,
            _peer: peer,
        };
        let _ = tcp.set_nodelay(true);
        let (tls, stats, serve, stop) = (tls.clone(), stats.clone(), serve.clone(), stop.clone());
        tasks.spawn(async move {
            let conn = match tls {
                // A client that sends nothing is cut at `header_read_timeout`, as one that
                // never finishes its TLS handshake is: HTTP/2 (gRPC) has no request head
                // for hyper's timer to watch, and silent sockets held every slot for the
                // whole idle timeout.
                None => {
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(limits.header_read_timeout, tcp.peek(&mut first))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => Conn::Plain(tcp),
                        Ok(_) => return,
                        Err(_) => {
                            stats.timed_out.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
                Some(t) => {
                    match tokio::time::timeout(limits.header_read_timeout, t.acceptor().accept(tcp))
                        .await
                    {
                        Ok(Ok(s)) => Conn::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            stats.timed_out.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            };
            serve(
                IdleIo::new(conn, limits.idle_timeout, Some(stats)),
                slot,
                stop,
            )
            .await;
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Serves `app` over HTTP/1.1 on `listener` until `stop` turns true; then lets requests in
/// progress finish (the caller bounds how long).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    tls: Option<Reloading>,
    limits: Limits,
    stats: Arc<ConnStats>,
    app: axum::Router,
    stop: watch::Receiver<bool>,
) {
    let conn_stats = stats.clone();
    accept_loop(
        listener,
        tls,
        limits,
        stats,
        stop,
        move |io, slot, mut stop| {
            let svc = TowerToHyperService::new(app.clone());
            let stats = conn_stats.clone();
            async move {
                let _slot = slot;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout);
                let conn = builder.serve_connection(TokioIo::new(io), svc);
                tokio::pin!(conn);
                let r = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stopped(&mut stop) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                // The head's timeout (the idle one is counted where it fires).
                if r.is_err_and(|e| e.is_timeout()) {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    )
    .await;
}

/// The connections for a tonic server on `listener`, as a stream; it ends when `stop` turns
/// true. Idle HTTP/2 clients are kept alive by the server's pings.
pub fn grpc_incoming(
    listener: tokio::net::TcpListener,
    tls: Option<Reloading>,
    limits: Limits,
    stats: Arc<ConnStats>,
    stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<GrpcConn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        tls,
        limits,
        stats,
        stop,
        move |io, slot, _stop| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Ok(GrpcConn { io, _slot: slot })).await;
            }
        },
    ));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
