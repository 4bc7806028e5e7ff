//! The HTTP shim of the Dapr API (default port 3500): output bindings, health,
//! metadata and shutdown, with daprd's status codes and JSON error bodies.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Extension, Router};
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::{ApiError, ApiState, ErrorKind};
use crate::bindings::InvokeRequest;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind == ErrorKind::Unauthorized {
            // daprd's token check answers in plain text, not Dapr's JSON shape.
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                "invalid api token\n",
            )
                .into_response();
        }
        let body = json!({ "errorCode": self.kind.code(), "message": self.message });
        (self.kind.http_status(), axum::Json(body)).into_response()
    }
}

/// Limits that keep slow or hostile clients from holding the server. The
/// defaults here are the only place these numbers are written.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this time (slow-loris); so must
    /// the first bytes of a new connection, HTTP/2 (and gRPC) included.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this time (slow senders): 408 after.
    pub body_read_timeout: Duration,
    /// Open connections across all HTTP listeners; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Bytes of request line and headers taken, as Go's net/http: 1 MB plus 4 KiB.
pub const MAX_HEADER_BYTES: usize = (1 << 20) + 4096;
/// Headers taken in one HTTP/1 request (Go counts bytes only). hyper keeps
/// room for this many on the heap per request parse, 64 bytes each: 1024 is
/// ten times hyper's default and 64 KiB.
pub const MAX_HEADERS: usize = 1024;

/// What Go's net/http refuses with 400 before any handler runs, and hyper lets
/// through: an HTTP/1.1 request without exactly one `Host` header (RFC 9112,
/// 3.2), and a path with a `%` that is not followed by two hex digits.
async fn check_request_target(request: Request, next: Next) -> Response {
    let hosts = request.headers().get_all(http::header::HOST).iter().count();
    if request.version() == http::Version::HTTP_11 && hosts != 1 {
        let why = if hosts == 0 {
            "missing required Host header"
        } else {
            "too many Host headers"
        };
        return ApiError::new(ErrorKind::MalformedRequest, why).into_response();
    }
    if let Some(at) = invalid_percent_encoding(request.uri().path()) {
        return ApiError::new(
            ErrorKind::MalformedRequest,
            format!("invalid URL escape in the path at byte {at}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Where a `%` in `path` does not start a `%XX` escape.
fn invalid_percent_encoding(path: &str) -> Option<usize> {
    let b = path.as_bytes();
    (0..b.len()).find(|&i| {
        b[i] == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The body read timeout, handed from [`serve`] to the handlers.
#[derive(Debug, Clone, Copy)]
struct BodyReadTimeout(Duration);

/// The HTTP/2 connection preface. A client whose bytes so far are a prefix of
/// it has not yet said which protocol it speaks.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An accepted connection that must start in time: until its first bytes show
/// HTTP/1 (whose header timeout hyper enforces from there), or an HTTP/2 client
/// has sent the preface and its whole first frame (SETTINGS), reads fail with
/// `TimedOut` once the deadline has passed, which closes the connection. hyper
/// has no such timeout of its own (its HTTP/1 header timeout starts only after
/// protocol detection, and its HTTP/2 handshake waits forever), so an idle or
/// trickling client would otherwise hold a connection slot for good. Holds the
/// connection's slot until dropped.
pub struct GuardedStream {
    inner: TcpStream,
    deadline: Option<Pin<Box<Sleep>>>,
    start: StartWatch,
    _slot: Option<OwnedSemaphorePermit>,
}

impl GuardedStream {
    pub fn new(
        inner: TcpStream,
        first_bytes_within: Duration,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Self {
        GuardedStream {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(first_bytes_within))),
            start: StartWatch::default(),
            _slot: slot,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

/// An HTTP/2 frame header: 3 bytes of length, type, flags, 4 bytes of stream id.
const FRAME_HEADER: usize = 9;
/// The largest first frame worth waiting for (the default SETTINGS_MAX_FRAME_SIZE).
const MAX_FIRST_FRAME: usize = 16 << 10;

/// Follows a connection's first bytes until it has started.
#[derive(Debug, Default)]
struct StartWatch {
    /// Bytes seen so far.
    seen: usize,
    /// The length field of the first HTTP/2 frame (3 bytes after the preface).
    frame_len: [u8; 3],
}

impl StartWatch {
    /// True once the bytes so far show HTTP/1 (or garbage), end the stream, or
    /// hold the HTTP/2 preface and a whole first frame.
    fn feed(&mut self, new: &[u8]) -> bool {
        if new.is_empty() {
            return true;
        }
        let preface = H2_PREFACE.len();
        for &byte in new {
            let i = self.seen;
            if i < preface && byte != H2_PREFACE[i] {
                return true;
            }
            if (preface..preface + 3).contains(&i) {
                self.frame_len[i - preface] = byte;
            }
            self.seen += 1;
            if self.seen >= preface + FRAME_HEADER {
                let [x, y, z] = self.frame_len;
                let len = u32::from_be_bytes([0, x, y, z]) as usize;
                if self.seen >= preface + FRAME_HEADER + len.min(MAX_FIRST_FRAME) {
                    return true;
                }
            }
        }
        false
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(deadline) = &mut this.deadline {
            match &polled {
                Poll::Ready(Ok(())) if this.start.feed(&buf.filled()[before..]) => {
                    this.deadline = None;
                }
                // Polling the timer also wakes this read when the deadline passes.
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    this.deadline = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not start a request in time",
                    )));
                }
                _ => {}
            }
        }
        polled
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c) until `stop`, then lets the
/// open connections finish their requests; the caller bounds that wait.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    limits: ServerLimits,
    slots: Arc<Semaphore>,
) {
    let router = router
        .layer(Extension(BodyReadTimeout(limits.body_read_timeout)))
        .layer(middleware::from_fn(check_request_target));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Go's net/http (daprd) takes up to 1 MB of request line and headers
    // (DefaultMaxHeaderBytes, plus 4 KiB of slack); hyper would refuse more
    // than 100 headers or about 400 KB. hyper must also bound the count.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    // Pings find dead h2c peers, whose connections would otherwise hold a slot.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: {} connections open", limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = GuardedStream::new(stream, limits.header_read_timeout, Some(slot));
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// `GET /metrics`: the Prometheus text exposition.
pub fn metrics_router(metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    )
}

pub fn router(state: Arc<ApiState>) -> Router {
    let routes = Router::new()
        .route(
            "/v1.0/bindings/{name}",
            post(invoke_binding)
                .put(invoke_binding)
                .fallback(method_not_allowed),
        )
        // Another method falls through to daprd's catch-all answer, as there.
        .route("/v1.0/healthz", get(healthz).fallback(method_not_allowed))
        .route(
            "/v1.0/healthz/outbound",
            get(healthz_outbound).fallback(method_not_allowed),
        )
        .route("/v1.0/metadata", get(metadata).fallback(method_not_allowed))
        .route(
            "/v1.0/metadata/{key}",
            put(set_metadata).fallback(method_not_allowed),
        )
        .route(
            "/v1.0/shutdown",
            post(shutdown).fallback(method_not_allowed),
        )
        .route("/{version}/{block}", any(unserved))
        .route("/{version}/{block}/{*rest}", any(unserved))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    // A layer of this outer router sees each answer whole, after axum added
    // `Allow` to a method fallback's answer (a route's own layers do not).
    Router::new()
        .fallback_service(routes)
        .layer(middleware::map_response(without_allow))
}

/// `dapr-api-token` on every route but the health probes.
async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = path == "/v1.0/healthz" || path == "/v1.0/healthz/outbound";
    let presented = request
        .headers()
        .get("dapr-api-token")
        .map(HeaderValue::as_bytes);
    if open || state.authorized(presented) {
        next.run(request).await
    } else {
        ApiError::unauthorized(presented.is_some()).into_response()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    operation: Option<String>,
}

/// How deeply a request body may nest: the limit of Go's `encoding/json`, which
/// daprd decodes it with (the envelope object is the first level).
pub const MAX_JSON_DEPTH: usize = 10_000;

/// Decodes `{"data": <any JSON>, "metadata": {..}, "operation": ".."}`; `data`
/// becomes its compact JSON text, as daprd hands it to the binding.
pub fn decode_envelope(body: &Bytes) -> Result<InvokeRequest, ApiError> {
    // serde would also build the struct from a JSON array (`["x"]`); daprd takes objects only.
    if body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        != Some(&b'{')
    {
        return Err(ApiError::malformed("expected a JSON object"));
    }
    // Over the whole body, as Go's decoder checks it before decoding: serde_json
    // skips `data` (a raw value) and unknown fields without its own depth limit.
    if crate::json::nesting_depth(body) > MAX_JSON_DEPTH {
        return Err(ApiError::malformed(format!(
            "the JSON nests deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(ApiError::malformed)?;
    let data = match envelope.data {
        Some(raw) if raw.get().trim() == "null" => Bytes::new(),
        Some(raw) => crate::json::compact(body, raw.get()),
        // As daprd: `null` or no `data` writes a record without a value.
        None => Bytes::new(),
    };
    Ok(InvokeRequest {
        data,
        metadata: envelope.metadata.unwrap_or_default(),
        operation: envelope.operation.unwrap_or_default(),
    })
}

/// A `{name}` or `{key}` path segment, percent-decoded. A segment that does not
/// decode to UTF-8 gets our JSON 400 instead of axum's plain-text rejection.
struct PathName(String);

impl<S: Send + Sync> FromRequestParts<S> for PathName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(name)| PathName(name))
            .map_err(path_error)
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::new(
        ErrorKind::MalformedRequest,
        format!("invalid URL path: {}", rejection.body_text()),
    )
}

/// Reads a body up to the request size limit, within the body read timeout.
async fn read_body(state: &ApiState, request: Request) -> Result<Bytes, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = state.max_request_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let within = parts
        .extensions
        .get::<BodyReadTimeout>()
        .map_or_else(|| ServerLimits::default().body_read_timeout, |t| t.0);
    // Past this many bytes over the limit a body is not read to its end: the
    // answer goes out and the connection closes.
    let drain_bound = limit.max(4 << 20);
    // daprd's words for a body over the limit (400, not 413).
    if let Some(n) = declared.filter(|n| *n > limit) {
        if n - limit <= drain_bound {
            drain(body, n, within).await;
        }
        return Err(ApiError::malformed("stream too large"));
    }
    let read = tokio::time::timeout(within, collect(body, limit, drain_bound))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                format!("the request body did not arrive within {within:?}"),
            )
        })?;
    read.map_err(|e| match e {
        BodyError::TooLarge => ApiError::malformed("stream too large"),
        BodyError::Read(e) => ApiError::malformed(format!("cannot read the body: {e}")),
    })
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Collects a body of at most `limit` bytes. One that grows past it is read
/// on (and dropped) up to `drain_bound` bytes more, as daprd reads a body
/// before it answers: a client still sending then gets the answer, not a reset.
async fn collect(
    body: axum::body::Body,
    limit: usize,
    drain_bound: usize,
) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    // The common case, one frame, is kept as it came (no copy).
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            let mut seen = len;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen - limit > drain_bound {
                    break;
                }
            }
            return Err(BodyError::TooLarge);
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if more.is_empty() {
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(more)
    })
}

/// Reads and drops a body of `declared` bytes, within `within`.
async fn drain(body: axum::body::Body, declared: usize, within: Duration) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen >= declared {
                break;
            }
        }
    })
    .await;
}

async fn invoke_binding(
    State(state): State<Arc<ApiState>>,
    PathName(name): PathName,
    request: Request,
) -> Result<Response, ApiError> {
    // Before the body is read, so that the cap also bounds the bodies held.
    let _slot = state.begin_output()?;
    let trace =
        super::TraceContext::read(|k| request.headers().get(k).and_then(|v| v.to_str().ok()));
    let body = read_body(&state, request).await?;
    let mut request = decode_envelope(&body)?;
    trace.apply(&mut request.metadata);
    let response = state.invoke_output(&name, request).await?;
    let mut out = if response.data.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::OK, response.data).into_response()
    };
    for (k, v) in &response.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("metadata.{k}")),
            HeaderValue::from_str(v),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    Ok(out)
}

/// axum adds `Allow` to a method fallback's answer; daprd's 404 has none.
async fn without_allow(mut response: Response) -> Response {
    if response.status() == StatusCode::NOT_FOUND {
        response.headers_mut().remove(http::header::ALLOW);
    }
    response
}

/// daprd routes only POST and PUT here; any other method falls through to its
/// service-invocation catch-all, which answers so.
async fn method_not_allowed() -> ApiError {
    ApiError::no_route()
}

async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    if state.readiness.is_ready() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let waiting = if !state.readiness.outbound.load(Ordering::Acquire) {
            "components are loading"
        } else {
            "the app channel is not ready"
        };
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"errorCode": "ERR_HEALTH_NOT_READY", "message": format!("dapr is not ready: {waiting}")})))
            .into_response()
    }
}

async fn healthz_outbound(State(state): State<Arc<ApiState>>) -> Response {
    if state.readiness.outbound.load(Ordering::Acquire) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"errorCode": "ERR_OUTBOUND_HEALTH_NOT_READY", "message": "dapr outbound is not ready"})))
            .into_response()
    }
}

async fn metadata(State(state): State<Arc<ApiState>>) -> Response {
    let components: Vec<_> = state
        .components
        .iter()
        .map(|c| json!({"name": c.name, "type": c.component_type, "version": c.version, "capabilities": c.capabilities}))
        .collect();
    let inputs: Vec<_> = state
        .inputs
        .iter()
        .map(|i| {
            let s = i.snapshot();
            json!({
                "name": s.name, "type": s.component_type, "state": s.state.as_str(), "detail": s.detail,
                "delivered": s.delivered, "failedAttempts": s.failed_attempts, "deadLettered": s.dead_lettered,
                "taskFailures": s.task_failures, "lastTaskFailure": s.last_task_failure,
            })
        })
        .collect();
    let mut body = json!({
        "id": state.app_id,
        "runtimeVersion": env!("CARGO_PKG_VERSION"),
        "enabledFeatures": [],
        // As daprd without a placement service: no actors here.
        "actorRuntime": {"hostReady": false, "placement": "placement: disconnected", "runtimeStatus": "DISABLED"},
        "components": components,
        "extended": state.extended_metadata(),
        "inputBindings": inputs,
    });
    // As daprd: the port only when there is one; protocol and address always.
    let app = &state.app;
    let mut connection = json!({ "protocol": app.protocol, "channelAddress": app.address });
    if let Some(port) = app.port {
        connection["port"] = json!(port);
    }
    if app.max_concurrency > 0 {
        connection["maxConcurrency"] = json!(app.max_concurrency);
    }
    body["appConnectionProperties"] = connection;
    axum::Json(body).into_response()
}

async fn set_metadata(
    State(state): State<Arc<ApiState>>,
    PathName(key): PathName,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(&state, request).await?;
    set_extended_metadata(&state, key, String::from_utf8_lossy(&body).into_owned())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Extended metadata the app may set (keys and values together), so that a
/// client looping over `SetMetadata` cannot grow the process without bound.
pub const MAX_EXTENDED_METADATA_BYTES: usize = 1 << 20;

/// Sets one extended metadata entry, within [`MAX_EXTENDED_METADATA_BYTES`].
pub(super) fn set_extended_metadata(
    state: &ApiState,
    key: String,
    value: String,
) -> Result<(), ApiError> {
    let mut map = state.extended.lock().unwrap_or_else(|p| p.into_inner());
    let others: usize = map
        .iter()
        .filter(|(k, _)| **k != key)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if others + key.len() + value.len() > MAX_EXTENDED_METADATA_BYTES {
        return Err(ApiError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "extended metadata is limited to {MAX_EXTENDED_METADATA_BYTES} bytes of keys and values in total"
            ),
        ));
    }
    map.insert(key, value);
    Ok(())
}

async fn shutdown(State(state): State<Arc<ApiState>>) -> Response {
    tracing::info!("shutdown requested through the API");
    // Answer first; the runtime stops accepting and drains after this returns.
    let token = state.shutdown.clone();
    tokio::spawn(async move { token.cancel() });
    StatusCode::NO_CONTENT.into_response()
}

async fn unserved(params: Result<Path<Vec<(String, String)>>, PathRejection>) -> ApiError {
    let params = match params {
        Ok(Path(params)) => params,
        Err(rejection) => return path_error(rejection),
    };
    let block = params
        .iter()
        .find(|(k, _)| k == "block")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let what = match block {
        "state" => "state management",
        "publish" | "subscribe" => "publish and subscribe",
        "invoke" => "service invocation",
        "secrets" => "secrets",
        "actors" => "actors",
        "configuration" => "configuration",
        "lock" | "unlock" => "distributed lock",
        "workflows" => "workflows",
        "jobs" => "jobs",
        "crypto" => "cryptography",
        "conversation" => "conversation",
        _ => return not_found().await,
    };
    ApiError::new(
        ErrorKind::NotImplemented,
        format!(
            "the {what} API is not implemented: outrigger serves the bindings building block only"
        ),
    )
}

async fn not_found() -> ApiError {
    ApiError::no_route()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_data_is_compact_json_text() {
        let r = decode_envelope(&Bytes::from_static(
            br#"{"data": {"orderId": 1}, "operation": "create"}"#,
        ))
        .unwrap();
        assert_eq!(&r.data[..], br#"{"orderId":1}"#);
        assert_eq!(r.operation, "create");
        let r = decode_envelope(&Bytes::from_static(
            br#"{"data": "hello", "operation": "create"}"#,
        ))
        .unwrap();
        assert_eq!(&r.data[..], br#""hello""#);
        let r = decode_envelope(&Bytes::from_static(
            br#"{"operation": "create", "metadata": {"key": "k1"}}"#,
        ))
        .unwrap();
        // As daprd: no `data` writes a record without a value.
        assert!(r.data.is_empty());
        assert_eq!(r.metadata["key"], "k1");
        let r = decode_envelope(&Bytes::from_static(
            br#"{"data": null, "operation": "create"}"#,
        ))
        .unwrap();
        assert!(r.data.is_empty());
    }

    #[test]
    fn bad_envelopes_are_malformed() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"text\"",
            b"{\"metadata\": {\"n\": 1}}",
            b"{\"data\": 1",
            // serde builds a struct from an array too; daprd does not.
            b"[\"x\"]",
            b" [{\"a\": 1}, {}, \"create\"]",
        ] {
            let e = decode_envelope(&Bytes::copy_from_slice(bad)).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::MalformedRequest,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(e.message.starts_with("failed deserializing HTTP body: "));
        }
    }

    #[test]
    fn finds_invalid_percent_encoding() {
        assert_eq!(invalid_percent_encoding("/v1.0/bindings/orders"), None);
        assert_eq!(invalid_percent_encoding("/v1.0/bindings/%2Fa%c3%a9"), None);
        assert_eq!(invalid_percent_encoding("/v1.0/bindings/%zz"), Some(15));
        assert_eq!(invalid_percent_encoding("/v1.0/bindings/out1%"), Some(19));
        assert_eq!(invalid_percent_encoding("/a%4"), Some(2));
        assert_eq!(invalid_percent_encoding("/a%%41"), Some(2));
    }

    #[test]
    fn a_connection_has_started_after_http1_bytes_or_the_h2_preface_and_first_frame() {
        let started = |chunks: &[&[u8]]| {
            let mut w = StartWatch::default();
            chunks.iter().map(|c| w.feed(c)).collect::<Vec<_>>()
        };
        assert_eq!(started(&[b"G"]), [true], "HTTP/1");
        assert_eq!(
            started(&[b"\x16\x03\x01"]),
            [true],
            "TLS or garbage: hyper refuses it"
        );
        assert_eq!(started(&[b""]), [true], "EOF");
        assert_eq!(
            started(&[b"PRI * HTTP/2.0", b"\r\n\r\nSM\r\n\r\n"]),
            [false, false],
            "preface only"
        );
        assert_eq!(
            started(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\0\0\0\x04\0\0\0\0\0"]),
            [false, true],
            "empty SETTINGS"
        );
        let mut settings = H2_PREFACE.to_vec();
        settings.extend_from_slice(b"\0\0\x06\x04\0\0\0\0\0\0\x03\0\0");
        assert_eq!(
            started(&[&settings, b"\0\x64", b"more"]),
            [false, true, true],
            "SETTINGS with one entry, in parts"
        );
        assert_eq!(
            started(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff"]),
            [false],
            "a huge first frame is waited for up to 16 KiB"
        );
        assert_eq!(
            started(&[
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x04\0\0\0\0\0",
                &[0; 16 << 10]
            ]),
            [false, true]
        );
    }

    #[test]
    fn bodies_may_nest_as_deep_as_go_allows_and_no_deeper() {
        let nested = |depth: usize| {
            Bytes::from(format!(
                "{{\"operation\": \"create\", \"data\": {}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ))
        };
        // The envelope is the first level.
        let ok = decode_envelope(&nested(MAX_JSON_DEPTH - 1)).unwrap();
        assert_eq!(ok.data.len(), 2 * (MAX_JSON_DEPTH - 1));
        let e = decode_envelope(&nested(MAX_JSON_DEPTH)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedRequest);
        assert!(e.message.contains("deeper than 10000"), "{}", e.message);
        // Far deeper, without a stack overflow.
        assert!(decode_envelope(&nested(1_000_000)).is_err());
        // Any field counts, unknown ones too (serde_json skips those unchecked).
        let unknown = Bytes::from(format!(
            "{{\"operation\": \"create\", \"data\": 1, \"x\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ));
        let e = decode_envelope(&unknown).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedRequest);
    }
}
