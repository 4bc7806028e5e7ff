//! Output bindings through the HTTP shim, against a real broker.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn post_produces_with_key_and_headers() {
    let broker = Broker::start();
    let topic = unique("orders");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .body(r#"{"data": {"orderId": 1}, "operation": "create", "metadata": {"key": "k1", "trace": "abc"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["metadata.topic"], topic.as_str());

    let records = tokio::task::spawn_blocking(move || {
        read_topic(&broker.addr(), &topic, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), r#"{"orderId":1}"#);
    assert_eq!(records[0].key_text().as_deref(), Some("k1"));
    assert_eq!(records[0].header("trace").as_deref(), Some("abc"));
    assert!(
        !records[0].headers.contains_key("key"),
        "the key is not also a header"
    );
    sidecar.stop().await;
}
