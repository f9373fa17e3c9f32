//! The HTTP server: accepts connections on an already-bound listener and serves each with hyper.
//!
//! Limits: at most `MAX_CONNECTIONS` connections at once (beyond that, connections wait in the
//! kernel's backlog), `HEADER_READ_TIMEOUT_SECONDS` to send request headers, and the body limit of
//! [`http::MAX_BODY_BYTES`].
//!
//! Shutdown: when `shutdown` resolves the listener is dropped (no new connections), in-flight
//! requests get `grace` to finish (each connection is told to close after its current request), and
//! what remains after that is cut.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::http::{self, Surface};

/// Serves HTTP on `listener` until `shutdown` resolves, then stops gracefully within `grace`.
pub async fn serve(
    listener: TcpListener,
    surface: Surface,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(app.config().header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(app.config().max_connections));
    loop {
        while connections.try_join_next().is_some() {} // reap finished connections
        // At the limit, stop accepting: new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(http::route(&app, surface, req, peer).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            // Client resets and timeouts end a connection; they are not the server's errors.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over, closing remaining connections"),
    }
    // Nothing may serve a click after this returns: the writer is about to stop.
    connections.shutdown().await;
}
