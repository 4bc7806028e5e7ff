//! The app channel: how the sidecar reaches its app to ask which input bindings
//! it serves and to deliver their events, over HTTP or gRPC.

mod grpc;
pub(crate) mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bindings::{
    BindingEvent, BoxFuture, DeliveryError, EventSink, InvokeRequest, OutputBinding,
};

pub use grpc::GrpcChannel;
pub use http::HttpChannel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppProtocol {
    Http,
    Grpc,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http => "http",
            AppProtocol::Grpc => "grpc",
        }
    }
}

/// How to reach the app.
#[derive(Debug, Clone)]
pub struct AppTarget {
    pub protocol: AppProtocol,
    pub address: String,
    pub port: u16,
    /// Sent as `dapr-api-token` (from `APP_API_TOKEN`).
    pub token: Option<String>,
    /// Bound on one delivery.
    pub timeout: Duration,
    /// Largest gRPC message accepted from the app.
    pub max_message_bytes: usize,
}

/// Why the app could not be asked what it serves.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot ask the app which bindings it serves: {0}")]
    Discovery(String),
}

/// What the app answered to an event: optionally, data to send on to output bindings.
#[derive(Debug, Default)]
pub struct AppReply {
    pub to: Vec<String>,
    pub data: Bytes,
    pub parallel: bool,
}

/// One input binding to ask the app about.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub name: String,
    pub route: String,
}

pub trait AppChannel: Send + Sync {
    /// For each binding the app serves: the name the app knows it by.
    fn subscriptions<'a>(
        &'a self,
        wanted: &'a [Wanted],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, ChannelError>>;
    /// Delivers one event; `Ok` only when the app accepted it.
    fn deliver<'a>(
        &'a self,
        app_name: &'a str,
        route: &'a str,
        event: &'a BindingEvent,
    ) -> BoxFuture<'a, Result<AppReply, DeliveryError>>;
}

pub fn connect(target: &AppTarget) -> Arc<dyn AppChannel> {
    match target.protocol {
        AppProtocol::Http => Arc::new(HttpChannel::new(target)),
        AppProtocol::Grpc => Arc::new(GrpcChannel::new(target)),
    }
}

/// Waits until the app port accepts TCP connections. Logs while waiting; gives
/// up (returns false) after `timeout` or when cancelled.
pub async fn wait_for_app(
    target: &AppTarget,
    timeout: Duration,
    cancel: &CancellationToken,
) -> bool {
    let started = Instant::now();
    let mut next_log = started + Duration::from_secs(2);
    loop {
        if connect_once(&target.address, target.port).await {
            tracing::info!(app.port = target.port, waited = ?started.elapsed(), "app channel is ready");
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        if Instant::now() >= next_log {
            tracing::info!(
                app.port = target.port,
                "waiting for the app to listen on {}:{}",
                target.address,
                target.port
            );
            next_log = Instant::now() + Duration::from_secs(5);
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn connect_once(address: &str, port: u16) -> bool {
    let attempt = async {
        match address.parse::<std::net::IpAddr>() {
            Ok(ip) => tokio::net::TcpStream::connect(SocketAddr::new(ip, port))
                .await
                .is_ok(),
            Err(_) => tokio::net::TcpStream::connect((address, port))
                .await
                .is_ok(),
        }
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .unwrap_or(false)
}

/// An input binding's way to the app: app concurrency cap, then the channel, then
/// the reply's `to` bindings. An event counts as delivered only when all succeeded.
pub struct AppSink {
    pub binding: String,
    pub app_name: String,
    pub route: String,
    pub channel: Arc<dyn AppChannel>,
    pub outputs: Arc<HashMap<String, Arc<dyn OutputBinding>>>,
    pub concurrency: Option<Arc<Semaphore>>,
    pub metrics: Option<Arc<crate::metrics::AppChannelMetrics>>,
    /// Span export (`--otlp-endpoint`); `None` when off.
    pub tracer: Option<Arc<crate::otlp::Tracer>>,
}

impl EventSink for AppSink {
    fn deliver<'a>(&'a self, event: &'a BindingEvent) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let _permit = match &self.concurrency {
                Some(s) => Some(
                    s.acquire()
                        .await
                        .map_err(|_| DeliveryError::Unreachable("shutting down".into()))?,
                ),
                None => None,
            };
            // Without --otlp-endpoint the event goes out as it is, with no copy.
            let Some(tracer) = &self.tracer else {
                return self.deliver_now(event, None).await;
            };
            let Some(span) =
                tracer.start_input(&self.binding, event.origin.as_ref(), &event.metadata)
            else {
                return self.deliver_now(event, None).await;
            };
            // The app sees this delivery's span as its parent.
            let traceparent = span.traceparent();
            let mut traced = event.clone();
            traced
                .metadata
                .insert(crate::otlp::TRACEPARENT.to_string(), traceparent.clone());
            let result = self.deliver_now(&traced, Some(&traceparent)).await;
            tracer.finish(span, result.as_ref().err().map(ToString::to_string));
            result
        })
    }
}

impl AppSink {
    /// One delivery to the app, then its reply's `to` bindings; `trace` is the
    /// delivery span's `traceparent`, the parent of the forwarded writes.
    async fn deliver_now(
        &self,
        event: &BindingEvent,
        trace: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let started = std::time::Instant::now();
        let reply = self
            .channel
            .deliver(&self.app_name, &self.route, event)
            .await;
        if let Some(m) = &self.metrics {
            m.record(reply.is_ok(), started.elapsed());
        }
        let reply = reply?;
        if reply.to.is_empty() {
            return Ok(());
        }
        self.forward(reply, trace).await
    }

    /// Sends the app's reply data to the output bindings it named (operation `create`).
    async fn forward(&self, reply: AppReply, trace: Option<&str>) -> Result<(), DeliveryError> {
        let send = |target: String| {
            let data = reply.data.clone();
            async move {
                let Some(output) = self.outputs.get(&target) else {
                    return Err(DeliveryError::Forward {
                        binding: target.clone(),
                        reason: "no such output binding".into(),
                    });
                };
                let mut req = InvokeRequest {
                    data,
                    metadata: HashMap::new(),
                    operation: "create".into(),
                };
                // Only under an exported delivery span: otherwise, as without
                // tracing, the forwarded record carries no trace context.
                let span = match (&self.tracer, trace) {
                    (Some(tracer), Some(parent)) => {
                        req.metadata
                            .insert(crate::otlp::TRACEPARENT.to_string(), parent.to_string());
                        tracer
                            .start_output(
                                &target,
                                output.messaging_system(),
                                output.destination(),
                                &mut req.metadata,
                            )
                            .map(|span| (tracer, span))
                    }
                    _ => None,
                };
                let result = output.invoke(req).await;
                if let Some((tracer, span)) = span {
                    tracer.finish(span, result.as_ref().err().map(ToString::to_string));
                }
                result.map(|_| ()).map_err(|e| DeliveryError::Forward {
                    binding: target,
                    reason: e.to_string(),
                })
            }
        };
        if reply.parallel {
            let results = futures::future::join_all(reply.to.iter().cloned().map(send)).await;
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        } else {
            for target in reply.to.iter().cloned() {
                send(target).await?;
            }
            Ok(())
        }
    }
}
