//! The official Java SDK (`io.dapr:dapr-sdk` 1.17, the program in tests/java
//! built by scripts/sdk-deps.sh into one jar) against outrigger, unchanged:
//! `DaprClient.waitForSidecar` then `invokeBinding` with metadata. The record
//! is read back with an independent Kafka client.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// `java -jar sdk-java-invoke.jar ARGS`, finding the sidecar the way any Dapr
/// app does (DAPR_SIDECAR_IP, DAPR_GRPC_PORT, DAPR_HTTP_PORT).
fn java_invoke(sidecar: &TestSidecar, args: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    clear_dapr_env(&mut cmd)
        .env("DAPR_SIDECAR_IP", "127.0.0.1")
        .env("DAPR_GRPC_PORT", sidecar.grpc_port().to_string())
        .env("DAPR_HTTP_PORT", sidecar.http_port().to_string())
        .arg("-jar")
        .arg(tool("sdk-java-invoke.jar"))
        .args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn java_client_invoke_binding_produces_record_with_key_and_headers() {
    let broker = Broker::start();
    let topic = unique("java-orders");
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

    let cmd = java_invoke(
        &sidecar,
        &[
            "sample-topic",
            "create",
            r#"{"orderId": 9, "item": "bolt"}"#,
            r#"{"partitionKey": "k9", "traceTag": "java-sdk"}"#,
        ],
    );
    let (app, status) =
        run_to_end(Proc::spawn("sdk-java invoke", cmd), Duration::from_secs(90)).await;
    assert!(
        status.success(),
        "invokeBinding failed\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "ok", "{}", app.transcript());
    assert_eq!(out["data"], "", "the Kafka binding answers no data: {out}");

    let brokers = broker.addr();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let rec = &records[0];
    // The SDK serialises the data object to JSON (its key order kept).
    let value: serde_json::Value = serde_json::from_slice(&rec.payload)
        .unwrap_or_else(|e| panic!("record value is JSON ({e}): {}", rec.text()));
    assert_eq!(value, serde_json::json!({"orderId": 9, "item": "bolt"}));
    assert_eq!(rec.key_text().as_deref(), Some("k9"));
    assert_eq!(rec.header("traceTag").as_deref(), Some("java-sdk"));
    sidecar.stop().await;
}
