//! The official Rust SDK (crate `dapr` 0.20, client side) against outrigger,
//! unchanged: `Client::from_options(...).invoke_binding` produces a record
//! with key and headers (its call metadata too, as daprd, but never the API
//! token) and gets daprd's empty reply, `get_metadata` lists the component, and
//! the SDK's API-token interceptor is what the sidecar checks. Records are read
//! back with an independent rdkafka consumer.

use std::collections::HashMap;
use std::time::Duration;

use dapr::client::ClientOptions;

use crate::output_http::{header_names, new_traceparent};
use crate::support::*;

async fn client(
    sidecar: &TestSidecar,
    token: Option<&str>,
) -> dapr::Client<dapr::client::TonicClientWithAuth> {
    let mut opts = ClientOptions::new()
        .with_address(sidecar.grpc())
        .with_timeout(Duration::from_secs(10));
    opts = match token {
        Some(t) => opts.with_api_token(t),
        None => opts.without_api_token(),
    };
    dapr::Client::from_options(opts)
        .await
        .expect("SDK connects")
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_invokes_the_binding_and_reads_metadata() {
    let broker = Broker::start();
    let topic = unique("rs-orders");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |c| {
            c.app_id = "rust-sdk-app".into();
            c.api_token = Some("rs-token".into());
        },
    )
    .await;

    // Without the token the sidecar refuses, as daprd does.
    let mut anonymous = client(&sidecar, None).await;
    let err = anonymous
        .invoke_binding("sample-topic", b"{}".to_vec(), "create", None)
        .await
        .expect_err("no token, no call");
    assert!(format!("{err:?}").contains("Unauthenticated"), "{err:?}");

    let mut c = client(&sidecar, Some("rs-token")).await;
    let metadata = HashMap::from([
        ("partitionKey".to_string(), "k-rs".to_string()),
        ("source".to_string(), "rust-sdk".to_string()),
    ]);
    let resp = c
        .invoke_binding(
            "sample-topic",
            br#"{"orderId":7}"#.to_vec(),
            "create",
            Some(metadata),
        )
        .await
        .expect("invoke_binding");
    // As daprd: an empty reply, naming nothing of where the record went.
    assert!(resp.metadata.is_empty(), "{:?}", resp.metadata);
    assert!(resp.data.is_empty());

    // An unknown binding is an error the SDK surfaces, naming the binding.
    let err = c
        .invoke_binding("no-such-binding", b"x".to_vec(), "create", None)
        .await
        .expect_err("unknown binding");
    assert!(format!("{err:?}").contains("no-such-binding"), "{err:?}");

    let md = c.get_metadata().await.expect("get_metadata");
    assert_eq!(md.id, "rust-sdk-app");
    assert!(
        md.registered_components
            .iter()
            .any(|r| r.name == "sample-topic" && r.r#type == "bindings.kafka"),
        "{md:?}"
    );

    let records = read_back(broker.addr(), topic, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].text(), r#"{"orderId":7}"#);
    assert_eq!(records[0].key_text().as_deref(), Some("k-rs"));
    assert_eq!(records[0].header("source").as_deref(), Some("rust-sdk"));
    assert_eq!(records[0].header("partitionKey").as_deref(), Some("k-rs"));
    // As daprd: a new traceparent, and the call metadata as headers; the token
    // the interceptor added authorised the call but is not written.
    new_traceparent(&records[0]);
    assert_eq!(
        records[0].header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(
        records[0].header("dapr-authority"),
        Some(format!("127.0.0.1:{}", sidecar.grpc_port()))
    );
    assert_eq!(
        header_names(&records[0]),
        [
            "content-type",
            "dapr-authority",
            "partitionKey",
            "source",
            "traceparent",
            "user-agent"
        ],
        "no dapr-api-token"
    );
    assert!(
        !records[0].headers.values().any(|v| v == b"rs-token"),
        "{:?}",
        records[0].headers
    );
    sidecar.stop().await;
}
