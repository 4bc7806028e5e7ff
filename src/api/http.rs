//! The HTTP shim of the Dapr API (default port 3500): output bindings, health,
//! metadata and shutdown, with daprd's status codes and JSON error bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{ApiError, ApiState, ErrorKind};
use crate::bindings::InvokeRequest;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errorCode": self.kind.code(), "message": self.message });
        (self.kind.http_status(), axum::Json(body)).into_response()
    }
}

/// A request body must arrive within this time (slow senders).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits that keep slow or hostile clients from holding the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this time (slow-loris).
    pub header_read_timeout: Duration,
    /// Open connections across all HTTP listeners; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { header_read_timeout: Duration::from_secs(10), max_connections: 4096 }
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c) until `stop`, then lets the
/// open connections finish their requests; the caller bounds that wait.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken, limits: ServerLimits, slots: Arc<Semaphore>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
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
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/v1.0/bindings/{name}",
            post(invoke_binding).put(invoke_binding),
        )
        .route("/v1.0/healthz", get(healthz))
        .route("/v1.0/healthz/outbound", get(healthz_outbound))
        .route("/v1.0/metadata", get(metadata))
        .route("/v1.0/metadata/{key}", put(set_metadata))
        .route("/v1.0/shutdown", post(shutdown))
        .route("/{version}/{block}", any(unserved))
        .route("/{version}/{block}/{*rest}", any(unserved))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// `dapr-api-token` on every route but the health probes.
async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = path == "/v1.0/healthz" || path == "/v1.0/healthz/outbound";
    if open
        || state.authorized(
            request
                .headers()
                .get("dapr-api-token")
                .map(HeaderValue::as_bytes),
        )
    {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
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

/// Decodes `{"data": <any JSON>, "metadata": {..}, "operation": ".."}`; `data`
/// becomes its compact JSON text, as daprd hands it to the binding.
pub fn decode_envelope(body: &Bytes) -> Result<InvokeRequest, ApiError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(ApiError::malformed)?;
    let data = match envelope.data {
        Some(raw) => crate::json::compact(body, raw.get()),
        None => Bytes::from_static(b"null"),
    };
    Ok(InvokeRequest {
        data,
        metadata: envelope.metadata.unwrap_or_default(),
        operation: envelope.operation.unwrap_or_default(),
    })
}

async fn read_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.max_request_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}"),
            )
        })?;
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::malformed(format!("cannot read the body: {e}"))
        }
    })
}

async fn invoke_binding(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&state, &headers, body).await?;
    let request = decode_envelope(&body)?;
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
        .map(|c| json!({"name": c.name, "type": c.component_type, "version": c.version, "capabilities": []}))
        .collect();
    let inputs: Vec<_> = state
        .inputs
        .iter()
        .map(|i| {
            let s = i.snapshot();
            json!({
                "name": s.name, "type": s.component_type, "state": s.state.as_str(), "detail": s.detail,
                "delivered": s.delivered, "failedAttempts": s.failed_attempts, "deadLettered": s.dead_lettered,
            })
        })
        .collect();
    let mut body = json!({
        "id": state.app_id,
        "runtimeVersion": env!("CARGO_PKG_VERSION"),
        "enabledFeatures": [],
        "actors": [],
        "components": components,
        "extended": state.extended_metadata(),
        "subscriptions": [],
        "httpEndpoints": [],
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
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let value = String::from_utf8_lossy(&body).into_owned();
    state
        .extended
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, value);
    StatusCode::NO_CONTENT.into_response()
}

async fn shutdown(State(state): State<Arc<ApiState>>) -> Response {
    tracing::info!("shutdown requested through the API");
    // Answer first; the runtime stops accepting and drains after this returns.
    let token = state.shutdown.clone();
    tokio::spawn(async move { token.cancel() });
    StatusCode::NO_CONTENT.into_response()
}

async fn unserved(Path(params): Path<Vec<(String, String)>>) -> ApiError {
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
    ApiError::new(
        ErrorKind::NotFound,
        "no such API; see /v1.0/metadata and the outrigger README for what is served",
    )
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
        assert_eq!(&r.data[..], b"null");
        assert_eq!(r.metadata["key"], "k1");
    }

    #[test]
    fn bad_envelopes_are_malformed() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"text\"",
            b"{\"metadata\": {\"n\": 1}}",
            b"{\"data\": 1",
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
}
