//! Binding components: one small object-safe trait each for output and input,
//! and [`plan`], the one place that maps a component's `spec.type` to code.

pub mod cron;
pub mod kafka;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{Component, ConfigError};
use crate::status::InputStatus;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A call to an output binding, as both APIs decode it.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
    pub operation: String,
}

/// What an output binding answers.
#[derive(Debug, Clone, Default)]
pub struct InvokeResponse {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// Why an output binding call failed. The API layer maps these to Dapr's error codes.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("operation field is missing from request")]
    MissingOperation,
    #[error(
        "binding {binding} does not support operation {operation}. supported operations:{supported}"
    )]
    UnsupportedOperation {
        binding: String,
        operation: String,
        supported: String,
    },
    #[error("the brokers refuse this client ({0}); the message was not sent")]
    Unavailable(String),
    #[error(
        "no acknowledgement from the broker within {0:?}; the message may or may not have been written"
    )]
    Timeout(Duration),
    #[error("{0}")]
    Rejected(String),
    #[error("the sidecar is shutting down")]
    ShuttingDown,
    #[error("{context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An output binding: turns a request into a write on its backend.
pub trait OutputBinding: Send + Sync {
    /// Operations this binding accepts, e.g. `["create"]`.
    fn operations(&self) -> &'static [&'static str];
    /// Performs one operation; resolves once the backend has acknowledged it.
    fn invoke(&self, request: InvokeRequest)
    -> BoxFuture<'_, Result<InvokeResponse, BindingError>>;
    /// Flushes what is pending, within `timeout`. Called once at shutdown.
    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()>;
    /// A short description of a known problem with the backend, if any.
    fn problem(&self) -> Option<String> {
        None
    }
    /// The messaging system written to (`messaging.system` of exported spans).
    fn messaging_system(&self) -> Option<&'static str> {
        None
    }
    /// Where records go (`messaging.destination.name` of exported spans).
    fn destination(&self) -> Option<&str> {
        None
    }
}

/// One event read by an input binding.
#[derive(Debug, Clone, Default)]
pub struct BindingEvent {
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
    /// Where the event was read, for telemetry; `None` for generated events (cron).
    pub origin: Option<EventOrigin>,
}

/// The record an input event came from, typed, so that telemetry and status
/// never parse it back out of the app-facing metadata.
#[derive(Debug, Clone)]
pub struct EventOrigin {
    /// `messaging.system`, e.g. `kafka`.
    pub system: &'static str,
    /// Topic or queue; shared by every event of one partition.
    pub destination: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Span attribute names of `partition` and `offset` in the system's
    /// semantic conventions (e.g. `messaging.kafka.offset`).
    pub attributes: &'static OriginAttributes,
}

#[derive(Debug)]
pub struct OriginAttributes {
    pub partition: &'static str,
    pub offset: &'static str,
}

/// Why the app did not take an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("the app answered {0}")]
    Rejected(String),
    #[error("the app is unreachable: {0}")]
    Unreachable(String),
    #[error("the app did not answer within {0:?}")]
    Timeout(Duration),
    #[error("sending the app's reply to output binding {binding} failed: {reason}")]
    Forward { binding: String, reason: String },
}

/// Where an input binding hands its events: the app, through the app channel.
pub trait EventSink: Send + Sync {
    /// Resolves `Ok` only once the app has accepted the event.
    fn deliver<'a>(&'a self, event: &'a BindingEvent) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// An input binding: reads events and delivers each through the sink.
pub trait InputBinding: Send {
    /// Runs until `shutdown` is cancelled, then finishes in-flight work within `grace`.
    fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        status: Arc<InputStatus>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> BoxFuture<'static, ()>;
}

/// A component whose type and metadata were checked at load time.
#[derive(Debug, Clone)]
pub struct Planned {
    pub component: Component,
    pub spec: Spec,
}

/// Typed metadata, one variant per supported `spec.type`.
#[derive(Debug, Clone)]
pub enum Spec {
    Kafka(Arc<kafka::KafkaMetadata>),
    Cron(cron::CronMetadata),
}

pub const SUPPORTED_TYPES: &[&str] = &["bindings.kafka", "bindings.cron"];

impl Planned {
    /// The route input events are posted to (HTTP) and the name they carry.
    pub fn input_route(&self) -> Option<&str> {
        match &self.spec {
            Spec::Kafka(m) => m.is_input().then_some(m.route.as_str()),
            Spec::Cron(m) => Some(m.route.as_str()),
        }
    }

    /// The messaging system input events come from (`messaging.system` of exported spans).
    pub fn messaging_system(&self) -> Option<&'static str> {
        match &self.spec {
            Spec::Kafka(_) => Some("kafka"),
            Spec::Cron(_) => None,
        }
    }

    /// Whether the component says `direction: input`, which skips asking the app.
    pub fn input_is_explicit(&self) -> bool {
        match &self.spec {
            Spec::Kafka(m) => m.direction.explicit && m.direction.input,
            Spec::Cron(m) => m.direction_explicit,
        }
    }

    /// Builds the output side, if the component has one.
    pub fn output(&self) -> Result<Option<Arc<dyn OutputBinding>>, BindingError> {
        match &self.spec {
            Spec::Kafka(m) if m.is_output() => Ok(Some(Arc::new(kafka::KafkaOutput::new(
                &self.component.name,
                m.clone(),
            )?))),
            Spec::Kafka(_) | Spec::Cron(_) => Ok(None),
        }
    }

    /// Builds the input side, if the component has one.
    pub fn input(&self) -> Result<Option<Box<dyn InputBinding>>, BindingError> {
        match &self.spec {
            Spec::Kafka(m) if m.is_input() => Ok(Some(Box::new(kafka::KafkaInput::new(
                &self.component.name,
                m.clone(),
            )))),
            Spec::Kafka(_) => Ok(None),
            Spec::Cron(m) => Ok(Some(Box::new(cron::CronInput::new(
                &self.component.name,
                m.clone(),
            )))),
        }
    }
}

/// Checks each component's type and metadata; returns the good ones and every error.
pub fn plan(components: Vec<Component>) -> (Vec<Planned>, Vec<ConfigError>) {
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for component in components {
        let parsed = match component.component_type.as_str() {
            "bindings.kafka" => check_version(&component).and_then(|()| {
                kafka::KafkaMetadata::parse(&component).map(|m| Spec::Kafka(Arc::new(m)))
            }),
            "bindings.cron" => check_version(&component)
                .and_then(|()| cron::CronMetadata::parse(&component).map(Spec::Cron)),
            other => {
                let e = component.error(
                    Some("spec.type"),
                    format!(
                        "unsupported component type {other:?}; outrigger serves {}",
                        SUPPORTED_TYPES.join(", ")
                    ),
                );
                if component.ignore_errors {
                    tracing::warn!(component = %component.name, "{e} (skipped: ignoreErrors is true)");
                    continue;
                }
                Err(vec![e])
            }
        };
        match parsed {
            Ok(spec) => planned.push(Planned { component, spec }),
            Err(errs) if component.ignore_errors => {
                for e in errs {
                    tracing::warn!(component = %component.name, "{e} (component skipped: ignoreErrors is true)");
                }
            }
            Err(errs) => errors.extend(errs),
        }
    }
    (planned, errors)
}

fn check_version(c: &Component) -> Result<(), Vec<ConfigError>> {
    if c.version == "v1" {
        Ok(())
    } else {
        Err(vec![c.error(
            Some("spec.version"),
            format!("unsupported version {:?} (expected v1)", c.version),
        )])
    }
}
