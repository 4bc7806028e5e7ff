//! The gRPC Dapr API (default port 50001): `InvokeBinding`, `GetMetadata`,
//! `SetMetadata`, `Shutdown`, plus server reflection. A gate in front of every
//! service checks the API token and answers every other Dapr rpc UNIMPLEMENTED,
//! naming its building block. [`serve`] runs it with the same connection
//! limits as the HTTP shim.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use super::errors::building_block;
use super::http::{GuardedStream, ServerLimits};
use super::{ApiError, ApiState, ErrorKind};
use crate::bindings::{BoxFuture, InvokeRequest};
use crate::proto::runtime::v1 as pb;
use crate::proto::runtime::v1::dapr_server::Dapr;

const DAPR_SERVICE: &str = "/dapr.proto.runtime.v1.Dapr/";

/// The call's `:authority`, kept by the gate for [`call_metadata`].
#[derive(Clone)]
struct Authority(String);

/// gRPC metadata grpc-go keeps out of what it hands a handler.
const RESERVED_GRPC: &[&str] = &[
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-message-type",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
];

/// As daprd: every call metadata entry joins the request metadata (so becomes a
/// record header), without overwriting an entry the request names, except the
/// trace context; `:authority` and `grpc-*` keys get daprd's `dapr-` prefix.
/// Unlike daprd, the API token is never copied: it would land in every record.
fn call_metadata(
    request: &Request<pb::InvokeBindingRequest>,
    metadata: &mut std::collections::HashMap<String, String>,
) {
    let mut put = |key: String, value: &str| {
        let trace = super::TRACE_HEADERS.contains(&key.as_str());
        if trace || !metadata.contains_key(&key) {
            metadata.insert(key, value.to_string());
        }
    };
    if let Some(Authority(a)) = request.extensions().get::<Authority>() {
        put("dapr-authority".to_string(), a);
    }
    for kv in request.metadata().iter() {
        let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv else {
            continue;
        };
        let key = k.as_str();
        if RESERVED_GRPC.contains(&key) || key == "dapr-api-token" {
            continue;
        }
        let Ok(value) = v.to_str() else { continue };
        if key.starts_with("grpc-") {
            put(format!("dapr-{key}"), value);
        } else {
            put(key.to_string(), value);
        }
    }
}
const INVOKE_BINDING: &str = "/dapr.proto.runtime.v1.Dapr/InvokeBinding";
const SERVED: &[&str] = &["InvokeBinding", "GetMetadata", "SetMetadata", "Shutdown"];

/// Call metadata taken per call, as grpc-go: 16 MiB.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 << 20;

pub struct DaprApi {
    pub state: Arc<ApiState>,
}

#[tonic::async_trait]
impl Dapr for DaprApi {
    async fn invoke_binding(
        &self,
        request: Request<pb::InvokeBindingRequest>,
    ) -> Result<Response<pb::InvokeBindingResponse>, Status> {
        let mut from_call = std::collections::HashMap::new();
        call_metadata(&request, &mut from_call);
        let mut r = request.into_inner();
        for (k, v) in from_call {
            let trace = super::TRACE_HEADERS.contains(&k.as_str());
            if trace || !r.metadata.contains_key(&k) {
                r.metadata.insert(k, v);
            }
        }
        let invoke = InvokeRequest {
            data: r.data,
            metadata: r.metadata,
            operation: r.operation,
        };
        match self.state.invoke_output(&r.name, invoke).await {
            Ok(resp) => Ok(Response::new(pb::InvokeBindingResponse {
                data: resp.data,
                metadata: resp.metadata,
            })),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn get_metadata(
        &self,
        _: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let s = &self.state;
        let registered_components = s
            .components
            .iter()
            .map(|c| pb::RegisteredComponents {
                name: c.name.clone(),
                r#type: c.component_type.clone(),
                version: c.version.clone(),
                capabilities: c.capabilities.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        let app_connection_properties = Some(pb::AppConnectionProperties {
            port: i32::from(s.app.port.unwrap_or(0)),
            protocol: s.app.protocol.to_string(),
            channel_address: s.app.address.clone(),
            max_concurrency: s.app.max_concurrency as i32,
            health: None,
        });
        Ok(Response::new(pb::GetMetadataResponse {
            id: s.app_id.clone(),
            registered_components,
            extended_metadata: s.extended_metadata().into_iter().collect(),
            app_connection_properties,
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            enabled_features: Vec::new(),
            actor_runtime: Some(pb::ActorRuntime {
                runtime_status: pb::actor_runtime::ActorRuntimeStatus::Disabled as i32,
                host_ready: false,
                placement: "placement: disconnected".to_string(),
            }),
            workflows: Some(pb::MetadataWorkflows::default()),
        }))
    }

    async fn set_metadata(
        &self,
        request: Request<pb::SetMetadataRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        super::http::set_extended_metadata(&self.state, r.key, r.value)
            .map_err(|e| e.to_status())?;
        Ok(Response::new(()))
    }

    async fn shutdown(&self, _: Request<pb::ShutdownRequest>) -> Result<Response<()>, Status> {
        tracing::info!("shutdown requested through the gRPC API");
        let token = self.state.shutdown.clone();
        tokio::spawn(async move { token.cancel() });
        Ok(Response::new(()))
    }
}

/// Serves the Dapr gRPC API (with reflection) on `listener` until `stop`.
/// Connections count against `slots` (best not shared with the HTTP shim, so
/// that one API cannot starve the other), must send the HTTP/2 preface and
/// first frame within the header timeout, and are pinged so that dead peers
/// are dropped.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    stop: CancellationToken,
    limits: ServerLimits,
    slots: Arc<Semaphore>,
) {
    let limit = state.max_request_bytes;
    let dapr = crate::proto::runtime::v1::dapr_server::DaprServer::new(DaprApi {
        state: state.clone(),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX);
    let served = tonic::transport::Server::builder()
        // tonic leaves streams per connection unbounded unless told.
        .max_concurrent_streams(Some(256))
        // grpc-go's default; tonic's (16 KiB) refuses call metadata Dapr clients send.
        .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(GateLayer { state })
        .add_routes(
            tonic::service::Routes::new(LazyReflection::<true>)
                .add_service(LazyReflection::<false>)
                .add_service(dapr),
        )
        .serve_with_incoming_shutdown(incoming(listener, limits, slots), stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!("gRPC server failed: {e}");
    }
}

/// The reflection services (v1 and v1alpha), built once per process on the
/// first reflection call. Building them decodes and indexes every descriptor
/// of Dapr's protos, about 1 ms of CPU: at start it competed for the two
/// cores with the Kafka clients' creation, and most apps never ask.
static REFLECTION_ROUTES: std::sync::OnceLock<Option<tonic::service::Routes>> =
    std::sync::OnceLock::new();

fn reflection_routes() -> Option<&'static tonic::service::Routes> {
    REFLECTION_ROUTES
        .get_or_init(|| {
            // Advertise only what this server serves (the descriptors also hold AppCallback).
            let reflection = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                    .with_service_name("dapr.proto.runtime.v1.Dapr")
                    .with_service_name("grpc.reflection.v1.ServerReflection")
                    .with_service_name("grpc.reflection.v1alpha.ServerReflection")
            };
            let v1 = reflection().build_v1().ok()?;
            let v1alpha = reflection().build_v1alpha().ok()?;
            Some(tonic::service::Routes::new(v1).add_service(v1alpha))
        })
        .as_ref()
}

/// Server reflection, v1 (`true`) or v1alpha, routed by name and built by
/// [`reflection_routes`] when first called.
#[derive(Clone, Copy)]
struct LazyReflection<const V1: bool>;

impl tonic::server::NamedService for LazyReflection<true> {
    const NAME: &'static str = "grpc.reflection.v1.ServerReflection";
}

impl tonic::server::NamedService for LazyReflection<false> {
    const NAME: &'static str = "grpc.reflection.v1alpha.ServerReflection";
}

impl<const V1: bool> tower::Service<http::Request<Body>> for LazyReflection<V1> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            // Once built, no hop to the blocking pool; the first build (about a
            // millisecond) runs off the runtime's thread.
            let routes = match REFLECTION_ROUTES.get() {
                Some(built) => built.as_ref(),
                None => tokio::task::spawn_blocking(reflection_routes)
                    .await
                    .ok()
                    .flatten(),
            };
            match routes {
                Some(routes) => tower::ServiceExt::oneshot(routes.clone(), req).await,
                None => {
                    tracing::error!("cannot build the gRPC reflection service");
                    Ok(Status::internal("server reflection is unavailable").into_http())
                }
            }
        })
    }
}

/// Accepted connections, at most `slots` open at once (more are closed on
/// accept), each guarded by the header timeout until it has started (see
/// [`GuardedStream`]). Accept errors (out of file descriptors) back off instead of
/// spinning, which tonic's own loop would do.
pub fn incoming(
    listener: TcpListener,
    limits: ServerLimits,
    slots: Arc<Semaphore>,
) -> impl Stream<Item = std::io::Result<GuardedStream>> + Send + 'static {
    futures::stream::unfold(listener, move |listener| {
        let slots = slots.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tracing::debug!(%peer, "gRPC connection refused: {} connections open", limits.max_connections);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let guarded = GuardedStream::new(stream, limits.header_read_timeout, Some(slot));
                        return Some((Ok(guarded), listener));
                    }
                    Err(e) => {
                        tracing::warn!("gRPC accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    })
    .boxed()
}

impl Connected for GuardedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.get_ref().connect_info()
    }
}

/// The layer that puts [`Gate`] in front of every gRPC service.
#[derive(Clone)]
pub struct GateLayer {
    pub state: Arc<ApiState>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Token check, UNIMPLEMENTED for unserved Dapr rpcs, and daprd's code for
/// oversized messages.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    state: Arc<ApiState>,
}

impl<S> tower::Service<http::Request<Body>> for Gate<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(refused) = not_grpc(&request) {
            return Box::pin(async move { Ok(refused) });
        }
        let presented = request
            .headers()
            .get("dapr-api-token")
            .map(|v| v.as_bytes());
        if !self.state.authorized(presented) {
            let status = ApiError::unauthorized(presented.is_some()).to_status();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // `:authority` is not in the metadata tonic hands the rpc; daprd copies it.
        if let Some(a) = request
            .uri()
            .authority()
            .map(|a| Authority(a.as_str().to_string()))
        {
            request.extensions_mut().insert(a);
        }
        if let Some(method) = request.uri().path().strip_prefix(DAPR_SERVICE)
            && !SERVED.contains(&method)
        {
            let status = ApiError::new(
                    ErrorKind::NotImplemented,
                    format!(
                        "dapr.proto.runtime.v1.Dapr/{method} is not implemented: outrigger serves the bindings building block only ({} is not available)",
                        building_block(method)
                    ),
                )
                .to_status();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // One cap with the HTTP shim, taken before the message is decoded.
        let slot = if request.uri().path() == INVOKE_BINDING {
            match self.state.begin_output() {
                Ok(slot) => Some(slot),
                Err(e) => {
                    let status = e.to_status();
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        } else {
            None
        };
        // The service that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.state.max_request_bytes;
        Box::pin(async move {
            let response = inner.call(request).await?;
            drop(slot);
            Ok(resource_exhausted_when_too_large(response, limit))
        })
    }
}

/// grpc-go answers a request whose content-type is not `application/grpc` (or
/// `application/grpc+codec`, `application/grpc;...`) with HTTP 415 and
/// INVALID_ARGUMENT; tonic would serve it.
fn not_grpc(request: &http::Request<Body>) -> Option<http::Response<Body>> {
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let grpc = content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']));
    if grpc {
        return None;
    }
    let mut response = ApiError::new(
        ErrorKind::UnsupportedMediaType,
        format!("invalid gRPC request content-type {content_type:?}"),
    )
    .to_status()
    .into_http();
    *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    Some(response)
}

/// tonic reports an oversized request as OUT_OF_RANGE; Dapr clients expect
/// RESOURCE_EXHAUSTED, as grpc-go sends. A unary request that fails to decode
/// gets a trailers-only response, so the status is in the headers.
fn resource_exhausted_when_too_large(
    response: http::Response<Body>,
    limit: usize,
) -> http::Response<Body> {
    // grpc-message is percent-encoded on the wire; decode it before matching.
    let too_large = Status::from_header_map(response.headers())
        .is_some_and(|s| s.code() == tonic::Code::OutOfRange && s.message().contains("too large"));
    if too_large {
        // grpc-go's words, which Dapr clients see from daprd.
        let found = Status::from_header_map(response.headers())
            .and_then(|s| {
                let m = s.message();
                let n = m.split("found ").nth(1)?.split(' ').next()?.to_string();
                Some(n)
            })
            .unwrap_or_else(|| "?".into());
        Status::resource_exhausted(format!(
            "grpc: received message larger than max ({found} vs. {limit})"
        ))
        .into_http()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_content_types_are_grpc() {
        let with = |ct: Option<&str>| {
            let mut r = http::Request::new(Body::empty());
            if let Some(ct) = ct {
                r.headers_mut().insert("content-type", ct.parse().unwrap());
            }
            not_grpc(&r).map(|resp| resp.status().as_u16())
        };
        assert_eq!(with(Some("application/grpc")), None);
        assert_eq!(with(Some("application/grpc+proto")), None);
        assert_eq!(with(Some("application/grpc;charset=utf-8")), None);
        assert_eq!(with(Some("application/json")), Some(415));
        assert_eq!(with(Some("application/grpcx")), Some(415));
        assert_eq!(with(None), Some(415));
    }

    #[test]
    fn oversized_message_becomes_resource_exhausted() {
        // What tonic answers, message percent-encoded as on the wire.
        let tonic_says: http::Response<Body> = Status::out_of_range(
            "Error, decoded message length too large: found 2097173 bytes, the limit is: 1048576 bytes",
        )
        .into_http();
        let mapped = resource_exhausted_when_too_large(tonic_says, 1 << 20);
        let status = Status::from_header_map(mapped.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        // grpc-go's words, as daprd's clients see them.
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (2097173 vs. 1048576)"
        );

        // Other OUT_OF_RANGE answers pass through.
        let other: http::Response<Body> = Status::out_of_range("offset out of range").into_http();
        let kept = resource_exhausted_when_too_large(other, 1 << 20);
        let status = Status::from_header_map(kept.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
    }
}
