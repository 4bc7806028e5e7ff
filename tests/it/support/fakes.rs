//! Fakes of the binding traits, so that the HTTP and gRPC APIs can be tested in
//! this process without a broker: a [`FakeOutput`] answers as the test scripts
//! it and records every call; [`api_state`] builds the state both API servers
//! share around fakes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use outrigger::api::{ApiState, AppInfo, Readiness};
use outrigger::bindings::{BindingError, BoxFuture, InvokeRequest, InvokeResponse, OutputBinding};
use outrigger::metrics::Metrics;

/// How a [`FakeOutput`] answers one call.
pub enum Reply {
    /// Success with this response (empty: the HTTP API answers 204).
    Ok(InvokeResponse),
    Fail(BindingError),
    /// Never resolves (until the caller gives up).
    Hang,
}

type Script = Box<dyn Fn(&InvokeRequest) -> Reply + Send + Sync>;

/// An output binding that answers as scripted and records what it was asked.
pub struct FakeOutput {
    operations: &'static [&'static str],
    script: Script,
    calls: Mutex<Vec<InvokeRequest>>,
    in_flight: AtomicUsize,
    closed: Mutex<Option<Duration>>,
}

impl FakeOutput {
    /// Accepts `create` and answers success with an empty response.
    pub fn ok() -> Arc<FakeOutput> {
        Self::scripted(|_| Reply::Ok(InvokeResponse::default()))
    }

    /// Accepts `create`; `script` decides each answer.
    pub fn scripted(script: impl Fn(&InvokeRequest) -> Reply + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(FakeOutput {
            operations: &["create"],
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            closed: Mutex::new(None),
        })
    }

    /// Every call that reached the binding, in order.
    pub fn calls(&self) -> Vec<InvokeRequest> {
        self.calls.lock().unwrap().clone()
    }

    /// Calls that have not been answered yet (a [`Reply::Hang`] stays here
    /// until its caller drops it).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The timeout `close` was called with, if it was.
    pub fn closed(&self) -> Option<Duration> {
        *self.closed.lock().unwrap()
    }
}

/// Counts a call in flight until dropped (also when the caller drops the future).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl OutputBinding for FakeOutput {
    fn operations(&self) -> &'static [&'static str] {
        self.operations
    }

    fn invoke(
        &self,
        request: InvokeRequest,
    ) -> BoxFuture<'_, Result<InvokeResponse, BindingError>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&self.in_flight);
        let reply = (self.script)(&request);
        self.calls.lock().unwrap().push(request);
        Box::pin(async move {
            let _guard = guard;
            match reply {
                Reply::Ok(response) => Ok(response),
                Reply::Fail(e) => Err(e),
                Reply::Hang => std::future::pending().await,
            }
        })
    }

    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        *self.closed.lock().unwrap() = Some(timeout);
        Box::pin(async {})
    }
}

/// Settings of an [`api_state`] beyond its bindings.
pub struct StateOptions {
    pub app_id: String,
    pub token: Option<String>,
    pub max_in_flight: usize,
    pub max_request_bytes: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            app_id: "fake-app".into(),
            token: None,
            max_in_flight: outrigger::api::DEFAULT_MAX_IN_FLIGHT,
            max_request_bytes: 4 << 20,
        }
    }
}

/// The state both API servers share, over the given output bindings (named),
/// ready (components loaded, no app), with tracing off.
pub fn api_state(
    outputs: &[(&str, Arc<FakeOutput>)],
    tweak: impl FnOnce(&mut StateOptions),
) -> Arc<ApiState> {
    let mut options = StateOptions::default();
    tweak(&mut options);
    let names: Vec<(String, String)> = outputs
        .iter()
        .map(|(n, _)| (n.to_string(), "bindings.fake".to_string()))
        .collect();
    let map: HashMap<String, Arc<dyn OutputBinding>> = outputs
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone() as Arc<dyn OutputBinding>))
        .collect();
    let readiness = Arc::new(Readiness::default());
    readiness.outbound.store(true, Ordering::Release);
    readiness.app.store(true, Ordering::Release);
    Arc::new(ApiState {
        metrics: Arc::new(Metrics::new(&options.app_id, &names, &[])),
        app_id: options.app_id,
        outputs: Arc::new(map),
        components: Vec::new(),
        inputs: Vec::new(),
        app: AppInfo {
            port: None,
            protocol: "http",
            address: "127.0.0.1".into(),
            max_concurrency: 0,
        },
        token: options.token,
        readiness,
        shutdown: CancellationToken::new(),
        max_request_bytes: options.max_request_bytes,
        extended: Mutex::new(BTreeMap::new()),
        tracer: None,
        in_flight: ApiState::in_flight_limit(options.max_in_flight),
        max_in_flight: options.max_in_flight,
    })
}

/// A successful response carrying `data` and `metadata`.
pub fn fake_response(data: &str, metadata: &[(&str, &str)]) -> InvokeResponse {
    InvokeResponse {
        data: Bytes::copy_from_slice(data.as_bytes()),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
