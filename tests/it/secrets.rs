//! Secrets (SASL password, `DAPR_API_TOKEN`, `APP_API_TOKEN`) never appear in
//! the sidecar's logs (at debug level, text and JSON), in its error answers,
//! in `/v1.0/metadata`, `GetMetadata` or `/metrics`, while every path that
//! could print them is exercised: a SASL login that fails, output calls that
//! fail, wrong tokens, an input binding probing the app. Also: the listeners
//! are on loopback unless told otherwise.

use std::path::Path;
use std::time::Duration;

use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const SASL_SECRET: &str = "sasl-pw-7f3a9c1e";
const API_SECRET: &str = "api-token-5b2d8e4f";
const APP_SECRET: &str = "app-token-9c4e1a7b";
const DEADLINE: Duration = Duration::from_secs(60);

fn assert_clean(what: &str, text: &str) {
    for secret in [SASL_SECRET, API_SECRET, APP_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} contains a secret ({secret}):\n{text}"
        );
    }
}

/// The sidecar with both tokens in its environment, logging at debug level.
fn start(dir: &Path, json: bool, app: u16) -> SidecarProc {
    let builder = SidecarProc::builder(dir)
        .app_id("secretive")
        .app_port(app)
        .log_level("debug")
        .env("DAPR_API_TOKEN", API_SECRET)
        .env("APP_API_TOKEN", APP_SECRET);
    if json { builder.json_logs() } else { builder }.start()
}

async fn exercise(json: bool) {
    let broker = Broker::start();
    let topic = unique("secret-out");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    let sasl = [
        ("authType", "password"),
        ("saslUsername", "alice"),
        ("saslPassword", SASL_SECRET),
        ("saslMechanism", "SCRAM-SHA-256"),
    ];
    let mut out_meta = vec![("publishTopic", topic.as_str()), ("produceTimeout", "2s")];
    out_meta.extend_from_slice(&sasl);
    let docs = [
        // The broker does not speak SASL: the login fails, loudly.
        kafka_component("secured", &broker.addr(), &out_meta),
        input_component(
            "secured-in",
            &broker.addr(),
            &topic,
            &unique("group"),
            &sasl,
        ),
    ];
    let dir = components_dir(&docs);
    let mut proc = start(dir.path(), json, app.port);
    let (http, grpc) = (proc.http_port, proc.grpc_port);
    let metrics = proc.metrics_port.expect("metrics on");
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    wait_until("the sidecar's health route", DEADLINE, || {
        let c = client.clone();
        let url = format!("{base}/v1.0/healthz/outbound");
        async move { c.get(url).send().await.ok().map(|_| ()) }
    })
    .await;

    // Output calls: with the token (fails on SASL), without, with a wrong one.
    let url = format!("{base}/v1.0/bindings/secured");
    let body = r#"{"operation":"create","data":{"n":1}}"#;
    for token in [Some(API_SECRET), None, Some("wrong")] {
        let mut req = client.post(&url).body(body);
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if token == Some(API_SECRET) {
            assert_eq!(status, 500, "SASL fails against this broker: {text}");
            assert!(text.contains("ERR_INVOKE_OUTPUT_BINDING"), "{text}");
        } else {
            assert_eq!(status, 401, "{text}");
        }
        assert_clean("an HTTP error answer", &text);
    }

    // What the sidecar tells about itself.
    let meta = client
        .get(format!("{base}/v1.0/metadata"))
        .header("dapr-api-token", API_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(meta.status().as_u16(), 200);
    let meta = meta.text().await.unwrap();
    assert!(
        meta.contains("secured-in"),
        "metadata lists the bindings: {meta}"
    );
    assert_clean("/v1.0/metadata", &meta);
    let metrics_text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics_text.contains("secured"), "{metrics_text}");
    assert_clean("/metrics", &metrics_text);

    let mut grpc_client = DaprClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::GetMetadataRequest {});
    req.metadata_mut()
        .insert("dapr-api-token", API_SECRET.parse().unwrap());
    let got = grpc_client.get_metadata(req).await.unwrap().into_inner();
    assert_clean("GetMetadata", &format!("{got:?}"));
    let mut req = tonic::Request::new(pb::InvokeBindingRequest {
        name: "secured".into(),
        operation: "create".into(),
        data: b"x".to_vec().into(),
        metadata: Default::default(),
    });
    req.metadata_mut()
        .insert("dapr-api-token", API_SECRET.parse().unwrap());
    let status = grpc_client.invoke_binding(req).await.unwrap_err();
    assert_clean("an InvokeBinding error", status.message());
    let status = grpc_client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_clean("an Unauthenticated status", status.message());

    // The app was probed with its token: the secret was really in use.
    let probe = wait_until("the app is asked about its binding", DEADLINE, || {
        let probes = app.calls_to("OPTIONS", "secured-in");
        async move { probes.into_iter().next() }
    })
    .await;
    assert_eq!(probe.header("dapr-api-token"), Some(APP_SECRET));
    // The consumer has tried to log in (and failed) by now: the log says so.
    wait_until("the SASL failure in the log", DEADLINE, || {
        let text = proc.log_text();
        async move {
            let lower = text.to_lowercase();
            (lower.contains("sasl") || lower.contains("authentication")).then_some(())
        }
    })
    .await;
    // Then a graceful stop, so that the whole log, shutdown included, is checked.
    let status = tokio::task::block_in_place(|| proc.terminate(DEADLINE));
    assert_eq!(status.code(), Some(0));
    let text = proc.log_text();
    assert!(
        text.contains("secured"),
        "the log names the binding:\n{text}"
    );
    assert!(
        text.contains("outrigger stopped"),
        "the log runs to the end:\n{text}"
    );
    assert_clean("the sidecar's log", &text);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_text_logs_errors_and_metadata() {
    exercise(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_json_logs() {
    exercise(true).await;
}

/// Local addresses (`/proc/net/tcp{,6}` hex form) listening on `port`.
fn listening_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(p, 16) == Ok(port) {
                found.push(addr.to_string());
            }
        }
    }
    found
}

/// With no `--dapr-listen-addresses`, the HTTP, gRPC and metrics ports listen
/// on loopback only (127.0.0.1 and ::1), as daprd does by default.
#[cfg(target_os = "linux")]
#[test]
fn listeners_are_loopback_only_by_default() {
    let dir = components_dir(&[]);
    // The sidecar's own default listen addresses.
    let proc = SidecarProc::builder(dir.path())
        .listen_addresses(None)
        .start();
    let (http, grpc) = (proc.http_port, proc.grpc_port);
    let metrics = proc.metrics_port.expect("metrics on");
    const V4_LOOPBACK: &str = "0100007F";
    const V6_LOOPBACK: &str = "00000000000000000000000001000000";
    // All three bound (IPv4 at least; ::1 is optional on hosts without IPv6)...
    for port in [http, grpc, metrics] {
        wait_for(&format!("a loopback listener on {port}"), DEADLINE, || {
            listening_on(port)
                .contains(&V4_LOOPBACK.to_string())
                .then_some(())
        });
    }
    // ...and nothing else.
    for port in [http, grpc, metrics] {
        let addrs = listening_on(port);
        for a in &addrs {
            assert!(
                a == V4_LOOPBACK || a == V6_LOOPBACK,
                "port {port} listens on {a}, not on loopback only: {addrs:?}"
            );
        }
    }
    drop(proc);
}
