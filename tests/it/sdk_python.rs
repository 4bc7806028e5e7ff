//! The official Python SDK (`dapr` 1.19, from .tools/venv) against outrigger,
//! unchanged: `DaprClient().invoke_binding` over gRPC (its constructor first
//! polls `/v1.0/healthz/outbound`), and a `dapr.ext.grpc.App` input-binding app
//! served over the AppCallback gRPC channel. Records are checked with an
//! independent Kafka client (confluent-kafka).

use std::process::Command;
use std::time::Duration;

use outrigger::app_channel::AppProtocol;

use crate::support::*;

/// The environment the SDK reads to find its sidecar.
fn sdk_env(cmd: &mut Command, sidecar: &TestSidecar) {
    clear_dapr_env(cmd)
        .env("DAPR_RUNTIME_HOST", "127.0.0.1")
        .env("DAPR_HTTP_PORT", sidecar.http_port().to_string())
        .env("DAPR_GRPC_PORT", sidecar.grpc_port().to_string())
        // DaprClient() polls /v1.0/healthz/outbound for up to this many seconds.
        .env("DAPR_HEALTH_TIMEOUT", "30");
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_binding_produces_record_with_key_and_header() {
    let broker = Broker::start();
    let topic = unique("py-orders");
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

    let mut cmd = python_script("sdk_invoke.py");
    cmd.args([
        "sample-topic",
        "create",
        r#"{"orderId":1}"#,
        r#"{"partitionKey": "k1", "key": "not-the-key", "h": "v"}"#,
    ]);
    sdk_env(&mut cmd, &sidecar);
    let (app, status) =
        run_to_end(Proc::spawn("sdk_invoke.py", cmd), Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "invoke_binding failed\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "ok", "{}", app.transcript());
    // As daprd: the Kafka binding answers no data and no metadata.
    assert_eq!(out["data"], "");
    assert_eq!(
        out["metadata"],
        serde_json::json!({}),
        "{}",
        app.transcript()
    );

    // Read back with confluent-kafka: nothing of outrigger's Kafka client involved.
    let mut reader = python_script("read_topic.py");
    reader.args([&broker.addr(), &topic, "1", "30"]);
    let (reader, status) = run_to_end(
        Proc::spawn("read_topic.py", reader),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        status.success(),
        "read_topic.py failed\n{}",
        reader.transcript()
    );
    let rec = only_json_line(&reader);
    assert_eq!(rec["value"], r#"{"orderId":1}"#);
    assert_eq!(rec["key"], "k1");
    // As daprd: every metadata entry is a header; `key` is not the key.
    assert_eq!(rec["headers"]["h"], "v");
    assert_eq!(rec["headers"]["partitionKey"], "k1", "{rec}");
    assert_eq!(rec["headers"]["key"], "not-the-key", "{rec}");
    // And, as daprd, a new traceparent and the gRPC call metadata.
    let tp = rec["headers"]["traceparent"].as_str().unwrap_or_default();
    crate::output_http::assert_traceparent(tp);
    assert!(
        tp.ends_with("-00"),
        "a new trace context is unsampled: {tp}"
    );
    assert_eq!(rec["headers"]["content-type"], "application/grpc", "{rec}");
    assert_eq!(
        rec["headers"]["dapr-authority"],
        format!("127.0.0.1:{}", sidecar.grpc_port()).as_str(),
        "{rec}"
    );
    // grpc-python's `grpc-accept-encoding`, under daprd's `dapr-` prefix.
    assert!(
        rec["headers"]["dapr-grpc-accept-encoding"].is_string(),
        "{rec}"
    );
    let agent = rec["headers"]["user-agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("dapr-sdk-python/"), "{rec}");
    let mut names: Vec<&str> = rec["headers"]
        .as_object()
        .map(|h| h.keys().map(String::as_str).collect())
        .unwrap_or_default();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "content-type",
            "dapr-authority",
            "dapr-grpc-accept-encoding",
            "h",
            "key",
            "partitionKey",
            "traceparent",
            "user-agent"
        ],
        "{rec}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_unknown_binding_raises_with_daprd_message() {
    let broker = Broker::start();
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
            &broker.addr(),
            &[("publishTopic", &unique("py-unused"))],
        )],
        |_| {},
    )
    .await;

    let mut cmd = python_script("sdk_invoke.py");
    cmd.args(["no-such-binding", "create", "{}", "{}"]);
    sdk_env(&mut cmd, &sidecar);
    let (app, status) =
        run_to_end(Proc::spawn("sdk_invoke.py", cmd), Duration::from_secs(60)).await;
    assert_eq!(
        status.code(),
        Some(1),
        "the SDK must raise\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "error");
    // daprd answers INTERNAL here; the contract also allows NOT_FOUND.
    assert!(
        out["code"] == "INTERNAL" || out["code"] == "NOT_FOUND",
        "gRPC code: {out}"
    );
    assert_eq!(
        out["message"],
        "error invoking output binding no-such-binding: couldn't find output binding no-such-binding"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_app_receives_each_event_once_in_order() {
    const N: usize = 20;
    let broker = Broker::start();
    let topic = unique("py-in");
    let group = unique("py-group");
    broker.create_topic(&topic, 1);
    // Held until the test ends: the app binds it (SO_REUSEADDR), nothing else can.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
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
            c.app_protocol = AppProtocol::Grpc;
        },
    )
    .await;

    let mut cmd = python_script("grpc_binding_app.py");
    cmd.arg("sample-topic")
        .env("GRPC_APP_PORT", app_port.to_string());
    sdk_env(&mut cmd, &sidecar);
    let mut app = Proc::spawn("grpc_binding_app.py", cmd);

    // The app lists the binding (ListInputBindings): the sidecar consumes it.
    let http = sidecar.http();
    let status = wait_until(
        "the sidecar to ask the app for its bindings",
        Duration::from_secs(30),
        || {
            if let Some(status) = app.exited() {
                panic!("the app exited ({status})\n{}", app.transcript());
            }
            let http = http.clone();
            async move {
                input_binding_status(&http, "sample-topic")
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
            .post(format!("{http}/v1.0/bindings/sample-topic"))
            .json(&serde_json::json!({
                "data": {"n": i},
                "operation": "create",
                "metadata": {"partitionKey": format!("k{i}")},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "produce {i}");
    }

    wait_until(
        &format!("{N} events at the Python app"),
        Duration::from_secs(60),
        || {
            let events = app.events("binding");
            async move { (events.len() >= N).then_some(()) }
        },
    )
    .await;
    // A graceful stop finishes in-flight deliveries: a duplicate would show now.
    sidecar.stop().await;
    app.kill();

    let got: Vec<String> = app
        .events("binding")
        .iter()
        .map(|e| e["data"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: Vec<String> = (1..=N).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(got, want, "each event once, in order\n{}", app.transcript());
    assert!(
        app.events("binding")
            .iter()
            .all(|e| e["name"] == "sample-topic"),
        "{}",
        app.transcript()
    );
    // The SDK hands the handler daprd's event metadata.
    for (i, e) in app.events("binding").iter().enumerate() {
        let md = &e["metadata"];
        assert_eq!(md["__topic"], topic.as_str(), "{e}");
        assert_eq!(md["__partition"], "0", "{e}");
        assert_eq!(md["__offset"], i.to_string().as_str(), "{e}");
        assert_eq!(md["__key"], format!("k{}", i + 1).as_str(), "{e}");
        assert_eq!(md["partitionKey"], format!("k{}", i + 1).as_str(), "{e}");
        assert!(
            md["__timestamp"]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .is_some(),
            "{e}"
        );
    }
}
