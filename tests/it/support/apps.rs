//! Test apps that input bindings deliver to: an HTTP app (axum) and a gRPC app
//! (`AppCallback`), both on 127.0.0.1. Each records every call it gets, answers
//! as the test scripts it (fail, delay, hang) and tracks how many deliveries
//! were in flight at once.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use outrigger::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use outrigger::proto::runtime::v1::{
    BindingEventRequest, BindingEventResponse, ListInputBindingsResponse,
};

/// One request an app received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `POST`, `OPTIONS`, or the gRPC method (`OnBindingEvent`, `ListInputBindings`).
    pub method: String,
    /// HTTP: the path without its leading `/`. gRPC: the binding name in the event.
    pub path: String,
    pub body: Bytes,
    /// HTTP headers (lower-case names), or the gRPC event's metadata.
    pub headers: HashMap<String, String>,
    /// 1 for the first delivery of this event, 2 for its first retry, ...
    pub attempt: usize,
}

impl Call {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The record's offset, from daprd's event metadata `__offset`.
    pub fn offset(&self) -> Option<i64> {
        self.header("__offset")?.parse().ok()
    }
    /// The record's partition, from daprd's event metadata `__partition`.
    pub fn partition(&self) -> Option<i32> {
        self.header("__partition")?.parse().ok()
    }
    fn is_delivery(&self) -> bool {
        self.method == "POST" || self.method == "OnBindingEvent"
    }
    /// What identifies one event across retries.
    fn event_key(&self) -> String {
        match (self.header("__partition"), self.header("__offset")) {
            (Some(p), Some(o)) => format!("{}|{p}|{o}", self.path),
            _ => format!("{}|{}", self.path, self.text()),
        }
    }
}

/// What an app saw, shared between its server and the test.
#[derive(Default)]
pub struct Log {
    /// Every call, in arrival order.
    calls: Mutex<Vec<Call>>,
    /// Deliveries answered with success, in the order the answers went out.
    accepted: Mutex<Vec<Call>>,
    attempts: Mutex<HashMap<String, usize>>,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
}

impl Log {
    /// Records an arriving call; sets its attempt number when it is a delivery.
    fn arrive(&self, mut call: Call) -> Call {
        if call.is_delivery() {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(call.event_key()).or_insert(0);
            *n += 1;
            call.attempt = *n;
        }
        self.calls.lock().unwrap().push(call.clone());
        call
    }

    fn accept(&self, call: Call) {
        self.accepted.lock().unwrap().push(call);
    }

    /// Counts a delivery in flight until the guard drops.
    fn enter(&self) -> InFlight<'_> {
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inflight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Deliveries (POST / OnBindingEvent) to `path`, in arrival order.
    pub fn deliveries(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.is_delivery() && c.path == path)
            .collect()
    }

    /// Calls with this method to `path`.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path == path)
            .collect()
    }

    /// Successful deliveries, in answer order.
    pub fn accepted(&self) -> Vec<Call> {
        self.accepted.lock().unwrap().clone()
    }

    /// Successful deliveries to `path`, in answer order.
    pub fn accepted_to(&self, path: &str) -> Vec<Call> {
        self.accepted()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    /// Offsets of the successful deliveries, in answer order.
    pub fn accepted_offsets(&self) -> Vec<i64> {
        self.accepted()
            .iter()
            .map(|c| c.offset().expect("a Kafka event carries its offset"))
            .collect()
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// The most deliveries that were in flight at the same time.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight.load(Ordering::SeqCst)
    }
}

struct InFlight<'a>(&'a Log);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the HTTP app answers one POST.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// This status with this body.
    Reply(u16, String),
    /// Waits, then answers with this status.
    After(Duration, u16),
    /// Never answers (the sidecar's request timeout has to end it).
    Hang,
}

type HttpScript = Arc<dyn Fn(&Call) -> Answer + Send + Sync>;

struct HttpState {
    log: Arc<Log>,
    options: HashMap<String, u16>,
    script: HttpScript,
}

/// An HTTP app: `OPTIONS /{route}` answers 200 unless configured otherwise;
/// `POST /{route}` answers as scripted (200 by default).
pub struct HttpApp {
    pub port: u16,
    pub log: Arc<Log>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub struct HttpAppBuilder {
    options: HashMap<String, u16>,
    script: HttpScript,
}

impl HttpApp {
    pub fn builder() -> HttpAppBuilder {
        HttpAppBuilder {
            options: HashMap::new(),
            script: Arc::new(|_| Answer::Status(200)),
        }
    }

    /// An app that serves every route with 200.
    pub async fn start() -> HttpApp {
        Self::builder().start().await
    }

    /// [`Log::accepted_count`], also as a path (`HttpApp::accepted_count`).
    pub fn accepted_count(&self) -> usize {
        self.log.accepted_count()
    }

    /// Stops listening: answers what is in flight, closes every connection.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        (&mut self.task).await.unwrap();
    }
}

impl Deref for HttpApp {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.log
    }
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpAppBuilder {
    /// The status `OPTIONS /{route}` answers (default 200).
    pub fn options(mut self, route: &str, status: u16) -> Self {
        self.options
            .insert(route.trim_start_matches('/').to_string(), status);
        self
    }

    /// Decides the answer to each POST.
    pub fn script(mut self, f: impl Fn(&Call) -> Answer + Send + Sync + 'static) -> Self {
        self.script = Arc::new(f);
        self
    }

    pub async fn start(self) -> HttpApp {
        self.start_on(0).await
    }

    /// Listens on `port` (0 picks one).
    pub async fn start_on(self, port: u16) -> HttpApp {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Log::default());
        let state = Arc::new(HttpState {
            log: log.clone(),
            options: self.options,
            script: self.script,
        });
        let router = Router::new().fallback(handle_http).with_state(state);
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await;
        });
        HttpApp {
            port,
            log,
            stop,
            task,
        }
    }
}

async fn handle_http(
    State(s): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = s.log.arrive(Call {
        method: method.to_string(),
        path: uri.path().trim_start_matches('/').to_string(),
        body,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        attempt: 0,
    });
    let status = |n: u16| StatusCode::from_u16(n).unwrap();
    if method == Method::OPTIONS {
        let n = s.options.get(&call.path).copied().unwrap_or(200);
        return status(n).into_response();
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let _inflight = s.log.enter();
    let (code, body) = match (s.script)(&call) {
        Answer::Status(n) => (n, String::new()),
        Answer::Reply(n, body) => (n, body),
        Answer::After(wait, n) => {
            tokio::time::sleep(wait).await;
            (n, String::new())
        }
        Answer::Hang => std::future::pending().await,
    };
    if (200..300).contains(&code) {
        s.log.accept(call);
    }
    (status(code), body).into_response()
}

type GrpcScript = Arc<dyn Fn(&Call) -> Result<BindingEventResponse, tonic::Status> + Send + Sync>;

/// A gRPC app serving `AppCallback`: lists the configured binding names and
/// answers `OnBindingEvent` as scripted (OK with an empty response by default).
pub struct GrpcApp {
    pub port: u16,
    pub log: Arc<Log>,
    task: JoinHandle<()>,
}

type HangIf = Arc<dyn Fn(&Call) -> bool + Send + Sync>;

pub struct GrpcAppBuilder {
    listed: Vec<String>,
    script: GrpcScript,
    hang_if: HangIf,
}

struct Callback {
    log: Arc<Log>,
    listed: Vec<String>,
    script: GrpcScript,
    hang_if: HangIf,
}

#[tonic::async_trait]
impl AppCallback for Callback {
    async fn list_input_bindings(
        &self,
        _request: tonic::Request<()>,
    ) -> Result<tonic::Response<ListInputBindingsResponse>, tonic::Status> {
        self.log.arrive(Call {
            method: "ListInputBindings".into(),
            path: String::new(),
            body: Bytes::new(),
            headers: HashMap::new(),
            attempt: 0,
        });
        Ok(tonic::Response::new(ListInputBindingsResponse {
            bindings: self.listed.clone(),
        }))
    }

    async fn on_binding_event(
        &self,
        request: tonic::Request<BindingEventRequest>,
    ) -> Result<tonic::Response<BindingEventResponse>, tonic::Status> {
        // Call metadata the tests look at is kept under a `grpc:` prefix.
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let event = request.into_inner();
        let mut headers = event.metadata;
        if let Some(t) = traceparent {
            headers.insert("grpc:traceparent".into(), t);
        }
        let call = self.log.arrive(Call {
            method: "OnBindingEvent".into(),
            path: event.name,
            body: event.data,
            headers,
            attempt: 0,
        });
        let _inflight = self.log.enter();
        if (self.hang_if)(&call) {
            std::future::pending::<()>().await;
        }
        let answer = (self.script)(&call);
        if answer.is_ok() {
            self.log.accept(call);
        }
        answer.map(tonic::Response::new)
    }
}

impl GrpcApp {
    pub fn builder() -> GrpcAppBuilder {
        GrpcAppBuilder {
            listed: Vec::new(),
            script: Arc::new(|_| Ok(BindingEventResponse::default())),
            hang_if: Arc::new(|_| false),
        }
    }
}

impl Deref for GrpcApp {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.log
    }
}

impl Drop for GrpcApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcAppBuilder {
    /// Names `ListInputBindings` answers, exactly as given.
    pub fn list(mut self, names: &[&str]) -> Self {
        self.listed = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn script(
        mut self,
        f: impl Fn(&Call) -> Result<BindingEventResponse, tonic::Status> + Send + Sync + 'static,
    ) -> Self {
        self.script = Arc::new(f);
        self
    }

    /// Events for which `OnBindingEvent` never answers.
    pub fn hang_if(mut self, f: impl Fn(&Call) -> bool + Send + Sync + 'static) -> Self {
        self.hang_if = Arc::new(f);
        self
    }

    pub async fn start(self) -> GrpcApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Log::default());
        let service = AppCallbackServer::new(Callback {
            log: log.clone(),
            listed: self.listed,
            script: self.script,
            hang_if: self.hang_if,
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        GrpcApp { port, log, task }
    }
}
