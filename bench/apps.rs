//! Minimal apps that receive input bindings, to time delivery through the sidecar.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use tokio::sync::Mutex;

use crate::Killed;

#[derive(Default)]
struct Counter {
    count: AtomicUsize,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

impl Counter {
    async fn hit(&self) {
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == 1 {
            *self.first.lock().await = Some(Instant::now());
        }
        *self.last.lock().await = Some(Instant::now());
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
        self.0.hit().await;
        Ok(tonic::Response::new(pb::BindingEventResponse::default()))
    }
}

/// Starts an app, then a sidecar delivering `topic` to it; returns messages per second.
pub async fn measure_input(
    brokers: &str,
    topic: &str,
    n: usize,
    protocol: &str,
    start_sidecar: impl FnOnce(&Path, u16) -> Killed,
) -> f64 {
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
                    c.hit().await;
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
    let group = format!("bench-{protocol}-{}", std::process::id());
    crate::component(
        dir.path(),
        "bench-in",
        brokers,
        topic,
        &[
            ("topics", topic),
            ("consumerGroup", &group),
            ("initialOffset", "oldest"),
        ],
    );
    let sidecar = start_sidecar(dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.count.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "input delivery did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(sidecar);
    server.abort();
    let first = counter.first.lock().await.unwrap();
    let last = counter.last.lock().await.unwrap();
    (n - 1) as f64 / (last - first).as_secs_f64()
}
