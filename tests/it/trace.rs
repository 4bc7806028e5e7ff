//! W3C trace context: `traceparent`/`tracestate` from the caller reach the Kafka
//! record headers (HTTP and gRPC APIs), and from record headers reach the app
//! (HTTP headers; gRPC event metadata and call metadata).

use std::time::Duration;

use outrigger::app_channel::AppProtocol;
use outrigger::proto::runtime::v1::InvokeBindingRequest;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE";

#[tokio::test(flavor = "multi_thread")]
async fn caller_trace_context_becomes_record_headers() {
    let broker = Broker::start();
    let topic = unique("traced");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "traced",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/traced", sidecar.http()))
        .header("traceparent", PARENT)
        .header("tracestate", STATE)
        .body(r#"{"data":"http","operation":"create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let mut req = tonic::Request::new(InvokeBindingRequest {
        name: "traced".into(),
        data: "grpc".into(),
        metadata: Default::default(),
        operation: "create".into(),
    });
    req.metadata_mut()
        .insert("traceparent", PARENT.parse().unwrap());
    client.invoke_binding(req).await.unwrap();

    // Explicit request metadata wins over the caller's header.
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/traced", sidecar.http()))
        .header("traceparent", PARENT)
        .body(format!(
            r#"{{"data":"own","operation":"create","metadata":{{"traceparent":"{own}"}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let records = read_back(broker.addr(), topic, 3).await;
    assert_eq!(records[0].text(), "\"http\"");
    assert_eq!(records[0].header("traceparent").as_deref(), Some(PARENT));
    assert_eq!(records[0].header("tracestate").as_deref(), Some(STATE));
    assert_eq!(records[1].text(), "grpc");
    assert_eq!(records[1].header("traceparent").as_deref(), Some(PARENT));
    assert_eq!(records[1].header("tracestate"), None);
    assert_eq!(records[2].header("traceparent").as_deref(), Some(own));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn record_trace_context_reaches_http_and_grpc_apps() {
    let broker = Broker::start();
    let (http_topic, grpc_topic) = (unique("trace-http"), unique("trace-grpc"));
    broker.create_topic(&http_topic, 1);
    broker.create_topic(&grpc_topic, 1);
    let traced = || {
        Msg::new("traced")
            .header("traceparent", PARENT)
            .header("tracestate", STATE)
    };
    produce(&broker.addr(), &http_topic, [traced()]).await;
    produce(&broker.addr(), &grpc_topic, [traced()]).await;

    let http_app = HttpApp::start().await;
    let http_sidecar = start_sidecar(
        &[input_component(
            "in-http",
            &broker.addr(),
            &http_topic,
            &unique("g"),
            &[],
        )],
        |c| c.app_port = Some(http_app.port),
    )
    .await;
    let grpc_app = GrpcApp::builder().list(&["in-grpc"]).start().await;
    let grpc_sidecar = start_sidecar(
        &[input_component(
            "in-grpc",
            &broker.addr(),
            &grpc_topic,
            &unique("g"),
            &[],
        )],
        |c| {
            c.app_port = Some(grpc_app.port);
            c.app_protocol = AppProtocol::Grpc;
        },
    )
    .await;

    wait_cond("the HTTP delivery", Duration::from_secs(60), || {
        http_app.accepted_count() >= 1
    })
    .await;
    wait_cond("the gRPC delivery", Duration::from_secs(60), || {
        grpc_app.log.accepted_count() >= 1
    })
    .await;
    let h = &http_app.accepted()[0];
    assert_eq!(h.header("traceparent"), Some(PARENT));
    assert_eq!(h.header("tracestate"), Some(STATE));
    let g = &grpc_app.log.accepted()[0];
    assert_eq!(g.header("traceparent"), Some(PARENT), "event metadata");
    assert_eq!(g.header("grpc:traceparent"), Some(PARENT), "call metadata");
    http_sidecar.stop().await;
    grpc_sidecar.stop().await;
}
