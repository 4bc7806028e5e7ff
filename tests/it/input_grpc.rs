//! Kafka input bindings delivered to a gRPC app (`AppCallback`): the names the
//! app lists decide what is consumed (exact or lower-cased, as the Node SDK
//! lists them), events carry data and metadata, and a reply naming output
//! bindings in `to` is produced to them.

use std::time::Duration;

use outrigger::proto::runtime::v1::BindingEventResponse;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn listed_names_decide_what_is_consumed() {
    let broker = Broker::start();
    let (t_exact, t_lower, t_unlisted) = (unique("exact"), unique("lower"), unique("unlisted"));
    for t in [&t_exact, &t_lower, &t_unlisted] {
        broker.create_topic(t, 1);
    }
    // Python lists names as registered, Node lower-cases them.
    let app = GrpcApp::builder()
        .list(&["ExactOrders", "nodeorders"])
        .start()
        .await;
    let group = unique("group");
    let components = [
        input_component("ExactOrders", &broker.addr(), &t_exact, &group, &[]),
        input_component("NodeOrders", &broker.addr(), &t_lower, &group, &[]),
        input_component("Unlisted", &broker.addr(), &t_unlisted, &group, &[]),
    ];
    produce(
        &broker.addr(),
        &t_exact,
        [Msg::new(r#"{"n":1}"#)
            .key("k1")
            .timestamp(1_700_000_000_456)
            .header("Trace-Id", "t-1")],
    )
    .await;
    produce(&broker.addr(), &t_lower, [Msg::new("lower")]).await;
    produce(&broker.addr(), &t_unlisted, [Msg::new("unlisted")]).await;
    let sidecar = start_sidecar(&components, |c| {
        c.app_port = Some(app.port);
        c.app_protocol = outrigger::app_channel::AppProtocol::Grpc;
    })
    .await;

    wait_cond("deliveries to both listed bindings", DEADLINE, || {
        !app.accepted_to("ExactOrders").is_empty() && !app.accepted_to("nodeorders").is_empty()
    })
    .await;
    wait_input_state(&sidecar.http(), "Unlisted", "not served by app", DEADLINE).await;

    let exact = &app.accepted_to("ExactOrders")[0];
    assert_eq!(&exact.body[..], br#"{"n":1}"#);
    // daprd's event metadata: `__key`, `__topic`, `__partition`, `__offset`,
    // `__timestamp`, then the record headers, names as they are.
    assert_eq!(exact.header("__topic"), Some(t_exact.as_str()));
    assert_eq!(exact.header("__key"), Some("k1"));
    assert_eq!(exact.header("__partition"), Some("0"));
    assert_eq!(exact.header("__offset"), Some("0"));
    assert_eq!(exact.header("__timestamp"), Some("1700000000456"));
    assert_eq!(exact.header("Trace-Id"), Some("t-1"));
    // Those six in the event; the call's own metadata (kept under `grpc:`) has a traceparent.
    let event_md = exact.headers.keys().filter(|k| !k.starts_with("grpc:"));
    assert_eq!(event_md.count(), 6, "{:?}", exact.headers);
    assert!(
        exact.header("grpc:traceparent").is_some(),
        "{:?}",
        exact.headers
    );
    assert_eq!(
        app.accepted_to("nodeorders")[0].header("__key"),
        None,
        "a record without a key has no __key"
    );
    // The event carries the name the app listed, not the component's spelling.
    assert_eq!(app.accepted_to("nodeorders")[0].text(), "lower");
    assert!(
        app.deliveries("NodeOrders").is_empty(),
        "{:#?}",
        app.calls()
    );
    assert!(
        app.calls().iter().all(|c| c.text() != "unlisted"),
        "a binding the app does not list is not consumed"
    );
    assert_eq!(app.calls_to("ListInputBindings", "").len(), 1, "asked once");
    for name in ["ExactOrders", "NodeOrders"] {
        let s = input_status(&sidecar.http(), name).await;
        assert_eq!(s["state"], "subscribed", "{name}: {s}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_to_output_binding_is_produced() {
    let broker = Broker::start();
    let (t_in, t_out) = (unique("in"), unique("out"));
    broker.create_topic(&t_in, 1);
    broker.create_topic(&t_out, 1);
    let app = GrpcApp::builder()
        .list(&["incoming"])
        .script(|call| {
            Ok(BindingEventResponse {
                to: vec!["outgoing".into()],
                data: format!("seen {}", call.text()).into(),
                ..Default::default()
            })
        })
        .start()
        .await;
    let components = [
        input_component("incoming", &broker.addr(), &t_in, &unique("group"), &[]),
        kafka_component(
            "outgoing",
            &broker.addr(),
            &[("publishTopic", &t_out), ("direction", "output")],
        ),
    ];
    let sidecar = start_sidecar(&components, |c| {
        c.app_port = Some(app.port);
        c.app_protocol = outrigger::app_channel::AppProtocol::Grpc;
    })
    .await;
    produce(&broker.addr(), &t_in, [Msg::new("order-7")]).await;

    let records = read_back(broker.addr(), t_out, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].text(), "seen order-7");
    assert_eq!(app.accepted_to("incoming").len(), 1);
    let http = sidecar.http();
    wait_until("the event counted as delivered", DEADLINE, || async {
        (input_status(&http, "incoming").await["delivered"] == 1).then_some(())
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_event_is_retried_in_order() {
    let broker = Broker::start();
    let topic = unique("grpc-retry");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(4, 1)).await;
    // Python's App answers UNKNOWN when the handler raises, Node's INTERNAL.
    let app = GrpcApp::builder()
        .list(&["flaky"])
        .script(|c| match (c.offset(), c.attempt) {
            (Some(1), 1) => Err(tonic::Status::unknown("handler raised")),
            (Some(1), 2) => Err(tonic::Status::internal("callback threw")),
            _ => Ok(BindingEventResponse::default()),
        })
        .start()
        .await;
    let component = input_component("flaky", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| {
        c.app_port = Some(app.port);
        c.app_protocol = outrigger::app_channel::AppProtocol::Grpc;
    })
    .await;

    wait_cond("4 deliveries", DEADLINE, || app.accepted_count() >= 4).await;
    assert_eq!(app.accepted_offsets(), vec![0, 1, 2, 3]);
    let tries: Vec<usize> = app
        .deliveries("flaky")
        .iter()
        .filter(|c| c.offset() == Some(1))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2, 3]);
    let s = input_status(&sidecar.http(), "flaky").await;
    assert_eq!(s["failedAttempts"], 2, "{s}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn event_the_app_never_answers_times_out_and_is_retried() {
    let broker = Broker::start();
    let topic = unique("grpc-hung");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = GrpcApp::builder()
        .list(&["stalled"])
        .hang_if(|c| c.offset() == Some(1) && c.attempt == 1)
        .start()
        .await;
    let component = input_component("stalled", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| {
        c.app_port = Some(app.port);
        c.app_protocol = outrigger::app_channel::AppProtocol::Grpc;
        c.app_request_timeout = Duration::from_secs(1);
    })
    .await;

    wait_cond("3 deliveries", DEADLINE, || app.accepted_count() >= 3).await;
    assert_eq!(app.accepted_offsets(), vec![0, 1, 2]);
    let tries: Vec<usize> = app
        .deliveries("stalled")
        .iter()
        .filter(|c| c.offset() == Some(1))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2], "timed out once, then delivered");
    sidecar.stop().await;
}
