//! grpcurl (1.8.6, which speaks reflection v1alpha only) against the sidecar:
//! listing and describing through server reflection, and an InvokeBinding
//! call from JSON (an empty reply, as daprd's; grpc-go's call metadata as record
//! headers), with and without the API token (which never becomes a header).

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::output_http::header_names;
use crate::support::*;

/// Runs grpcurl with `args` against `port` (the address goes before the method).
async fn grpcurl(port: u16, before: &[&str], after: &[&str]) -> Output {
    let mut cmd = Command::new(tool("grpcurl"));
    cmd.args(["-plaintext", "-max-time", "30"])
        .args(before)
        .arg(format!("127.0.0.1:{port}"))
        .args(after);
    tokio::task::spawn_blocking(move || cmd.output().expect("run grpcurl"))
        .await
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `{"orderId":7}` in base64, as protobuf's JSON mapping writes `bytes`.
const DATA_B64: &str = "eyJvcmRlcklkIjo3fQ==";
const DATA: &str = r#"{"orderId":7}"#;

/// As daprd: grpc-go's call metadata becomes record headers (`:authority` as
/// `dapr-authority`, `grpc-*` entries with a `dapr-` prefix), with a new traceparent.
fn assert_grpcurl_call_headers(r: &Record, port: u16) {
    crate::output_grpc::assert_call_headers_of(r, port, "grpcurl/");
}

fn invoke_json() -> String {
    format!(
        r#"{{"name": "orders", "operation": "create", "data": "{DATA_B64}", "metadata": {{"partitionKey": "k"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_describe_through_reflection() {
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let port = sidecar.grpc_port();

    let out = grpcurl(port, &[], &["list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let services: Vec<&str> = stdout.lines().map(str::trim).collect();
    for wanted in [
        "dapr.proto.runtime.v1.Dapr",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&wanted), "{wanted} in {services:?}");
    }
    // The app-side services share the descriptors but are not served here.
    assert!(
        !services.iter().any(|s| s.contains("AppCallback")),
        "{services:?}"
    );

    let out = grpcurl(port, &[], &["list", "dapr.proto.runtime.v1.Dapr"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for rpc in ["InvokeBinding", "GetMetadata", "SetMetadata", "Shutdown"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim() == format!("dapr.proto.runtime.v1.Dapr.{rpc}")),
            "{rpc} in {stdout}"
        );
    }

    let out = grpcurl(port, &[], &["describe", "dapr.proto.runtime.v1.Dapr"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("is a service"), "{stdout}");
    assert!(
        stdout.contains(
            "rpc InvokeBinding ( .dapr.proto.runtime.v1.InvokeBindingRequest ) returns ( .dapr.proto.runtime.v1.InvokeBindingResponse )"
        ),
        "{stdout}"
    );

    let out = grpcurl(
        port,
        &[],
        &["describe", "dapr.proto.runtime.v1.InvokeBindingRequest"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for field in [
        "string name = 1;",
        "bytes data = 2;",
        "map<string, string> metadata = 3;",
        "string operation = 4;",
    ] {
        assert!(stdout.contains(field), "{field} in {stdout}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_binding_from_json() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;
    let port = sidecar.grpc_port();
    let body = invoke_json();
    let out = grpcurl(
        port,
        &["-H", "x-from: grpcurl", "-d", &body],
        &["dapr.proto.runtime.v1.Dapr/InvokeBinding"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let reply: Value = serde_json::from_str(&stdout).expect("grpcurl prints the reply as JSON");
    // As daprd: an empty InvokeBindingResponse (no data, no metadata).
    assert_eq!(reply, serde_json::json!({}), "{stdout}");

    let out = grpcurl(port, &[], &["dapr.proto.runtime.v1.Dapr/GetMetadata"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let md: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(md["registeredComponents"][0]["name"], "orders", "{md}");

    // An unknown binding: grpcurl reports the status and exits non-zero.
    let out = grpcurl(
        port,
        &["-d", r#"{"name": "nope", "operation": "create"}"#],
        &["dapr.proto.runtime.v1.Dapr/InvokeBinding"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("Code: Internal"), "{stderr}");
    assert!(
        stderr.contains("couldn't find output binding nope"),
        "{stderr}"
    );

    let records = tokio::task::spawn_blocking(move || {
        read_topic(&broker.addr(), &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), DATA);
    assert_eq!(records[0].key_text().as_deref(), Some("k"));
    assert_eq!(records[0].header("partitionKey").as_deref(), Some("k"));
    // A custom call metadata entry (`-H`) is a header too.
    assert_eq!(records[0].header("x-from").as_deref(), Some("grpcurl"));
    assert_grpcurl_call_headers(&records[0], port);
    assert_eq!(
        header_names(&records[0]),
        [
            "content-type",
            "dapr-authority",
            "partitionKey",
            "traceparent",
            "user-agent",
            "x-from"
        ]
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_token_with_grpcurl() {
    let (broker, topic, sidecar) = orders_setup(|c| c.api_token = Some("t".into())).await;
    let port = sidecar.grpc_port();
    let body = invoke_json();

    // Without the header: reflection and the call are refused.
    let out = grpcurl(port, &[], &["list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let out = grpcurl(
        port,
        &["-d", &body],
        &["dapr.proto.runtime.v1.Dapr/InvokeBinding"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    // With a wrong token, the call itself is refused (reflection given the right one).
    let out = grpcurl(
        port,
        &[
            "-reflect-header",
            "dapr-api-token: t",
            "-rpc-header",
            "dapr-api-token: wrong",
            "-d",
            &body,
        ],
        &["dapr.proto.runtime.v1.Dapr/InvokeBinding"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("Code: Unauthenticated"), "{stderr}");

    let out = grpcurl(
        port,
        &["-H", "dapr-api-token: t", "-d", &body],
        &["dapr.proto.runtime.v1.Dapr/InvokeBinding"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");

    let records = tokio::task::spawn_blocking(move || {
        read_topic(&broker.addr(), &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), DATA);
    // The token authorised the call, but unlike the rest of the call metadata it
    // is not written to the topic.
    assert_grpcurl_call_headers(&records[0], port);
    assert_eq!(
        header_names(&records[0]),
        [
            "content-type",
            "dapr-authority",
            "partitionKey",
            "traceparent",
            "user-agent"
        ],
        "no dapr-api-token"
    );
    sidecar.stop().await;
}
