//! Soak: N messages through the sidecar's output API and back through its input
//! binding into an app, under sustained load. Reports messages lost (must be 0),
//! duplicates, RSS over time and p99 output latency per slice.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

/// Delivery count per sequence number.
struct Seen {
    counts: Vec<AtomicU32>,
    total: AtomicUsize,
}

struct SoakApp(Arc<Seen>);

#[tonic::async_trait]
impl AppCallback for SoakApp {
    async fn list_input_bindings(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ListInputBindingsResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListInputBindingsResponse {
            bindings: vec!["soak".into()],
        }))
    }
    async fn on_binding_event(
        &self,
        req: tonic::Request<pb::BindingEventRequest>,
    ) -> Result<tonic::Response<pb::BindingEventResponse>, tonic::Status> {
        let data = req.into_inner().data;
        if data.len() >= 8 {
            let seq = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
            if let Some(c) = self.0.counts.get(seq) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.total.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(pb::BindingEventResponse::default()))
    }
}

pub async fn run(
    brokers: &str,
    topic: &str,
    n: usize,
    concurrency: usize,
    start_sidecar: impl FnOnce(&Path, u16) -> crate::sidecar::RunningSidecar,
) {
    let seen = Arc::new(Seen {
        counts: (0..n).map(|_| AtomicU32::new(0)).collect(),
        total: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let svc = AppCallbackServer::new(SoakApp(seen.clone()));
    let incoming = crate::nodelay_incoming(listener);
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let group = format!("soak-{}", std::process::id());
    crate::component(
        dir.path(),
        "soak",
        brokers,
        topic,
        &[
            ("topics", topic),
            ("consumerGroup", &group),
            ("initialOffset", "oldest"),
        ],
    );
    let sidecar = start_sidecar(dir.path(), port);
    let pid = sidecar.pid();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", sidecar.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let client = DaprClient::new(channel);
    let rss_start = crate::proc_stats::rss_kb(pid);

    println!(
        "\n## Soak: {n} messages out through gRPC (concurrency {concurrency}, 100 B) and back in to a gRPC app\n"
    );
    println!("| sent | delivered | RSS MB | output p99 ms (slice) | elapsed s |");
    println!("|---|---|---|---|---|");
    let started = Instant::now();
    let slices = 10;
    let next = Arc::new(AtomicUsize::new(0));
    for slice in 1..=slices {
        let end = n * slice / slices;
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, next) = (client.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= end {
                        next.fetch_sub(1, Ordering::Relaxed);
                        return latencies;
                    }
                    let mut data = vec![b'x'; 100];
                    data[..8].copy_from_slice(&(seq as u64).to_le_bytes());
                    let req = pb::InvokeBindingRequest {
                        name: "soak".into(),
                        data: Bytes::from(data),
                        metadata: Default::default(),
                        operation: "create".into(),
                    };
                    let t0 = Instant::now();
                    // A failed write is retried: the soak counts what the app receives.
                    while client.clone().invoke_binding(req.clone()).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    latencies.push(t0.elapsed());
                }
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        println!(
            "| {end} | {} | {:.1} | {:.3} | {:.0} |",
            seen.total.load(Ordering::Relaxed),
            crate::proc_stats::rss_kb(pid) as f64 / 1024.0,
            p99.as_secs_f64() * 1000.0,
            started.elapsed().as_secs_f64()
        );
    }
    // Wait for the input side to catch up; stop when nothing arrives for 60 s.
    let mut last = (seen.total.load(Ordering::Relaxed), Instant::now());
    loop {
        let delivered_distinct = seen
            .counts
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count();
        if delivered_distinct == n || last.1.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let total = seen.total.load(Ordering::Relaxed);
        if total != last.0 {
            last = (total, Instant::now());
        }
    }
    let lost = seen
        .counts
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) == 0)
        .count();
    let duplicates: u64 = seen
        .counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed).saturating_sub(1) as u64)
        .sum();
    println!();
    println!("- messages sent (acknowledged): {n}");
    println!(
        "- delivered to the app: {} (distinct {})",
        seen.total.load(Ordering::Relaxed),
        n - lost
    );
    println!("- **lost: {lost}**, duplicates: {duplicates}");
    println!(
        "- sidecar RSS: {:.1} MB at start, {:.1} MB at the end, peak {:.1} MB",
        rss_start as f64 / 1024.0,
        crate::proc_stats::rss_kb(pid) as f64 / 1024.0,
        crate::proc_stats::peak_rss_kb(pid) as f64 / 1024.0
    );
    println!("- wall time: {:.0} s", started.elapsed().as_secs_f64());
    drop(sidecar);
    server.abort();
}
