//! gRPC app channel: `AppCallback/ListInputBindings` to ask, `OnBindingEvent` to deliver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::transport::{Channel, Endpoint};

use super::{AppChannel, AppReply, AppTarget, ChannelError, Wanted};
use crate::bindings::{BindingEvent, BoxFuture, DeliveryError};
use crate::proto::runtime::v1::BindingEventRequest;
use crate::proto::runtime::v1::app_callback_client::AppCallbackClient;
use crate::proto::runtime::v1::binding_event_response::BindingEventConcurrency;

/// HTTP/2 connections to the app. Deliveries of different partitions run in
/// parallel; spreading them over a few connections measured ~1.5x the rate of
/// one (bench/, input to a gRPC app).
const CONNECTIONS: usize = 4;

pub struct GrpcChannel {
    clients: Vec<AppCallbackClient<Channel>>,
    next: AtomicUsize,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    timeout: std::time::Duration,
}

impl GrpcChannel {
    pub fn new(target: &AppTarget) -> Self {
        let host = if target.address.contains(':') {
            format!("[{}]", target.address)
        } else {
            target.address.clone()
        };
        let endpoint = Endpoint::from_shared(format!("http://{host}:{}", target.port))
            .expect("a valid URI from an address and a port")
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        let clients = (0..CONNECTIONS)
            .map(|_| {
                AppCallbackClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(target.max_message_bytes)
                    .max_encoding_message_size(usize::MAX)
            })
            .collect();
        GrpcChannel {
            clients,
            next: AtomicUsize::new(0),
            token: target.token.as_deref().and_then(|t| t.parse().ok()),
            timeout: target.timeout,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("dapr-api-token", t.clone());
        }
        req
    }
}

impl AppChannel for GrpcChannel {
    fn subscriptions<'a>(
        &'a self,
        wanted: &'a [Wanted],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, ChannelError>> {
        Box::pin(async move {
            let listed = match self.clients[0]
                .clone()
                .list_input_bindings(self.request(()))
                .await
            {
                Ok(resp) => resp.into_inner().bindings,
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    tracing::info!(
                        "the app does not implement AppCallback/ListInputBindings: it serves no input binding"
                    );
                    Vec::new()
                }
                Err(s) => {
                    return Err(ChannelError::Discovery(format!(
                        "ListInputBindings: {}: {}",
                        s.code(),
                        s.message()
                    )));
                }
            };
            let mut served = HashMap::new();
            for w in wanted {
                // Exact match first; some SDKs (Node) list names lower-cased.
                let found = listed
                    .iter()
                    .find(|l| **l == w.name)
                    .or_else(|| listed.iter().find(|l| l.eq_ignore_ascii_case(&w.name)));
                match found {
                    Some(app_name) => {
                        served.insert(w.name.clone(), app_name.clone());
                    }
                    None => {
                        tracing::info!(binding.name = %w.name, listed = ?listed, "app does not list input binding {}: not consuming it", w.name)
                    }
                }
            }
            Ok(served)
        })
    }

    fn deliver<'a>(
        &'a self,
        app_name: &'a str,
        _route: &'a str,
        event: &'a BindingEvent,
    ) -> BoxFuture<'a, Result<AppReply, DeliveryError>> {
        Box::pin(async move {
            let message = BindingEventRequest {
                name: app_name.to_string(),
                data: event.data.clone(),
                metadata: event.metadata.clone(),
            };
            let mut request = self.request(message);
            // Trace context travels as call metadata too, where gRPC tracing looks for it.
            for name in crate::api::TRACE_HEADERS {
                if let Some(v) = event.metadata.get(name).and_then(|v| v.parse().ok()) {
                    request.metadata_mut().insert(name, v);
                }
            }
            // As daprd: a delivery always carries trace context.
            if !request.metadata().contains_key(crate::otlp::TRACEPARENT)
                && let Ok(v) = crate::otlp::unsampled_traceparent().parse()
            {
                request.metadata_mut().insert(crate::otlp::TRACEPARENT, v);
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS;
            match self.clients[i].clone().on_binding_event(request).await {
                Ok(resp) => {
                    let r = resp.into_inner();
                    if !r.states.is_empty() || !r.store_name.is_empty() {
                        tracing::debug!(store = %r.store_name, "the app returned state items; outrigger has no state stores and ignores them");
                    }
                    Ok(AppReply {
                        parallel: r.concurrency == BindingEventConcurrency::Parallel as i32,
                        to: r.to,
                        data: r.data,
                    })
                }
                Err(s) if s.code() == tonic::Code::DeadlineExceeded => {
                    Err(DeliveryError::Timeout(self.timeout))
                }
                Err(s) if s.code() == tonic::Code::Unavailable => Err(DeliveryError::Unreachable(
                    format!("{}: {}", s.code(), s.message()),
                )),
                Err(s) => Err(DeliveryError::Rejected(format!(
                    "gRPC {:?}: {}",
                    s.code(),
                    s.message()
                ))),
            }
        })
    }
}
