//! Bounds on what clients can hold: connections per listener, requests in flight, and how long
//! idle HTTP/2 connections live. Past a bound the extender sheds load with a fast refusal instead
//! of running out of file descriptors or memory, so `/healthz` and kube-scheduler's own
//! connections keep working while something floods the port.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// HTTP/2: a ping every this often on a connection; no answer within [`H2_PING_TIMEOUT`] closes it.
pub const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2: concurrent streams one connection may open (kube-scheduler uses one per request).
pub const H2_MAX_STREAMS: u32 = 64;

/// Accepts a connection only while fewer than the cap are open; one over the cap is closed at
/// once (the listener's accept loop goes on).
#[derive(Clone, Debug)]
pub struct CappedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    listener: &'static str,
}

impl<A> CappedAcceptor<A> {
    pub fn new(inner: A, max_connections: usize, listener: &'static str) -> Self {
        CappedAcceptor {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            listener,
        }
    }
}

impl<A, I, S> axum_server::accept::Accept<I, S> for CappedAcceptor<A>
where
    A: axum_server::accept::Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Unpin + Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Capped<A::Stream>;
    type Service = A::Service;
    type Future =
        Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send + 'static>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!(
                listener = self.listener,
                "connection limit reached; closing a new connection"
            );
            drop(stream);
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection limit reached",
            ))));
        };
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (inner, service) = accepted.await?;
            Ok((
                Capped {
                    inner,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection holding one of the listener's permits until it closes.
#[derive(Debug)]
pub struct Capped<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests being served at once on the API listener.
#[derive(Clone, Debug)]
pub struct InFlightLimit(Arc<Semaphore>);

impl InFlightLimit {
    pub fn new(max: usize) -> Self {
        InFlightLimit(Arc::new(Semaphore::new(max)))
    }
}

/// Middleware: a request over the in-flight limit gets 503 with a JSON error at once. An
/// extender marked `ignorable` is then skipped for that pod; otherwise kube-scheduler retries it.
pub async fn shed_over_limit(
    State(limit): State<InFlightLimit>,
    request: Request,
    next: Next,
) -> Response {
    match limit.0.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            tracing::warn!("in-flight request limit reached; answering 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"Error":"realload: too many requests in flight, try again"}"#,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_over_the_in_flight_limit_get_a_fast_503() {
        let limit = InFlightLimit::new(1);
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let release = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let (entered, release) = (entered.clone(), release.clone());
                    async move {
                        if let Some(tx) = entered.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        if let Some(rx) = release.lock().await.take() {
                            let _ = rx.await;
                        }
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                limit.clone(),
                shed_over_limit,
            ));
        let request = || Request::get("/").body(Body::empty()).unwrap();
        let slow = tokio::spawn(app.clone().oneshot(request()));
        entered_rx.await.unwrap();
        let refused = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        release_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        let again = app.oneshot(request()).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the permit came back");
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_a_closed_one_frees_its_place() {
        use axum_server::accept::{Accept, DefaultAcceptor};
        let acceptor = CappedAcceptor::new(DefaultAcceptor::new(), 2, "test");
        let (a, _a) = tokio::io::duplex(64);
        let (b, _b) = tokio::io::duplex(64);
        let (c, _c) = tokio::io::duplex(64);
        let first = acceptor.accept(a, ()).await.unwrap();
        let _second = acceptor.accept(b, ()).await.unwrap();
        let third = acceptor.accept(c, ()).await;
        assert!(third.is_err(), "a third connection is refused");
        drop(first);
        let (d, _d) = tokio::io::duplex(64);
        assert!(
            acceptor.accept(d, ()).await.is_ok(),
            "room again once one closed"
        );
    }
}
