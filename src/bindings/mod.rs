//! Binding components: one small object-safe trait each for output and input,
//! and [`REGISTRY`], the one place that maps a component's `spec.type` to its
//! [`BindingType`].

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
///
/// It is built whole before the sidecar reports ready (clients created, TLS
/// material loaded); `run` only subscribes and consumes.
pub trait InputBinding: Send {
    /// Runs until `shutdown` is cancelled, then finishes in-flight work within
    /// the grace period it was built with.
    fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// What building an output side may need from the sidecar.
#[derive(Debug, Clone, Copy)]
pub struct OutputInit {
    /// Output calls the sidecar lets in flight at once: a client-side queue
    /// needs no more room than this.
    pub max_in_flight: usize,
}

/// What building an input side needs from the sidecar.
#[derive(Clone)]
pub struct InputInit {
    /// Where the binding reports its state (`/v1.0/metadata`, metrics).
    pub status: Arc<InputStatus>,
    /// How long a stop waits for in-flight deliveries.
    pub grace: Duration,
}

/// One binding type: the code behind one `spec.type`. Adding a type is one
/// folder (or file) implementing this and one line in [`REGISTRY`].
pub trait BindingType: Sync {
    /// The `spec.type` it serves, e.g. `bindings.kafka`.
    fn name(&self) -> &'static str;
    /// Reads and checks a component's metadata, once, at load time.
    fn plan(&self, component: &Component) -> Result<Box<dyn BindingPlan>, Vec<ConfigError>>;
    /// Process-wide set-up its clients will need, run by
    /// [`crate::runtime::prewarm`] beside the start-up instead of in line
    /// with it. Nothing by default.
    fn prewarm(&self) {}
}

/// A component's typed metadata, checked; it knows what the type offers.
pub trait BindingPlan: Send + Sync + std::fmt::Debug {
    /// The route input events are posted to (HTTP) and the name they carry;
    /// `None` when the component has no input side.
    fn input_route(&self) -> Option<&str>;
    /// Whether the component says `direction: input`, which skips asking the app.
    fn input_is_explicit(&self) -> bool;
    /// Builds the output side, if the component has one.
    fn output(
        &self,
        name: &str,
        init: OutputInit,
    ) -> Result<Option<Arc<dyn OutputBinding>>, BindingError>;
    /// Builds the input side, if the component has one.
    fn input(
        &self,
        name: &str,
        init: InputInit,
    ) -> Result<Option<Box<dyn InputBinding>>, BindingError>;
    /// The typed metadata, for tests and tools that know the type.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Every binding type outrigger serves.
pub static REGISTRY: &[&dyn BindingType] = &[&kafka::KafkaType, &cron::CronType];

/// Runs every type's [`BindingType::prewarm`] (see [`crate::runtime::prewarm`]).
pub fn prewarm() {
    REGISTRY.iter().for_each(|t| t.prewarm());
}

/// The `spec.type` names of [`REGISTRY`].
pub fn supported_types() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|t| t.name())
}

/// A component whose type and metadata were checked at load time.
#[derive(Debug)]
pub struct Planned {
    pub component: Component,
    pub plan: Box<dyn BindingPlan>,
}

impl Planned {
    /// The typed metadata, when the component is of the type that has `T`.
    pub fn metadata<T: 'static>(&self) -> Option<&T> {
        self.plan.as_any().downcast_ref()
    }
}

/// Checks each component's type and metadata; returns the good ones and every error.
pub fn plan(components: Vec<Component>) -> (Vec<Planned>, Vec<ConfigError>) {
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for component in components {
        let kind = REGISTRY
            .iter()
            .find(|t| t.name() == component.component_type);
        let parsed = match kind {
            Some(kind) => check_version(&component).and_then(|()| kind.plan(&component)),
            None => {
                let e = component.error(
                    Some("spec.type"),
                    format!(
                        "unsupported component type {:?}; outrigger serves {}",
                        component.component_type,
                        supported_types().collect::<Vec<_>>().join(", ")
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
            Ok(plan) => planned.push(Planned { component, plan }),
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

/// Reads `route` (default: the component's name) as the URL path events are
/// posted to. As daprd, which parses it as a URL: characters a path cannot
/// carry (a space, `"`, `{`, non-ASCII…) are percent-encoded, `%XX` escapes are
/// kept; what daprd cannot parse either (a control character, a `%` without
/// two hex digits, a `#`) is refused at load time, since every delivery to it
/// would fail.
pub fn read_route(r: &mut crate::config::FieldReader<'_>, default: &str) -> String {
    let given = r
        .str("route")
        .map(|s| s.trim_start_matches('/'))
        .unwrap_or(default);
    match encode_route(given) {
        Ok(route) => route,
        Err(why) => {
            r.error("route", format!("{given:?} cannot be an HTTP path: {why}"));
            given.to_string()
        }
    }
}

fn encode_route(route: &str) -> Result<String, String> {
    let bytes = route.as_bytes();
    let mut out = String::with_capacity(route.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                if hex.is_none() {
                    return Err("`%` must start an escape of two hex digits (`%20`)".into());
                }
                out.push('%');
            }
            0..=0x1f | 0x7f => {
                return Err(format!("control character {b:#04x}"));
            }
            b'#' => return Err("`#` starts a fragment, which is never sent".into()),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' | b':' | b'@' | b'/' | b'?' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
        i += 1;
    }
    match format!("/{out}").parse::<http::uri::PathAndQuery>() {
        Ok(_) => Ok(out),
        Err(e) => Err(e.to_string()),
    }
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

#[cfg(test)]
mod tests {
    use super::encode_route;

    #[test]
    fn routes_are_encoded_as_daprd_sends_them() {
        assert_eq!(encode_route("orders").unwrap(), "orders");
        assert_eq!(encode_route("my route").unwrap(), "my%20route");
        assert_eq!(encode_route("orders%20in").unwrap(), "orders%20in");
        assert_eq!(encode_route("a/b?x=1").unwrap(), "a/b?x=1");
        assert_eq!(encode_route("{é}").unwrap(), "%7B%C3%A9%7D");
        for bad in ["a%zz", "a%2", "tab\there", "nl\n", "frag#x"] {
            assert!(encode_route(bad).is_err(), "{bad:?}");
        }
    }
}
