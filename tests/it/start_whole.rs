//! A sidecar starts whole or not at all: every declared component is built and
//! checked before the API listens (input bindings included), a failure stops the
//! start with exit 64 (configuration) or 1 (start-up), and `ignoreErrors: true`
//! skips only the component that failed.

use std::process::{Command, Stdio};
use std::time::Duration;

use outrigger::runtime::{RuntimeError, Sidecar};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A CA that passes the PEM shape check but that TLS cannot load (`\\n`:
/// written into a double-quoted YAML scalar, where it is a line break).
const UNUSABLE_CA: &str =
    "-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydGlmaWNhdGU=\\n-----END CERTIFICATE-----";

/// A Kafka component; brokers are never reached by these tests.
fn kafka(name: &str, items: &[(&str, &str)]) -> String {
    kafka_component(name, "127.0.0.1:9", items)
}

fn cron(name: &str, route: Option<&str>) -> String {
    let mut doc = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - name: schedule\n    value: \"@every 1h\"\n"
    );
    if let Some(r) = route {
        doc.push_str(&format!("  - name: route\n    value: {r:?}\n"));
    }
    doc
}

async fn start(
    docs: &[String],
    tweak: impl FnOnce(&mut outrigger::runtime::SidecarConfig),
) -> (
    Result<Sidecar, RuntimeError>,
    CancellationToken,
    tempfile::TempDir,
) {
    init_logs();
    let dir = components_dir(docs);
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let shutdown = CancellationToken::new();
    (
        Sidecar::start(config, shutdown.clone()).await,
        shutdown,
        dir,
    )
}

fn err(result: Result<Sidecar, RuntimeError>) -> RuntimeError {
    match result {
        Ok(_) => panic!("the sidecar started"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_route_that_cannot_be_an_http_path_is_refused_at_load() {
    let docs = [
        kafka(
            "orders",
            &[
                ("topics", "t"),
                ("consumerGroup", "g"),
                ("route", "orders%zz"),
            ],
        ),
        cron("ticks", Some("every\ttick")),
    ];
    let (result, _stop, _dir) = start(&docs, |_| {}).await;
    let e = err(result);
    assert_eq!(e.exit_code(), 64, "{e}");
    let text = e.to_string();
    for want in [
        "component \"orders\"",
        "component \"ticks\"",
        "field \"route\"",
        "\"orders%zz\" cannot be an HTTP path",
        "control character 0x09",
        "component-0.yaml:",
        "component-1.yaml:",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// As daprd, a route with characters a path cannot carry is percent-encoded,
/// and the app gets `OPTIONS` and `POST` on the encoded path.
#[tokio::test(flavor = "multi_thread")]
async fn a_route_with_a_space_is_sent_percent_encoded_as_daprd_sends_it() {
    use axum::http::Method;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Method, String)>::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: axum::http::Uri| {
        let record = record.clone();
        async move {
            record
                .lock()
                .unwrap()
                .push((method, uri.path().to_string()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let doc = cron("ticks", Some("my ticks")).replace("@every 1h", "@every 1s");
    let (result, stop, _dir) = start(&[doc], |c| c.app_port = Some(app_port)).await;
    let sidecar = result.expect("a route with a space loads");
    wait_until("a tick posted to the app", Duration::from_secs(30), || {
        let posted = seen.lock().unwrap().iter().any(|(m, _)| m == Method::POST);
        std::future::ready(posted.then_some(()))
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, path)| path == "/my%20ticks"),
        "{seen:?}"
    );
    assert_eq!(seen[0].0, Method::OPTIONS, "{seen:?}");
    stop.cancel();
    sidecar.wait().await;
    server.abort();
}

#[tokio::test]
async fn an_app_token_that_cannot_be_sent_is_refused() {
    let (result, _stop, _dir) = start(&[cron("ticks", None)], |c| {
        c.app_token = Some("line\nbreak".into());
    })
    .await;
    let e = err(result);
    assert!(matches!(e, RuntimeError::AppToken), "{e:?}");
    assert_eq!(e.exit_code(), 64);
    assert!(e.to_string().contains("APP_API_TOKEN"), "{e}");
    // The token itself is never echoed.
    assert!(!e.to_string().contains("line"), "{e}");
}

#[test]
fn the_binary_exits_64_on_an_app_token_it_cannot_send_and_never_listens() {
    let dir = components_dir(&[cron("ticks", None)]);
    let output = Command::new(outrigger_bin())
        .args(["sidecar", "--app-id", "a", "--resources-path"])
        .arg(dir.path())
        .args(["--dapr-http-port", "0", "--dapr-grpc-port", "0"])
        .args(["--dapr-listen-addresses", "127.0.0.1"])
        .env("APP_API_TOKEN", "tab\tand\u{1}control")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(64), "{all}");
    assert!(
        all.contains("APP_API_TOKEN is not a valid HTTP header value"),
        "{all}"
    );
    assert!(!all.contains("API listening"), "{all}");
}

#[tokio::test]
async fn an_input_binding_whose_consumer_cannot_be_built_fails_the_start() {
    let input = |name: &str, extra: &[(&str, &str)]| {
        let mut items = vec![
            ("topics", "t"),
            ("consumerGroup", "g"),
            ("direction", "input"),
            ("authType", "certificate"),
            ("caCert", UNUSABLE_CA),
        ];
        items.extend_from_slice(extra);
        kafka(name, &items)
    };
    // Input only: before, the consumer was created only once the app was up,
    // and the sidecar reported ready with a binding that could never consume.
    let app = ReservedPort::new();
    let (result, _stop, _dir) = start(&[input("secure-in", &[])], |c| {
        c.app_port = Some(app.port())
    })
    .await;
    let e = err(result);
    assert_eq!(e.exit_code(), 1, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("component secure-in (")
            && text.contains("component-0.yaml) failed to start"),
        "{text}"
    );
    assert!(text.contains("Kafka consumer"), "{text}");
    assert!(text.contains("ssl.ca.pem"), "{text}");

    // With a dead-letter topic, its producer is built first, and named.
    let (result, _stop, _dir) =
        start(&[input("secure-in", &[("deadLetterTopic", "dlq")])], |_| {}).await;
    let text = err(result).to_string();
    assert!(text.contains("dead-letter producer"), "{text}");
}

#[tokio::test]
async fn ignore_errors_skips_only_the_component_that_cannot_start() {
    let broken = kafka(
        "secure-in",
        &[
            ("topics", "t"),
            ("consumerGroup", "g"),
            ("direction", "input"),
            ("authType", "certificate"),
            ("caCert", UNUSABLE_CA),
        ],
    )
    .replace("spec:\n", "spec:\n  ignoreErrors: true\n");
    assert!(broken.contains("ignoreErrors: true"), "{broken}");
    let (result, stop, _dir) = start(&[broken, cron("ticks", None)], |_| {}).await;
    let sidecar = result.expect("the broken component is skipped");
    let metadata: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{}/v1.0/metadata",
        sidecar.http_port()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let names: Vec<&str> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ticks"], "{metadata:#}");
    stop.cancel();
    sidecar.wait().await;
}

/// librdkafka's threads of a process (`rdk:main`, `rdk:broker…`), by name.
fn rdkafka_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("rdk:"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_output_without_publish_topic_builds_no_producer() {
    // The control: with a topic, the producer's threads exist once the API listens.
    let with = components_dir(&[kafka("out", &[("publishTopic", "t")])]);
    let sidecar = SidecarProc::builder(with.path()).start();
    assert!(rdkafka_threads(sidecar.pid()) > 0, "a producer has threads");
    drop(sidecar);

    let without = components_dir(&[kafka("out", &[])]);
    let sidecar = SidecarProc::builder(without.path()).start();
    assert_eq!(rdkafka_threads(sidecar.pid()), 0, "no producer, no threads");
    // Still listed as an output binding, as daprd lists it; a call is refused.
    let client = reqwest::Client::new();
    let metadata: serde_json::Value = client
        .get(format!("{}/v1.0/metadata", sidecar.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["components"][0]["capabilities"],
        serde_json::json!(["OUTPUT_BINDING"]),
        "{metadata:#}"
    );
    let reply = client
        .post(format!("{}/v1.0/bindings/out", sidecar.http()))
        .body(r#"{"operation":"create","data":"x"}"#)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 500);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_INVOKE_OUTPUT_BINDING", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no publishTopic"),
        "{body}"
    );
}

/// A client that connects while the sidecar is still starting (an SDK started
/// beside it, a probe) waits in the listen backlog and is answered once the
/// sidecar is ready: over HTTP (`healthz`) and gRPC (`GetMetadata`), neither
/// refused nor failed. The start is held between binding its ports and
/// loading its components, so the connections are made before it is ready.
#[tokio::test]
async fn a_client_connecting_during_the_start_is_answered_once_ready() {
    use outrigger::proto::runtime::v1 as pb;
    use outrigger::proto::runtime::v1::dapr_client::DaprClient;
    use outrigger::runtime::StartHold;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    init_logs();
    let dir = components_dir(&[kafka("held-out", &[("publishTopic", "t")])]);
    let mut config = test_config(dir.path());
    let (addrs_tx, addrs_rx) = tokio::sync::oneshot::channel();
    let addrs_tx = std::sync::Mutex::new(Some(addrs_tx));
    let release = Arc::new(tokio::sync::Notify::new());
    let hold_release = release.clone();
    config.start_hold = Some(StartHold(Arc::new(move |http, grpc| {
        if let Some(tx) = addrs_tx.lock().unwrap().take() {
            let _ = tx.send((http, grpc));
        }
        let release = hold_release.clone();
        Box::pin(async move { release.notified().await })
    })));
    let shutdown = CancellationToken::new();
    let start = tokio::spawn(Sidecar::start(config, shutdown.clone()));
    let (http, grpc): (Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>) =
        tokio::time::timeout(Duration::from_secs(10), addrs_rx)
            .await
            .expect("the start binds its ports")
            .expect("the hold is called");

    // Both connections are made while the start is held, so before ready.
    let mut raw = tokio::net::TcpStream::connect(http[0])
        .await
        .expect("a connection during the start is accepted, not refused");
    raw.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // The gRPC client's connection is made here too, and handed to the client,
    // which speaks HTTP/2 over it once the sidecar serves.
    let early = tokio::net::TcpStream::connect(grpc[0])
        .await
        .expect("a gRPC connection during the start is accepted, not refused");
    let early = std::sync::Mutex::new(Some(early));
    let grpc_call = tokio::spawn(async move {
        let channel = tonic::transport::Endpoint::from_static("http://early")
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let stream = early.lock().unwrap().take();
                async move {
                    stream
                        .map(hyper_util::rt::TokioIo::new)
                        .ok_or_else(|| std::io::Error::other("only the early connection is used"))
                }
            }))
            .await?;
        DaprClient::new(channel)
            .get_metadata(pb::GetMetadataRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
    });
    assert!(!start.is_finished(), "the start is still held");
    release.notify_one();

    let sidecar = tokio::time::timeout(Duration::from_secs(10), start)
        .await
        .expect("the start ends once released")
        .unwrap()
        .expect("the sidecar starts");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the early HTTP request is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 204"),
        "healthz answered: {answer}"
    );
    let metadata = tokio::time::timeout(Duration::from_secs(10), grpc_call)
        .await
        .expect("the early gRPC call is answered")
        .unwrap()
        .expect("GetMetadata succeeds");
    assert!(
        metadata
            .registered_components
            .iter()
            .any(|c| c.name == "held-out" && c.r#type == "bindings.kafka"),
        "the answer comes from the ready sidecar: {:?}",
        metadata.registered_components
    );
    shutdown.cancel();
    sidecar.wait().await;
}
