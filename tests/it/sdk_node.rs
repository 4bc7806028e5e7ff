//! The official Node SDK (`@dapr/dapr` 3.18, from tests/node/node_modules)
//! against outrigger, unchanged: `DaprClient.binding.send` over HTTP and over
//! gRPC, and `DaprServer.binding.receive` over HTTP and over gRPC. Both wait for
//! the sidecar on start (HTTP: `GET /v1.0/metadata` must answer a non-empty
//! body; gRPC: `GetMetadata` must answer OK), so those probes are covered too.

use std::process::Command;
use std::time::Duration;

use outrigger::app_channel::AppProtocol;

use crate::support::*;

fn node_script(args: &[&str]) -> Command {
    let mut cmd = node(&tests_node_dir(), args[0]);
    clear_dapr_env(&mut cmd).args(&args[1..]);
    cmd
}

/// `client.binding.send('sample-topic', 'create', {orderId: 1}, {partitionKey: 'k1', ...})`
/// through the given protocol puts one record with that key on the topic, every
/// metadata entry a header (as daprd), and gets daprd's empty reply.
async fn client_send_produces_record(protocol: &str) {
    let broker = Broker::start();
    let topic = unique("node-orders");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;
    let port = match protocol {
        "grpc" => sidecar.grpc_port(),
        _ => sidecar.http_port(),
    };
    let cmd = node_script(&[
        "client_send.js",
        protocol,
        &port.to_string(),
        "sample-topic",
        r#"{"orderId": 1}"#,
        r#"{"partitionKey": "k1", "source": "node"}"#,
    ]);
    let (app, status) = run_to_end(
        Proc::spawn(&format!("client_send.js {protocol}"), cmd),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        status.success(),
        "binding.send failed\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "ok", "{}", app.transcript());
    // As daprd, the reply names nothing of the record: an empty 204 over HTTP
    // (the SDK hands back its empty body), no metadata over gRPC.
    match protocol {
        "grpc" => assert_eq!(out["response"]["metadata"], serde_json::json!({}), "{out}"),
        _ => assert_eq!(out["response"], "", "{out}"),
    }

    let brokers = broker.addr();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), r#"{"orderId":1}"#);
    assert_eq!(records[0].key_text().as_deref(), Some("k1"));
    assert_eq!(records[0].header("source").as_deref(), Some("node"));
    assert_eq!(records[0].header("partitionKey").as_deref(), Some("k1"));
    // As daprd, a new traceparent; over gRPC the call metadata are headers too
    // (the SDK's transport is connect-es: its content type, agent and encodings).
    crate::output_http::new_traceparent(&records[0]);
    let names = crate::output_http::header_names(&records[0]);
    match protocol {
        "grpc" => {
            assert_eq!(
                records[0].header("content-type").as_deref(),
                Some("application/grpc+proto")
            );
            assert_eq!(
                records[0].header("dapr-authority"),
                Some(format!("127.0.0.1:{port}"))
            );
            assert_eq!(
                names,
                [
                    "content-type",
                    "dapr-authority",
                    "dapr-grpc-accept-encoding",
                    "partitionKey",
                    "source",
                    "traceparent",
                    "user-agent"
                ],
                "{:?}",
                records[0].headers
            );
        }
        // HTTP request headers are not record headers.
        _ => assert_eq!(names, ["partitionKey", "source", "traceparent"]),
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_http_send_produces_record_with_key() {
    client_send_produces_record("http").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_grpc_send_produces_record_with_key() {
    client_send_produces_record("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_send_to_unknown_binding_rejects_with_daprd_message() {
    let broker = Broker::start();
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
            &broker.addr(),
            &[("publishTopic", &unique("node-unused"))],
        )],
        |_| {},
    )
    .await;
    for (protocol, port) in [("http", sidecar.http_port()), ("grpc", sidecar.grpc_port())] {
        let cmd = node_script(&[
            "client_send.js",
            protocol,
            &port.to_string(),
            "no-such-binding",
            "{}",
            "{}",
        ]);
        let (app, status) = run_to_end(
            Proc::spawn(&format!("client_send.js {protocol}"), cmd),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            status.code(),
            Some(1),
            "the SDK must reject ({protocol})\n{}",
            app.transcript()
        );
        let out = only_json_line(&app);
        let message = out["message"].as_str().unwrap_or_default();
        // HTTP: the SDK wraps the JSON error body; gRPC: "[internal] <message>".
        assert!(
            message.contains(
                "error invoking output binding no-such-binding: couldn't find output binding no-such-binding"
            ),
            "{protocol}: {message}"
        );
        if protocol == "http" {
            assert!(message.contains("ERR_INVOKE_OUTPUT_BINDING"), "{message}");
        }
    }
    sidecar.stop().await;
}

/// A `DaprServer` app receiving `binding` gets each of N events exactly once, in order.
async fn server_receives_each_event_once_in_order(protocol: AppProtocol, binding: &str) {
    const N: usize = 20;
    let broker = Broker::start();
    let topic = unique("node-in");
    let group = unique("node-group");
    broker.create_topic(&topic, 1);
    // Held until the test ends: the app binds it (SO_REUSEADDR), nothing else can.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let sidecar = start_sidecar(
        &[kafka_component(
            binding,
            &broker.addr(),
            &[
                ("topics", &topic),
                ("publishTopic", &topic),
                ("consumerGroup", &group),
                // Records produced before the group join are delivered too.
                ("initialOffset", "oldest"),
            ],
        )],
        |c| {
            c.app_port = Some(app_port);
            c.app_protocol = protocol;
        },
    )
    .await;
    let (name, dapr_port) = match protocol {
        AppProtocol::Grpc => ("grpc", sidecar.grpc_port()),
        AppProtocol::Http => ("http", sidecar.http_port()),
    };
    let mut app = Proc::spawn(
        &format!("server_receive.js {name}"),
        node_script(&[
            "server_receive.js",
            name,
            &app_port.to_string(),
            &dapr_port.to_string(),
            binding,
        ]),
    );

    // start() returns only after the SDK's sidecar probe passed.
    wait_for(
        "DaprServer.start() to return",
        Duration::from_secs(30),
        || {
            assert!(
                app.events("failed").is_empty() && app.exited().is_none(),
                "the app failed to start\n{}",
                app.transcript()
            );
            (!app.events("started").is_empty()).then_some(())
        },
    );
    let http = sidecar.http();
    let status = wait_until(
        "the sidecar to consume the binding for the app",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            async move {
                input_binding_status(&http, binding)
                    .await
                    .filter(|s| s["state"] != "waiting for app")
            }
        },
    )
    .await;
    assert_eq!(
        status["state"],
        "subscribed",
        "the app's binding was not recognised: {status}\n{}",
        app.transcript()
    );

    let client = reqwest::Client::new();
    for i in 1..=N {
        let resp = client
            .post(format!("{http}/v1.0/bindings/{binding}"))
            .json(&serde_json::json!({"data": {"n": i}, "operation": "create"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "produce {i}");
    }

    wait_until(
        &format!("{N} events at the Node app"),
        Duration::from_secs(60),
        || {
            let n = app.events("binding").len();
            async move { (n >= N).then_some(()) }
        },
    )
    .await;
    // A graceful stop finishes in-flight deliveries: a duplicate would show now.
    sidecar.stop().await;
    app.kill();

    let got: Vec<serde_json::Value> = app
        .events("binding")
        .into_iter()
        .map(|e| e["data"].clone())
        .collect();
    let want: Vec<serde_json::Value> = (1..=N).map(|i| serde_json::json!({"n": i})).collect();
    assert_eq!(got, want, "each event once, in order\n{}", app.transcript());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_http_receives_each_event_once_in_order() {
    server_receives_each_event_once_in_order(AppProtocol::Http, "sample-topic").await;
}

/// The gRPC DaprServer lists its bindings lower-cased: a mixed-case component
/// name must still match.
#[tokio::test(flavor = "multi_thread")]
async fn server_grpc_receives_each_event_once_in_order() {
    server_receives_each_event_once_in_order(AppProtocol::Grpc, "Sample-Topic").await;
}
