//! The Dapr API the app calls: gRPC (`grpc.rs`, the main API) and the HTTP
//! shim (`http.rs`), over one shared state and one error table.

pub mod errors;
pub mod grpc;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::bindings::{InvokeRequest, InvokeResponse, OutputBinding};
use crate::status::InputStatus;
pub use errors::{ApiError, ErrorKind};

/// A loaded component, as metadata lists it.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub component_type: String,
    pub version: String,
    /// daprd's names: `INPUT_BINDING`, `OUTPUT_BINDING`.
    pub capabilities: Vec<&'static str>,
}

/// The app connection, as metadata lists it.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// `None` when the sidecar runs without `--app-port`.
    pub port: Option<u16>,
    pub protocol: &'static str,
    pub address: String,
    pub max_concurrency: u32,
}

/// Ready flags: outbound once components are loaded, app once the app channel is up.
#[derive(Debug, Default)]
pub struct Readiness {
    pub outbound: AtomicBool,
    pub app: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.outbound.load(Ordering::Acquire) && self.app.load(Ordering::Acquire)
    }
}

/// What both API servers share. Built once at start-up; the output map is
/// immutable afterwards, so the hot path takes no lock.
pub struct ApiState {
    pub app_id: String,
    pub outputs: Arc<HashMap<String, Arc<dyn OutputBinding>>>,
    pub components: Vec<ComponentInfo>,
    pub inputs: Vec<Arc<InputStatus>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub app: AppInfo,
    pub token: Option<String>,
    pub readiness: Arc<Readiness>,
    pub shutdown: CancellationToken,
    pub max_request_bytes: usize,
    pub extended: Mutex<BTreeMap<String, String>>,
    /// Span export (`--otlp-endpoint`); `None` when off.
    pub tracer: Option<Arc<crate::otlp::Tracer>>,
    /// Output calls in flight, HTTP and gRPC together (see [`ApiState::begin_output`]).
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
}

/// The default of `--max-output-calls-in-flight`: enough for any sane
/// concurrency (a call waits at most `produceTimeout`), few enough that the
/// requests held at once (bodies up to --dapr-http-max-request-size, 4 MiB by
/// default) keep memory bounded.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

impl ApiState {
    /// The semaphore behind `in_flight` for a cap of `max` calls.
    pub fn in_flight_limit(max: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)))
    }

    /// Takes one of the output call slots, held until the call has been answered;
    /// when all are taken, the call is refused at once (429 / RESOURCE_EXHAUSTED)
    /// rather than queued, so that overload cannot grow memory. Taken before the
    /// request body is read, so that it bounds the bodies held too.
    pub fn begin_output(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::too_many_in_flight(self.max_in_flight))
    }

    /// Looks up and invokes an output binding, with daprd's error texts.
    pub async fn invoke_output(
        &self,
        name: &str,
        mut request: InvokeRequest,
    ) -> Result<InvokeResponse, ApiError> {
        let Some(binding) = self.outputs.get(name) else {
            return Err(ApiError::invoke_output(
                name,
                format!("couldn't find output binding {name}"),
            ));
        };
        // Without --otlp-endpoint this is the only cost of tracing here: as
        // daprd, every write carries a `traceparent` (a new, unsampled one when
        // the caller sent none).
        let Some(tracer) = &self.tracer else {
            if !request.metadata.contains_key(TRACE_HEADERS[0]) {
                request.metadata.insert(
                    TRACE_HEADERS[0].to_string(),
                    crate::otlp::unsampled_traceparent(),
                );
            }
            return self.invoke_found(name, binding, request).await;
        };
        let span = tracer.start_output(
            name,
            binding.messaging_system(),
            binding.destination(),
            &mut request.metadata,
        );
        if !request.metadata.contains_key(TRACE_HEADERS[0]) {
            request.metadata.insert(
                TRACE_HEADERS[0].to_string(),
                crate::otlp::unsampled_traceparent(),
            );
        }
        let result = self.invoke_found(name, binding, request).await;
        if let Some(span) = span {
            tracer.finish(span, result.as_ref().err().map(ToString::to_string));
        }
        result
    }

    async fn invoke_found(
        &self,
        name: &str,
        binding: &Arc<dyn OutputBinding>,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, ApiError> {
        if request.operation.is_empty() {
            return Err(ApiError::invoke_output(
                name,
                crate::bindings::BindingError::MissingOperation,
            ));
        }
        let supported = binding.operations();
        if !supported.contains(&request.operation.as_str()) {
            let e = crate::bindings::BindingError::UnsupportedOperation {
                binding: name.to_string(),
                operation: request.operation.clone(),
                supported: supported.join(" "),
            };
            return Err(ApiError::invoke_output(name, e));
        }
        let started = std::time::Instant::now();
        let result = binding.invoke(request).await;
        if let Some(m) = self.metrics.output(name) {
            m.record(result.is_ok(), started.elapsed());
        }
        result.map_err(|e| ApiError::invoke_output(name, e))
    }

    /// Checks a presented API token, in constant time.
    pub fn authorized(&self, presented: Option<&[u8]>) -> bool {
        match &self.token {
            None => true,
            Some(expected) => presented.is_some_and(|p| constant_time_eq(p, expected.as_bytes())),
        }
    }

    /// Extended metadata: what the app set, plus the state of each input binding.
    pub fn extended_metadata(&self) -> BTreeMap<String, String> {
        let mut map = self
            .extended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        map.insert("runtime".into(), "outrigger".into());
        for input in &self.inputs {
            let s = input.snapshot();
            let value = if s.detail.is_empty() {
                s.state.as_str().to_string()
            } else {
                format!("{}: {}", s.state.as_str(), s.detail)
            };
            map.insert(format!("inputBinding.{}", s.name), value);
        }
        for (name, binding) in self.outputs.iter() {
            if let Some(problem) = binding.problem() {
                map.insert(format!("outputBinding.{name}"), format!("error: {problem}"));
            }
        }
        map
    }
}

/// W3C trace context headers, carried from the caller into the binding's
/// metadata (for Kafka: record headers), unless the request metadata sets them.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The caller's trace context; allocates only when the caller sent one.
#[derive(Debug, Default)]
pub struct TraceContext([Option<String>; 2]);

impl TraceContext {
    /// Reads the headers with `get` (HTTP headers or gRPC metadata).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        TraceContext(TRACE_HEADERS.map(|name| get(name).map(str::to_string)))
    }

    pub fn apply(self, metadata: &mut HashMap<String, String>) {
        for (name, value) in TRACE_HEADERS.iter().zip(self.0) {
            if let Some(v) = value {
                metadata.entry(name.to_string()).or_insert(v);
            }
        }
    }
}

/// Compares without an early exit, so timing does not reveal the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
