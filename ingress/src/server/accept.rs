//! Accepting connections: plain or TLS, HTTP/1.1 and HTTP/2, at most `max_connections` at a time; closing
//! idle ones; draining on shutdown. Each request is handed to [`App::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::limits::Budget;

/// How busy one connection is: requests in progress, and when the last one ended.
#[derive(Debug)]
struct Activity {
    active: AtomicUsize,
    last_done: std::sync::Mutex<Instant>,
}

impl Activity {
    /// When the connection reaches `idle_timeout` with no request, if nothing happens meanwhile: `None`
    /// while a request is in progress.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.last_done.lock().ok().map(|t| *t + idle_timeout)
    }
}

/// Marks a request as in progress on its connection until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.active.fetch_add(1, Ordering::AcqRel);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.last_done.lock() {
            *t = Instant::now();
        }
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections until `shutdown`, then stops accepting and lets in-flight requests finish for up to
/// the drain timeout. At most `max_connections` are open; further clients wait in the listen backlog. A
/// connection with no request in progress for `idle_timeout` is closed, so idle keep-alive connections
/// cannot pile up; one whose request head does not arrive within the read timeout is closed by hyper.
pub async fn serve(app: Arc<App>, listener: TcpListener, tls: Option<TlsAcceptor>, shutdown: CancellationToken) {
    let s = app.settings();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.read_timeout)
        .max_buf_size(s.max_header_bytes)
        .max_headers(s.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(s.read_timeout);
    let connections = Budget::new(s.max_connections);
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = connections.acquire() => p,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _open = app.metrics().connection();
            let read_timeout = app.settings().read_timeout;
            match tls {
                None => serve_connection(app, &builder, TokioIo::new(stream), peer, stop).await,
                Some(acceptor) => match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(app, &builder, TokioIo::new(tls_stream), peer, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tasks.close();
    tracing::info!(connections = tasks.len(), "stopped accepting; draining in-flight requests");
    let drain = app.settings().drain_timeout;
    match tokio::time::timeout(drain, tasks.wait()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(timeout = ?drain, "drain timeout reached; closing remaining connections"),
    }
}

/// Serves one connection until it ends, closing it gracefully (in-flight requests finish) on shutdown or
/// after `idle_timeout` without a request.
async fn serve_connection<I>(
    app: Arc<App>,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    peer: SocketAddr,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = app.settings().idle_timeout;
    let activity = Arc::new(Activity { active: AtomicUsize::new(0), last_done: std::sync::Mutex::new(Instant::now()) });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let busy = Busy::new(&svc_activity);
        async move {
            let resp = app.handle(req, peer).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // One timer per connection that fires only when the idle timeout may have been reached, then moves to
    // the next possible moment (a request in progress, or one that ended since, pushes it back): no periodic
    // wake-ups of every open connection.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle.as_mut(), if !closing => {
                match activity.idle_deadline(idle_timeout) {
                    Some(deadline) if deadline <= Instant::now() => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Some(deadline) => idle.as_mut().reset(deadline.into()),
                    None => idle.as_mut().reset((Instant::now() + idle_timeout).into()),
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
