//! Bounds on what clients can hold: connections per listener, requests in flight, and how long
//! idle HTTP/2 connections live. Past a bound the extender sheds load with a fast refusal instead
//! of running out of file descriptors or memory, so `/healthz` and kube-scheduler's own
//! connections keep working while something floods the port.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Descriptors kept free beside the connections: the kube client's watches, the policy file,
/// logs, the runtime's own.
pub const FD_RESERVE: u64 = 128;
/// The admin listener serves probes and scrapes; it needs few connections, and a flood there
/// must not take descriptors from the API listener.
pub const ADMIN_MAX_CONNECTIONS: usize = 128;

/// How the connection caps fit the process's open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The API listener's cap.
    pub api: usize,
    /// The admin listener's cap.
    pub admin: usize,
    /// The soft open-file limit to set first, when the current one is too low for the caps.
    pub raise_soft_to: Option<u64>,
    /// The API cap was lowered below what was asked, because the hard limit is too low.
    pub lowered: bool,
}

/// Fits the requested caps to the open-file limit (`soft`, `hard`; `None` is unlimited): raises
/// the soft limit as far as the caps need and the hard limit allows, and lowers the API cap when
/// even the hard limit cannot hold it. A cap at or over the limit would let a flood exhaust the
/// descriptors before the cap ever refuses anything, and then `/healthz` stops answering.
pub fn connection_budget(
    requested: usize,
    soft: Option<u64>,
    hard: Option<u64>,
) -> ConnectionBudget {
    let admin = requested.min(ADMIN_MAX_CONNECTIONS);
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let needed = wide(requested)
        .saturating_add(wide(admin))
        .saturating_add(FD_RESERVE);
    let within = |limit: Option<u64>| limit.is_none_or(|l| l >= needed);
    if within(soft) {
        return ConnectionBudget {
            api: requested,
            admin,
            raise_soft_to: None,
            lowered: false,
        };
    }
    let ceiling = hard.map_or(needed, |h| h.min(needed));
    let raise_soft_to = (Some(ceiling) > soft).then_some(ceiling);
    if within(hard) {
        return ConnectionBudget {
            api: requested,
            admin,
            raise_soft_to,
            lowered: false,
        };
    }
    // Only the hard limit is left: what it holds after the admin cap and the reserve, at least 1.
    let room = ceiling
        .saturating_sub(wide(admin).saturating_add(FD_RESERVE))
        .max(1);
    let api = usize::try_from(room).unwrap_or(usize::MAX).min(requested);
    ConnectionBudget {
        api,
        admin,
        raise_soft_to,
        lowered: api < requested,
    }
}

/// Applies [`connection_budget`] to this process: reads `RLIMIT_NOFILE`, raises the soft limit when
/// the caps need it, and returns the caps to use.
pub fn fit_connection_caps(requested: usize) -> ConnectionBudget {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut budget = connection_budget(requested, limit.current, limit.maximum);
    if let Some(soft) = budget.raise_soft_to {
        let raised = rustix::process::Rlimit {
            current: Some(soft),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = ?limit.current, to = soft, "raised the open-file limit for the connection caps")
            }
            Err(e) => {
                // Keep to the soft limit we have.
                budget = connection_budget(requested, limit.current, limit.current);
                tracing::warn!(error = %e, soft = ?limit.current, "could not raise the open-file limit");
            }
        }
    }
    if budget.lowered {
        tracing::warn!(
            requested,
            api = budget.api,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    budget
}

/// Accepts a connection only while fewer than the cap are open; one over the cap is closed at
/// once (the listener's accept loop goes on).
#[derive(Clone, Debug)]
pub struct CappedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    listener: &'static str,
    /// Connections refused since start.
    refused: Arc<AtomicU64>,
}

impl<A> CappedAcceptor<A> {
    pub fn new(inner: A, max_connections: usize, listener: &'static str) -> Self {
        CappedAcceptor {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            listener,
            refused: Arc::new(AtomicU64::new(0)),
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
            // Logged at the 1st, 2nd, 4th, 8th... refusal: a flood must not flood the log too.
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    listener = self.listener,
                    refused,
                    "connection limit reached; closing new connections"
                );
            }
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

    #[test]
    fn connection_caps_fit_the_open_file_limit() {
        let budget = |soft, hard| connection_budget(1024, soft, hard);
        // Room enough, or no limit: as asked.
        let as_asked = ConnectionBudget {
            api: 1024,
            admin: 128,
            raise_soft_to: None,
            lowered: false,
        };
        assert_eq!(budget(Some(1 << 20), Some(1 << 20)), as_asked);
        assert_eq!(budget(None, None), as_asked);
        // The usual 1024 soft limit under a high hard one: raised to what the caps need.
        let raised = budget(Some(1024), Some(524_288));
        assert_eq!(
            (raised.api, raised.raise_soft_to, raised.lowered),
            (1024, Some(1024 + 128 + 128), false)
        );
        assert_eq!(budget(Some(1024), None).raise_soft_to, Some(1280));
        // The hard limit is 1024 too: raise nothing, and keep the API cap under it.
        let lowered = budget(Some(1024), Some(1024));
        assert_eq!(
            (
                lowered.api,
                lowered.admin,
                lowered.raise_soft_to,
                lowered.lowered
            ),
            (768, 128, None, true)
        );
        // Soft below a hard limit that is itself too low: raised to the hard limit, cap under it.
        let partial = budget(Some(512), Some(1000));
        assert_eq!(
            (partial.api, partial.raise_soft_to, partial.lowered),
            (744, Some(1000), true)
        );
        // Absurdly low limits still leave one connection, never zero.
        assert_eq!(budget(Some(16), Some(16)).api, 1);
        // A small cap never needs a raise and keeps the admin cap at most the API one.
        assert_eq!(
            connection_budget(10, Some(1024), Some(1024)),
            ConnectionBudget {
                api: 10,
                admin: 10,
                raise_soft_to: None,
                lowered: false
            }
        );
    }

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
