//! Optional export of the sidecar's own spans over OTLP/HTTP with the JSON
//! encoding (`--otlp-endpoint`). Off by default: then no [`Tracer`] exists and
//! the message paths only test an `Option`.
//!
//! Spans are made on the message paths (a PRODUCER span per output call, a
//! CONSUMER span per delivery attempt to the app) and handed to one background
//! task through a bounded channel: a full channel drops the span rather than
//! slow a message down. The task batches (up to [`BATCH`] spans, or every
//! [`INTERVAL`]) and POSTs `{endpoint}/v1/traces` with a timeout; a failed POST
//! drops its batch and is logged at most once per [`WARN_EVERY`]. On shutdown
//! the task sends what it still holds, within the time it is given.
//!
//! Trace context follows W3C `traceparent`: a parent whose sampled flag is off
//! gets no span and its header is passed on unchanged.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Spans waiting for the exporter; beyond this they are dropped.
pub const QUEUE: usize = 8192;
/// Most spans in one POST.
pub const BATCH: usize = 512;
/// Longest a span waits in a partial batch.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Bound on one POST (connect, send, answer).
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector that stays down is reported this often, not once per batch.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

pub const TRACEPARENT: &str = "traceparent";
/// Largest collector answer read (it is discarded; reading it frees the connection).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Why the exporter cannot start: the endpoint is not usable.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("--otlp-endpoint {url:?} is not a usable URL: {why}")]
    BadUrl { url: String, why: String },
    #[error(
        "--otlp-endpoint {0:?}: only http:// is supported (OTLP/HTTP without TLS, e.g. http://localhost:4318)"
    )]
    Scheme(String),
}

/// The identity of a span, as a W3C `traceparent` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl SpanContext {
    /// Parses a `traceparent`: version 00 exactly, or the first four fields of a
    /// later version (as W3C asks). Upper-case hex is accepted, all-zero ids are not.
    pub fn parse(header: &str) -> Option<SpanContext> {
        let b = header.trim().as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(b[0], b[1])?;
        let valid_length = match version {
            0xff => false,
            0 => b.len() == 55,
            _ => b.len() == 55 || b[55] == b'-',
        };
        if !valid_length {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(&b[3..35])?;
        let span_id: [u8; 8] = decode_hex(&b[36..52])?;
        let flags = hex_byte(b[53], b[54])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The `traceparent` naming this span as the parent (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some((hex_digit(hi)? << 4) | hex_digit(lo)?)
}

fn decode_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair[0], pair[1])?;
    }
    Some(out)
}

/// Lower-case hex, as both `traceparent` and OTLP JSON spell ids.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// A random, non-zero 64-bit value. SipHash keyed once per process from the OS
/// (through `RandomState`) over a counter: unpredictable and unique enough for
/// span ids, without a random-number crate.
fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(RandomState::new);
    loop {
        let mut h = keys.build_hasher();
        h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

/// A new `traceparent` that is not sampled (flags 00), for a write or a
/// delivery that arrived without one: daprd always passes one on.
pub fn unsampled_traceparent() -> String {
    format!("00-{}-{}-00", hex(&new_trace_id()), hex(&new_span_id()))
}

fn new_span_id() -> [u8; 8] {
    random_u64().to_be_bytes()
}

fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    id
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// OTLP's `Span.SpanKind` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum SpanKind {
    Server = 2,
    Producer = 4,
    Consumer = 5,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// A finished span, as it is exported.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: SpanContext,
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// `None` when the operation succeeded (status OK), else its error (status ERROR).
    pub error: Option<String>,
}

/// A span being timed; [`Tracer::finish`] ends and queues it.
#[derive(Debug)]
pub struct ActiveSpan {
    span: Span,
    started: Instant,
}

impl ActiveSpan {
    pub fn context(&self) -> SpanContext {
        self.span.context
    }

    /// The `traceparent` that makes this span the parent of what follows.
    pub fn traceparent(&self) -> String {
        self.span.context.traceparent()
    }

    pub fn set_str(&mut self, key: &'static str, value: impl Into<String>) {
        self.span.attributes.push((key, Value::Str(value.into())));
    }

    pub fn set_int(&mut self, key: &'static str, value: i64) {
        self.span.attributes.push((key, Value::Int(value)));
    }
}

#[derive(Debug, Default)]
struct Stats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Counts of spans since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped before export: the queue was full (or the exporter had stopped).
    pub dropped: u64,
    /// Lost in a failed POST.
    pub failed: u64,
}

/// Makes spans and queues finished ones for the exporter. Cheap to share.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<Span>,
    stats: Arc<Stats>,
}

impl Tracer {
    /// Starts a span under `parent` (a `traceparent` value), or in a new trace
    /// when there is none or it is malformed. `None` when the parent is not
    /// sampled: nothing is exported and the caller passes its header on unchanged.
    pub fn start(&self, name: String, kind: SpanKind, parent: Option<&str>) -> Option<ActiveSpan> {
        let parent = parent.and_then(SpanContext::parse);
        let (trace_id, parent_span_id, flags) = match parent {
            Some(p) if !p.sampled() => return None,
            Some(p) => (p.trace_id, Some(p.span_id), p.flags),
            None => (new_trace_id(), None, 0x01),
        };
        Some(ActiveSpan {
            span: Span {
                context: SpanContext {
                    trace_id,
                    span_id: new_span_id(),
                    flags,
                },
                parent_span_id,
                name,
                kind,
                start_unix_nanos: unix_nanos(SystemTime::now()),
                end_unix_nanos: 0,
                attributes: Vec::with_capacity(5),
                error: None,
            },
            started: Instant::now(),
        })
    }

    /// The PRODUCER span of one output call. The parent is the request's
    /// `traceparent`, which is then rewritten to name the new span, so that
    /// whoever reads the record links to it (`tracestate` is left as it is).
    pub fn start_output(
        &self,
        binding: &str,
        system: Option<&'static str>,
        destination: Option<&str>,
        metadata: &mut HashMap<String, String>,
    ) -> Option<ActiveSpan> {
        let parent = metadata.get(TRACEPARENT).map(String::as_str);
        let mut span = self.start(format!("bindings/{binding}"), SpanKind::Producer, parent)?;
        metadata.insert(TRACEPARENT.to_string(), span.traceparent());
        if let Some(system) = system {
            span.set_str("messaging.system", system);
        }
        if let Some(d) = destination {
            span.set_str("messaging.destination.name", d);
        }
        span.set_str("dapr.binding.name", binding);
        Some(span)
    }

    /// The CONSUMER span of one delivery attempt of an input event; the parent
    /// is the event's `traceparent`. The caller sends the app this span's
    /// [`ActiveSpan::traceparent`].
    pub fn start_input(
        &self,
        binding: &str,
        origin: Option<&crate::bindings::EventOrigin>,
        metadata: &HashMap<String, String>,
    ) -> Option<ActiveSpan> {
        let parent = metadata.get(TRACEPARENT).map(String::as_str);
        let mut span = self.start(format!("bindings/{binding}"), SpanKind::Consumer, parent)?;
        if let Some(o) = origin {
            span.set_str("messaging.system", o.system);
            span.set_str("messaging.destination.name", &*o.destination);
            span.set_int(o.attributes.partition, o.partition.into());
            span.set_int(o.attributes.offset, o.offset);
        }
        span.set_str("dapr.binding.name", binding);
        Some(span)
    }

    /// Ends the span (status ERROR with `error`, else OK) and queues it; never
    /// waits: a full queue drops it.
    pub fn finish(&self, active: ActiveSpan, error: Option<String>) {
        let ActiveSpan { mut span, started } = active;
        // Monotonic duration: the end is never before the start.
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        span.end_unix_nanos = span.start_unix_nanos.saturating_add(took);
        span.error = error;
        if self.tx.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.stats.exported.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }
}

// The OTLP/JSON shapes (ExportTraceServiceRequest), with the protobuf JSON
// mapping's rules: camelCase names, hex ids, 64-bit integers as strings.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: [KeyValue<'a>; 1],
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<JsonSpan<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    name: &'a str,
    kind: i32,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    status: Status<'a>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    #[serde(rename = "intValue")]
    Int(String),
}

#[derive(Serialize)]
struct Status<'a> {
    code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// The body of one export: every span under one resource (`service.name`).
pub fn encode(service_name: &str, spans: &[Span]) -> serde_json::Result<Vec<u8>> {
    let spans = spans
        .iter()
        .map(|s| JsonSpan {
            trace_id: hex(&s.context.trace_id),
            span_id: hex(&s.context.span_id),
            parent_span_id: s.parent_span_id.map(|p| hex(&p)),
            name: &s.name,
            kind: s.kind as i32,
            start_time_unix_nano: s.start_unix_nanos.to_string(),
            end_time_unix_nano: s.end_unix_nanos.to_string(),
            attributes: s
                .attributes
                .iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: match value {
                        Value::Str(v) => AnyValue::Str(v),
                        Value::Int(v) => AnyValue::Int(v.to_string()),
                    },
                })
                .collect(),
            status: match &s.error {
                None => Status {
                    code: STATUS_OK,
                    message: None,
                },
                Some(e) => Status {
                    code: STATUS_ERROR,
                    message: Some(e),
                },
            },
        })
        .collect();
    serde_json::to_vec(&ExportRequest {
        resource_spans: [ResourceSpans {
            resource: Resource {
                attributes: [KeyValue {
                    key: "service.name",
                    value: AnyValue::Str(service_name),
                }],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "outrigger",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans,
            }],
        }],
    })
}

/// `{endpoint}/v1/traces`, as OTLP/HTTP builds a signal's URL from the base
/// endpoint (a URL that already ends in `/v1/traces` is taken as it is).
pub fn traces_uri(endpoint: &str) -> Result<Uri, OtlpError> {
    let bad = |why: &str| OtlpError::BadUrl {
        url: endpoint.to_string(),
        why: why.to_string(),
    };
    let base = endpoint.trim().trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(OtlpError::Scheme(endpoint.to_string())),
        None => return Err(bad("no scheme (e.g. http://localhost:4318)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    // hyper would not send them, and the URL is logged: refuse, without echoing them.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(OtlpError::BadUrl {
            url: format!("http://<credentials>@{}", uri.host().unwrap_or_default()),
            why: "credentials in the URL are not supported".into(),
        });
    }
    if base.contains('?') {
        return Err(bad("a query string is not supported"));
    }
    Ok(uri)
}

/// The running export task; [`Exporter::shutdown`] flushes and stops it.
/// Dropping it also stops the task, after a short flush.
pub struct Exporter {
    stop: oneshot::Sender<tokio::time::Instant>,
    task: JoinHandle<()>,
}

/// Starts the export task; spans recorded through the returned [`Tracer`] go
/// to `{endpoint}/v1/traces` under `service.name` = `service_name`.
pub fn start(endpoint: &str, service_name: &str) -> Result<(Arc<Tracer>, Exporter), OtlpError> {
    start_with_queue(endpoint, service_name, QUEUE)
}

fn start_with_queue(
    endpoint: &str,
    service_name: &str,
    queue: usize,
) -> Result<(Arc<Tracer>, Exporter), OtlpError> {
    let uri = traces_uri(endpoint)?;
    let (tx, rx) = mpsc::channel(queue);
    let stats = Arc::new(Stats::default());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(POST_TIMEOUT));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let (stop_tx, stop_rx) = oneshot::channel();
    let worker = Worker {
        rx,
        uri,
        client,
        service_name: service_name.to_string(),
        stats: stats.clone(),
        last_warn: None,
        failing: false,
        dropped_seen: 0,
    };
    let span = tracing::info_span!("otlp_exporter");
    let task = tokio::spawn(tracing::Instrument::instrument(worker.run(stop_rx), span));
    Ok((
        Arc::new(Tracer { tx, stats }),
        Exporter {
            stop: stop_tx,
            task,
        },
    ))
}

impl Exporter {
    /// Sends what is still queued, within `within`, then stops.
    pub async fn shutdown(self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let _ = self.stop.send(deadline);
        let mut task = self.task;
        // The task bounds its POSTs by the deadline itself; this only guards
        // against one that does not end.
        if tokio::time::timeout_at(deadline + Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
            tracing::warn!("OTLP export did not finish within {within:?}; unsent spans dropped");
        }
    }
}

struct Worker {
    rx: mpsc::Receiver<Span>,
    uri: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    service_name: String,
    stats: Arc<Stats>,
    last_warn: Option<Instant>,
    failing: bool,
    dropped_seen: u64,
}

impl Worker {
    async fn run(mut self, mut stop: oneshot::Receiver<tokio::time::Instant>) {
        let mut batch: Vec<Span> = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // `batch` never holds BATCH spans here (it is sent when full), so the
            // room is at least 1 and a receive of 0 means every tracer is gone.
            let room = BATCH - batch.len();
            tokio::select! {
                deadline = &mut stop => {
                    // Dropped without a shutdown call: still flush, briefly.
                    let deadline = deadline.unwrap_or_else(|_| tokio::time::Instant::now() + INTERVAL);
                    self.rx.close();
                    while let Ok(span) = self.rx.try_recv() {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            self.post(&mut batch, deadline).await;
                        }
                    }
                    self.post(&mut batch, deadline).await;
                    return;
                }
                n = self.rx.recv_many(&mut batch, room) => {
                    if n == 0 {
                        self.post(&mut batch, tokio::time::Instant::now() + POST_TIMEOUT).await;
                        return;
                    }
                    if batch.len() >= BATCH {
                        self.post(&mut batch, tokio::time::Instant::now() + POST_TIMEOUT).await;
                    }
                }
                _ = tick.tick() => {
                    self.post(&mut batch, tokio::time::Instant::now() + POST_TIMEOUT).await;
                    let dropped = self.stats.dropped.load(Ordering::Relaxed);
                    if dropped > self.dropped_seen {
                        tracing::debug!(dropped = dropped - self.dropped_seen, "spans dropped: the OTLP export queue was full");
                        self.dropped_seen = dropped;
                    }
                }
            }
        }
    }

    /// POSTs and empties `batch`; a failure drops the spans.
    async fn post(&mut self, batch: &mut Vec<Span>, deadline: tokio::time::Instant) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let body = encode(&self.service_name, batch);
        batch.clear();
        let sent = match body {
            Ok(body) => self.send(body, deadline).await,
            Err(e) => Err(format!("cannot encode the spans: {e}")),
        };
        match sent {
            Ok(()) => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!(endpoint = %self.uri, "OTLP export works again");
                }
            }
            Err(why) => {
                self.stats.failed.fetch_add(n, Ordering::Relaxed);
                self.failing = true;
                let due = self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY);
                if due {
                    self.last_warn = Some(Instant::now());
                    tracing::warn!(endpoint = %self.uri, "OTLP export failed, {n} span(s) dropped: {why} (reported at most every {WARN_EVERY:?})");
                } else {
                    tracing::debug!(endpoint = %self.uri, "OTLP export failed, {n} span(s) dropped: {why}");
                }
            }
        }
    }

    async fn send(&self, body: Vec<u8>, deadline: tokio::time::Instant) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| crate::app_channel::http::error_chain(&e))?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok::<(), String>(())
            } else {
                let snippet = String::from_utf8_lossy(&answer[..answer.len().min(200)]);
                Err(format!("HTTP {status} {snippet}").trim_end().to_string())
            }
        };
        let deadline = deadline.min(tokio::time::Instant::now() + POST_TIMEOUT);
        tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| "the collector did not answer in time".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_parsing() {
        let c = SpanContext::parse(PARENT).expect("valid");
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&c.span_id), "00f067aa0ba902b7");
        assert!(c.sampled());
        assert_eq!(c.traceparent(), PARENT);
        let unsampled = SpanContext::parse(&PARENT.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        // A later version may add fields; version ff and all-zero ids are invalid.
        assert!(SpanContext::parse(&format!("01{}-extra", &PARENT[2..])).is_some());
        assert!(SpanContext::parse(&format!("00{}-extra", &PARENT[2..])).is_none());
        assert!(SpanContext::parse(&format!("ff{}", &PARENT[2..])).is_none());
        assert!(
            SpanContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none()
        );
        assert!(SpanContext::parse("00-4bf92f35-00f067aa0ba902b7-01").is_none());
        assert!(SpanContext::parse("").is_none());
        assert!(SpanContext::parse(&PARENT.replace('b', "x")).is_none());
    }

    #[test]
    fn ids_are_random_and_nonzero() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        assert_ne!(new_span_id(), new_span_id());
    }

    fn tracer(queue: usize) -> (Tracer, mpsc::Receiver<Span>) {
        let (tx, rx) = mpsc::channel(queue);
        (
            Tracer {
                tx,
                stats: Arc::default(),
            },
            rx,
        )
    }

    #[test]
    fn output_span_rewrites_the_parent_and_honours_sampling() {
        let (t, mut rx) = tracer(4);
        let mut md = HashMap::from([
            ("traceparent".to_string(), PARENT.to_string()),
            ("tracestate".to_string(), "congo=t61".to_string()),
        ]);
        let span = t
            .start_output("out", Some("kafka"), Some("orders"), &mut md)
            .expect("sampled parent");
        let ctx = span.context();
        assert_eq!(hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            md["traceparent"],
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                hex(&ctx.span_id)
            )
        );
        assert_eq!(md["tracestate"], "congo=t61");
        t.finish(span, Some("boom".into()));
        let s = rx.try_recv().unwrap();
        assert_eq!(
            s.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert!(s.end_unix_nanos >= s.start_unix_nanos);

        let unsampled = PARENT.replace("-01", "-00");
        let mut md = HashMap::from([("traceparent".to_string(), unsampled.clone())]);
        assert!(t.start_output("out", None, None, &mut md).is_none());
        assert_eq!(md["traceparent"], unsampled, "passed on unchanged");

        // No parent: a new trace, and the record gets a traceparent.
        let mut md = HashMap::new();
        let span = t.start_output("out", None, None, &mut md).unwrap();
        assert_eq!(span.context().flags, 1);
        assert_eq!(md["traceparent"], span.traceparent());
    }

    #[test]
    fn full_queue_drops_spans_without_waiting() {
        let (t, _rx) = tracer(1);
        for _ in 0..3 {
            let span = t.start("x".into(), SpanKind::Server, None).unwrap();
            t.finish(span, None);
        }
        assert_eq!(t.stats().dropped, 2);
    }

    #[test]
    fn json_encoding() {
        let span = Span {
            context: SpanContext::parse(PARENT).unwrap(),
            parent_span_id: Some([0xab; 8]),
            name: "bindings/out".into(),
            kind: SpanKind::Producer,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_000_000_500,
            attributes: vec![
                ("messaging.system", Value::Str("kafka".into())),
                ("messaging.kafka.offset", Value::Int(42)),
            ],
            error: None,
        };
        let mut failed = span.clone();
        failed.parent_span_id = None;
        failed.kind = SpanKind::Consumer;
        failed.error = Some("the app answered 500".into());
        let body = encode("myapp", &[span, failed]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            serde_json::json!({"key": "service.name", "value": {"stringValue": "myapp"}})
        );
        let ss = &rs["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "outrigger");
        assert_eq!(
            ss["spans"][0],
            serde_json::json!({
                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spanId": "00f067aa0ba902b7",
                "parentSpanId": "abababababababab",
                "name": "bindings/out",
                "kind": 4,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000000000500",
                "attributes": [
                    {"key": "messaging.system", "value": {"stringValue": "kafka"}},
                    {"key": "messaging.kafka.offset", "value": {"intValue": "42"}},
                ],
                "status": {"code": 1},
            })
        );
        let f = &ss["spans"][1];
        assert!(f.get("parentSpanId").is_none());
        assert_eq!(f["kind"], 5);
        assert_eq!(
            f["status"],
            serde_json::json!({"code": 2, "message": "the app answered 500"})
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            traces_uri("http://localhost:4318").unwrap().to_string(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_uri("http://collector:4318/").unwrap().to_string(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_uri("http://c:4318/v1/traces").unwrap().to_string(),
            "http://c:4318/v1/traces"
        );
        assert!(matches!(
            traces_uri("https://c:4318"),
            Err(OtlpError::Scheme(_))
        ));
        assert!(traces_uri("localhost:4318").is_err());
        assert!(traces_uri("not a url").is_err());
        let e = traces_uri("http://user:s3cret@collector:4318").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(traces_uri("http://collector:4318?x=1").is_err());
    }

    #[tokio::test]
    async fn dead_collector_drops_spans_and_never_blocks() {
        // A collector that hangs up on every connection. (A port merely freed
        // could be taken meanwhile by a server that never answers.)
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let (tracer, exporter) = start(&format!("http://127.0.0.1:{port}"), "app").unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            let span = tracer
                .start("bindings/x".into(), SpanKind::Producer, None)
                .unwrap();
            tracer.finish(span, None);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "recording never waits"
        );
        exporter.shutdown(Duration::from_secs(3)).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "shutdown is bounded"
        );
        let stats = tracer.stats();
        assert_eq!(stats.exported, 0);
        assert_eq!(stats.failed + stats.dropped, 10, "{stats:?}");
        // After the exporter stopped, spans are dropped, not queued forever.
        let span = tracer
            .start("late".into(), SpanKind::Producer, None)
            .unwrap();
        tracer.finish(span, None);
        assert_eq!(tracer.stats().dropped, stats.dropped + 1);
    }
}
