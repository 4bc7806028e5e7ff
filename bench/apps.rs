//! Minimal apps that receive input bindings, to time delivery through the sidecar.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use std::sync::Mutex;

use crate::sidecar::RunningSidecar;

/// What one input run measured.
#[derive(Debug, Clone, Copy)]
pub struct InputRun {
    pub rate: f64,
    /// Sidecar CPU from ready until the last record was delivered.
    pub cpu_s: f64,
    pub rss_peak_kb: u64,
}

#[derive(Default)]
struct Counter {
    count: AtomicUsize,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

impl Counter {
    fn hit(&self) {
        let now = Instant::now();
        if self.count.load(Ordering::Acquire) == 0 {
            self.first.lock().unwrap().get_or_insert(now);
        }
        *self.last.lock().unwrap() = Some(now);
        self.count.fetch_add(1, Ordering::AcqRel);
    }
}

struct GrpcApp(Arc<Counter>);

#[tonic::async_trait]
impl AppCallback for GrpcApp {
    async fn list_input_bindings(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ListInputBindingsResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListInputBindingsResponse {
            bindings: vec!["bench-in".into()],
        }))
    }
    async fn on_binding_event(
        &self,
        _: tonic::Request<pb::BindingEventRequest>,
    ) -> Result<tonic::Response<pb::BindingEventResponse>, tonic::Status> {
        self.0.hit();
        Ok(tonic::Response::new(pb::BindingEventResponse::default()))
    }
}

/// Starts an app, then a sidecar delivering `topic` to it from the oldest
/// offset in a new consumer group, until `n` records arrived.
pub async fn measure_input(
    brokers: &str,
    topic: &str,
    n: usize,
    protocol: &str,
    tag: &str,
    extra: &[(&str, &str)],
    start_sidecar: impl FnOnce(&Path, u16) -> RunningSidecar,
) -> InputRun {
    let counter = Arc::new(Counter::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = if protocol == "grpc" {
        let svc = AppCallbackServer::new(GrpcApp(counter.clone()));
        let incoming = crate::nodelay_incoming(listener);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        })
    } else {
        let c = counter.clone();
        let app = axum::Router::new().route(
            "/bench-in",
            post(move || {
                let c = c.clone();
                async move {
                    c.hit();
                    ""
                }
            })
            .options(|| async { "" }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let group = format!("bench-{tag}-{protocol}-{}", std::process::id());
    let mut meta = vec![
        ("topics", topic),
        ("consumerGroup", group.as_str()),
        ("initialOffset", "oldest"),
        ("direction", "input"),
    ];
    meta.extend_from_slice(extra);
    crate::component(dir.path(), "bench-in", brokers, topic, &meta);
    let sidecar = start_sidecar(dir.path(), port);
    let pid = sidecar.pid();
    let cpu0 = crate::proc_stats::cpu_seconds(pid);
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.count.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "input delivery did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_s = crate::proc_stats::cpu_seconds(pid) - cpu0;
    let rss_peak_kb = crate::proc_stats::peak_rss_kb(pid);
    drop(sidecar);
    server.abort();
    let first = counter.first.lock().unwrap().unwrap();
    let last = counter.last.lock().unwrap().unwrap();
    InputRun {
        rate: (n - 1) as f64 / (last - first).as_secs_f64(),
        cpu_s,
        rss_peak_kb,
    }
}
