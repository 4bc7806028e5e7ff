//! The official Go SDK (`github.com/dapr/go-sdk` 1.15, programs in tests/go
//! built by scripts/sdk-deps.sh) against outrigger, unchanged:
//! `client.InvokeBinding` over gRPC, and input-binding apps registered with
//! `AddBindingInvocationHandler` on the SDK's gRPC service (`service/grpc`,
//! ListInputBindings + OnBindingEvent) and on its HTTP service
//! (`service/http`, OPTIONS probe + POST with metadata as headers). Records
//! are produced and read back with an independent Kafka client.

use std::process::Command;
use std::time::Duration;

use outrigger::app_channel::AppProtocol;

use crate::support::*;

/// A Go SDK program, found by the environment any Dapr app reads.
fn go_program(name: &str, grpc_port: u16, http_port: u16) -> Command {
    let mut cmd = Command::new(tool(&format!("sdk-go-{name}")));
    clear_dapr_env(&mut cmd)
        .env("DAPR_GRPC_PORT", grpc_port.to_string())
        .env("DAPR_HTTP_PORT", http_port.to_string());
    cmd
}

/// Runs `invoke NAME create DATA METADATA` against the sidecar; returns the
/// process and its one JSON line.
async fn invoke(sidecar: &TestSidecar, args: &[&str]) -> (Proc, std::process::ExitStatus) {
    let mut cmd = go_program("invoke", sidecar.grpc_port(), sidecar.http_port());
    cmd.args(args);
    run_to_end(Proc::spawn("sdk-go invoke", cmd), Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn go_client_invoke_binding_produces_record_with_key_and_headers() {
    let broker = Broker::start();
    let topic = unique("go-orders");
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

    let (app, status) = invoke(
        &sidecar,
        &[
            "sample-topic",
            "create",
            r#"{"orderId":7}"#,
            r#"{"partitionKey":"k7","traceTag":"go-sdk"}"#,
        ],
    )
    .await;
    assert!(
        status.success(),
        "InvokeBinding failed\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "ok", "{}", app.transcript());
    // The Kafka binding answers no data.
    assert_eq!(out["data"], "", "{out}");

    let brokers = broker.addr();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let rec = &records[0];
    // Bytes given to InvokeBinding are the record value as they are.
    assert_eq!(rec.text(), r#"{"orderId":7}"#);
    assert_eq!(rec.key_text().as_deref(), Some("k7"));
    assert_eq!(rec.header("traceTag").as_deref(), Some("go-sdk"));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn go_client_invoke_unknown_binding_returns_the_grpc_error() {
    let broker = Broker::start();
    let sidecar = start_sidecar(
        &[kafka_component(
            "sample-topic",
            &broker.addr(),
            &[("publishTopic", &unique("go-unused"))],
        )],
        |_| {},
    )
    .await;
    let (app, status) = invoke(&sidecar, &["no-such-binding", "create", "{}", "{}"]).await;
    assert_eq!(
        status.code(),
        Some(1),
        "the SDK must fail\n{}",
        app.transcript()
    );
    let out = only_json_line(&app);
    assert_eq!(out["result"], "error");
    // daprd answers INTERNAL here; the contract also allows NOT_FOUND.
    assert!(
        out["code"] == "Internal" || out["code"] == "NotFound",
        "gRPC code: {out}"
    );
    assert_eq!(
        out["message"],
        "error invoking output binding no-such-binding: couldn't find output binding no-such-binding"
    );
    sidecar.stop().await;
}

/// The metadata entry named `name`, ignoring case: Go's HTTP server hands the
/// SDK canonical header names (`Tracetag` for `traceTag`).
fn meta<'a>(event: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    event["metadata"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// A Go SDK app of the given flavour receives each record produced to the
/// input topic once, in order, with its data and its Kafka metadata.
async fn go_service_receives_events(protocol: AppProtocol) {
    const N: usize = 3;
    let broker = Broker::start();
    let topic = unique("go-in");
    let group = unique("go-group");
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
    let program = match protocol {
        AppProtocol::Grpc => "grpcapp",
        AppProtocol::Http => "httpapp",
    };
    let mut cmd = go_program(program, sidecar.grpc_port(), sidecar.http_port());
    cmd.env("APP_PORT", app_port.to_string())
        .arg("sample-topic");
    let mut app = Proc::spawn(&format!("sdk-go {program}"), cmd);
    wait_for("the Go app to listen", Duration::from_secs(30), || {
        assert!(
            app.events("failed").is_empty() && app.exited().is_none(),
            "the app failed to start\n{}",
            app.transcript()
        );
        (!app.events("started").is_empty()).then_some(())
    });

    let http = sidecar.http();
    let status = wait_until(
        "the sidecar to consume the binding for the app",
        Duration::from_secs(30),
        || {
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

    produce(
        &broker.addr(),
        &topic,
        (0..N).map(|i| {
            Msg::new(format!(r#"{{"n":{i}}}"#))
                .key(&format!("k{i}"))
                .header("traceTag", &format!("t{i}"))
        }),
    )
    .await;
    wait_until(
        &format!("{N} events at the Go app"),
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

    let events = app.events("binding");
    assert_eq!(events.len(), N, "each event once\n{}", app.transcript());
    for (i, e) in events.iter().enumerate() {
        let ctx = format!("event {i}: {e}");
        assert_eq!(e["name"], "sample-topic", "{ctx}");
        assert_eq!(e["data"], format!(r#"{{"n":{i}}}"#), "{ctx}");
        assert_eq!(meta(e, "__key"), Some(format!("k{i}").as_str()), "{ctx}");
        assert_eq!(meta(e, "__topic"), Some(topic.as_str()), "{ctx}");
        assert_eq!(meta(e, "__partition"), Some("0"), "{ctx}");
        assert_eq!(meta(e, "__offset"), Some(i.to_string().as_str()), "{ctx}");
        let ts = meta(e, "__timestamp").unwrap_or_default();
        assert!(
            ts.parse::<u64>().is_ok_and(|ms| ms > 1_600_000_000_000),
            "__timestamp in milliseconds: {ctx}"
        );
        assert_eq!(meta(e, "traceTag"), Some(format!("t{i}").as_str()), "{ctx}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn go_grpc_service_receives_events_with_data_and_metadata() {
    go_service_receives_events(AppProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn go_http_service_receives_events_with_data_and_metadata() {
    go_service_receives_events(AppProtocol::Http).await;
}
