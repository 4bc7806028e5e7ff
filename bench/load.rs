//! Load generators: a direct rdkafka producer/consumer, and cheap clients of a
//! sidecar's gRPC and HTTP APIs. The clients cost the generator as little CPU
//! as they can, since on a small machine it competes with the sidecar for the
//! same cores: requests are encoded once per run (a prebuilt gRPC frame or
//! JSON body, shared by reference), gRPC callers share a few raw HTTP/2
//! connections (hyper, no tonic channel or codec), and each HTTP caller owns
//! one keep-alive HTTP/1.1 connection (no pool to lock).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HOST, HeaderValue, TE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use outrigger::proto::runtime::v1::InvokeBindingRequest;
use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::sidecar::RunningSidecar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Direct,
    Grpc,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Direct => "direct",
            Transport::Grpc => "gRPC",
            Transport::Http => "HTTP",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub count: u64,
    pub elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn p(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i]
    }
}

/// A producer with the sidecar's settings (acks=all), lingering `linger_ms`.
fn producer(brokers: &str, linger_ms: u64) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

type Body = Full<Bytes>;

/// One prebuilt request, cloned by reference count per call.
#[derive(Clone)]
struct Prebuilt {
    uri: Uri,
    content_type: HeaderValue,
    host: HeaderValue,
    body: Bytes,
}

enum Conn {
    Direct(FutureProducer, Arc<str>),
    Grpc(hyper::client::conn::http2::SendRequest<Body>),
    Http(hyper::client::conn::http1::SendRequest<Body>),
}

async fn tcp(port: u16) -> TokioIo<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the sidecar");
    s.set_nodelay(true).unwrap();
    TokioIo::new(s)
}

async fn grpc_conn(port: u16) -> Conn {
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        // Large receive windows: no WINDOW_UPDATE round trips on the answers.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(tcp(port).await)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    Conn::Grpc(send)
}

async fn http_conn(port: u16) -> Conn {
    let (send, conn) = hyper::client::conn::http1::handshake(tcp(port).await)
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    Conn::Http(send)
}

/// The gRPC message of an `InvokeBinding` call with `payload` bytes, framed
/// (1 byte compression flag, 4 bytes length), as sent on the wire.
pub fn grpc_frame(binding: &str, payload: usize) -> Bytes {
    let req = InvokeBindingRequest {
        name: binding.into(),
        data: Bytes::from(vec![b'x'; payload]),
        metadata: Default::default(),
        operation: "create".into(),
    };
    let msg = req.encode_to_vec();
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(&msg);
    b.freeze()
}

/// The JSON body of `POST /v1.0/bindings/{name}` producing a `payload`-byte
/// message (the JSON string's quotes are part of the produced message).
fn http_body(payload: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"data\":\"{}\",\"operation\":\"create\"}}",
        "x".repeat(payload.saturating_sub(2))
    ))
}

fn prebuilt(t: Transport, sidecar: Option<&RunningSidecar>, payload: usize) -> Prebuilt {
    let (uri, content_type, body) = match (t, sidecar) {
        (Transport::Grpc, Some(s)) => (
            format!(
                "http://127.0.0.1:{}/dapr.proto.runtime.v1.Dapr/InvokeBinding",
                s.grpc
            ),
            "application/grpc",
            grpc_frame("bench", payload),
        ),
        (Transport::Http, Some(s)) => (
            format!("http://127.0.0.1:{}/v1.0/bindings/bench", s.http),
            "application/json",
            http_body(payload),
        ),
        _ => (
            "http://127.0.0.1/".into(),
            "",
            Bytes::from(vec![b'x'; payload]),
        ),
    };
    let uri: Uri = uri.parse().unwrap();
    // HTTP/1.1 sends the origin form (path only) with a Host header.
    let uri = if t == Transport::Http {
        uri.path().parse().unwrap()
    } else {
        uri
    };
    Prebuilt {
        uri,
        content_type: HeaderValue::from_static(content_type),
        host: HeaderValue::from_static("127.0.0.1"),
        body,
    }
}

async fn one(c: &mut Conn, p: &Prebuilt) {
    match c {
        Conn::Direct(prod, topic) => {
            prod.send(
                FutureRecord::<(), _>::to(topic).payload(&p.body[..]),
                Duration::from_secs(10),
            )
            .await
            .expect("direct produce");
        }
        Conn::Grpc(send) => {
            let mut req = Request::new(Full::new(p.body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = p.uri.clone();
            let h = req.headers_mut();
            h.insert(CONTENT_TYPE, p.content_type.clone());
            h.insert(TE, HeaderValue::from_static("trailers"));
            send.ready().await.expect("HTTP/2 connection");
            let resp = send.send_request(req).await.expect("gRPC request");
            assert_eq!(
                resp.status(),
                200,
                "InvokeBinding answered {}",
                resp.status()
            );
            let early = grpc_status(resp.headers());
            let collected = resp.into_body().collect().await.expect("gRPC answer");
            let status = collected
                .trailers()
                .and_then(grpc_status)
                .or(early)
                .unwrap_or_default();
            assert_eq!(
                status, "0",
                "InvokeBinding failed with grpc-status {status}"
            );
        }
        Conn::Http(send) => {
            let mut req = Request::new(Full::new(p.body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = p.uri.clone();
            let h = req.headers_mut();
            h.insert(HOST, p.host.clone());
            h.insert(CONTENT_TYPE, p.content_type.clone());
            send.ready().await.expect("HTTP/1.1 connection");
            let resp = send.send_request(req).await.expect("POST");
            assert!(
                resp.status().is_success(),
                "POST answered {}",
                resp.status()
            );
            resp.into_body().collect().await.expect("POST answer");
        }
    }
}

fn grpc_status(h: &http::HeaderMap) -> Option<String> {
    h.get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// gRPC callers per HTTP/2 connection: apps multiplex calls on a channel.
const CALLERS_PER_GRPC_CONNECTION: usize = 16;

/// `concurrency` callers, each sending one request after the other, for `duration`.
/// `sidecar` is None for the direct producer, which lingers `linger_ms`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    t: Transport,
    brokers: &str,
    topic: &str,
    sidecar: Option<&RunningSidecar>,
    payload: usize,
    concurrency: usize,
    duration: Duration,
    linger_ms: u64,
) -> Stats {
    let p = Arc::new(prebuilt(t, sidecar, payload));
    let mut conns = Vec::with_capacity(concurrency);
    match t {
        Transport::Direct => {
            let prod = producer(brokers, linger_ms);
            let topic: Arc<str> = topic.into();
            for _ in 0..concurrency {
                conns.push(Conn::Direct(prod.clone(), topic.clone()));
            }
        }
        Transport::Grpc => {
            let port = sidecar.unwrap().grpc;
            let mut shared = Vec::new();
            for _ in 0..concurrency.div_ceil(CALLERS_PER_GRPC_CONNECTION) {
                if let Conn::Grpc(s) = grpc_conn(port).await {
                    shared.push(s);
                }
            }
            for i in 0..concurrency {
                conns.push(Conn::Grpc(shared[i % shared.len()].clone()));
            }
        }
        Transport::Http => {
            for _ in 0..concurrency {
                conns.push(http_conn(sidecar.unwrap().http).await);
            }
        }
    }
    // Warm every connection (and the producer's metadata) before timing.
    for c in conns.iter_mut() {
        for _ in 0..3 {
            one(c, &p).await;
        }
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for mut c in conns {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(1 << 14);
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                one(&mut c, &p).await;
                mine.push(t0.elapsed());
            }
            mine
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Stats {
        count: latencies.len() as u64,
        elapsed,
        latencies,
    }
}

/// A few calls through a fresh sidecar, so that its producer is connected.
pub async fn warm_up(sidecar: &RunningSidecar) {
    let p = prebuilt(Transport::Grpc, Some(sidecar), 7);
    let mut c = grpc_conn(sidecar.grpc).await;
    for _ in 0..20 {
        one(&mut c, &p).await;
    }
}

/// Writes `n` records of `size` bytes, many in flight at once.
pub async fn prefill(brokers: &str, topic: &str, n: usize, size: usize) {
    prefill_keys(brokers, topic, n, size, 64).await
}

/// Writes `n` records of `size` bytes with `keys` distinct keys, round robin.
pub async fn prefill_keys(brokers: &str, topic: &str, n: usize, size: usize, keys: usize) {
    let p = producer(brokers, 5);
    let body = vec![b'x'; size];
    let mut pending = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    for i in 0..n {
        let key = (i % keys).to_string();
        pending.push(
            p.send_result(FutureRecord::to(topic).payload(&body).key(&key))
                .expect("enqueue"),
        );
        if pending.len() >= 10_000 {
            pending.next().await.unwrap().unwrap().expect("prefill");
        }
    }
    while let Some(r) = pending.next().await {
        r.unwrap().expect("prefill");
    }
}

/// Messages per second for a fresh consumer group reading `n` records.
pub async fn direct_consume(brokers: &str, topic: &str, n: usize) -> f64 {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-direct-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "15000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).unwrap();
    let mut first = None;
    let mut count = 0;
    while count < n {
        consumer.recv().await.expect("consume");
        count += 1;
        first.get_or_insert_with(Instant::now);
    }
    (n - 1) as f64 / first.unwrap().elapsed().as_secs_f64()
}
