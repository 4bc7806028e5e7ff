//! Load generators: direct rdkafka producer/consumer, gRPC and HTTP clients of the sidecar.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outrigger::proto::runtime::v1::InvokeBindingRequest;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::Mutex;

use crate::RunningSidecar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Direct,
    Grpc,
    Http,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Direct => "direct rdkafka",
            Transport::Grpc => "outrigger gRPC",
            Transport::Http => "outrigger HTTP",
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

fn producer(brokers: &str) -> FutureProducer {
    // The sidecar's own producer settings, so that the baseline is like for like.
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

enum Client_ {
    Direct(FutureProducer, String),
    Grpc(DaprClient<tonic::transport::Channel>),
    Http(
        Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        String,
    ),
}

async fn client(t: Transport, brokers: &str, topic: &str, sidecar: &RunningSidecar) -> Client_ {
    match t {
        Transport::Direct => Client_::Direct(producer(brokers), topic.to_string()),
        Transport::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(format!(
                "http://127.0.0.1:{}",
                sidecar.grpc
            ))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect gRPC");
            Client_::Grpc(DaprClient::new(channel).max_encoding_message_size(usize::MAX))
        }
        Transport::Http => {
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build_http();
            Client_::Http(
                client,
                format!("http://127.0.0.1:{}/v1.0/bindings/bench", sidecar.http),
            )
        }
    }
}

/// The request body for `payload` bytes on the topic.
fn bodies(t: Transport, payload: usize) -> Bytes {
    match t {
        // The JSON string's quotes are part of the produced message.
        Transport::Http => Bytes::from(format!(
            "{{\"data\":\"{}\",\"operation\":\"create\"}}",
            "x".repeat(payload.saturating_sub(2))
        )),
        _ => Bytes::from(vec![b'x'; payload]),
    }
}

async fn one(c: &Client_, body: &Bytes) {
    match c {
        Client_::Direct(p, topic) => {
            p.send(
                FutureRecord::<(), _>::to(topic).payload(&body[..]),
                Duration::from_secs(10),
            )
            .await
            .expect("direct produce");
        }
        Client_::Grpc(client) => {
            let req = InvokeBindingRequest {
                name: "bench".into(),
                data: body.clone(),
                metadata: Default::default(),
                operation: "create".into(),
            };
            client
                .clone()
                .invoke_binding(req)
                .await
                .expect("InvokeBinding");
        }
        Client_::Http(client, url) => {
            let req = http::Request::post(url.as_str())
                .body(Full::new(body.clone()))
                .unwrap();
            let resp = client.request(req).await.expect("POST");
            assert!(
                resp.status().is_success(),
                "POST answered {}",
                resp.status()
            );
            let _ = resp.into_body().collect().await;
        }
    }
}

/// HTTP/2 connections the gRPC callers share.
const GRPC_CONNECTIONS: usize = 4;

/// `concurrency` callers, each sending one request after the other, for `duration`.
pub async fn run(
    t: Transport,
    brokers: &str,
    topic: &str,
    sidecar: &RunningSidecar,
    payload: usize,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    // gRPC callers share a few HTTP/2 connections, as apps with several
    // channels (or processes) would; HTTP callers get pooled connections.
    let connections = if t == Transport::Grpc {
        concurrency.clamp(1, GRPC_CONNECTIONS)
    } else {
        1
    };
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Arc::new(client(t, brokers, topic, sidecar).await));
    }
    let body = bodies(t, payload);
    // Warm the path (connections, metadata) before timing.
    for c in &clients {
        for _ in 0..10 {
            one(c, &body).await;
        }
    }
    let all = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (c, body, all) = (clients[i % connections].clone(), body.clone(), all.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                one(&c, &body).await;
                mine.push(t0.elapsed());
            }
            all.lock().await.extend(mine);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *all.lock().await);
    latencies.sort();
    Stats {
        count: latencies.len() as u64,
        elapsed,
        latencies,
    }
}

pub async fn warm_up(sidecar: &RunningSidecar, _binding: &str) {
    let c = client(Transport::Grpc, "", "", sidecar).await;
    let body = Bytes::from_static(b"warm-up");
    for _ in 0..20 {
        one(&c, &body).await;
    }
}

/// Writes `n` records of `size` bytes, many in flight at once.
pub async fn prefill(brokers: &str, topic: &str, n: usize, size: usize) {
    let p = producer(brokers);
    let body = vec![b'x'; size];
    let mut pending = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    for i in 0..n {
        let key = (i % 64).to_string();
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
