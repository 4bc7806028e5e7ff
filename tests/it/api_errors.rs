//! Every error the API answers, with its exact HTTP status or gRPC code and
//! Dapr `errorCode`: bad bodies, unknown bindings and operations, oversized
//! requests and API tokens. After each batch the sidecar still serves.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const GOOD: &str = r#"{"data": {"ok": true}, "operation": "create"}"#;

/// Posts `body` and returns the status with the parsed JSON error body.
async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

fn assert_error(got: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    assert_eq!(got.1["errorCode"], code, "{what}: {}", got.1);
}

async fn assert_still_serves(sidecar: &TestSidecar) {
    let got = post(&format!("{}/v1.0/bindings/orders", sidecar.http()), GOOD).await;
    assert_eq!(got.0, 204, "a good request after the errors: {}", got.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400() {
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    for (body, what) in [
        ("{\"data\": 1", "truncated JSON"),
        ("not json at all", "not JSON"),
        ("", "empty body"),
        ("[1, 2, 3]", "a JSON array"),
        ("\"create\"", "a JSON string"),
        ("42", "a JSON number"),
        (
            r#"{"data": 1, "operation": "create", "metadata": {"key": 1}}"#,
            "a metadata value that is a number",
        ),
        (
            r#"{"data": 1, "operation": "create", "metadata": {"key": {"a": "b"}}}"#,
            "a metadata value that is an object",
        ),
        (
            r#"{"data": 1, "operation": "create", "metadata": ["key", "k"]}"#,
            "metadata that is an array",
        ),
        (
            r#"{"data": 1, "operation": 5}"#,
            "an operation that is a number",
        ),
    ] {
        let got = post(&url, body).await;
        assert_error(&got, 400, "ERR_MALFORMED_REQUEST", what);
        let message = got.1["message"].as_str().unwrap();
        assert!(
            message.starts_with("failed deserializing HTTP body:"),
            "{what}: {message}"
        );
    }
    assert_still_serves(&sidecar).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_errors_are_500_with_daprs_messages() {
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let base = format!("{}/v1.0/bindings", sidecar.http());
    let cases = [
        (
            "x",
            GOOD,
            "error invoking output binding x: couldn't find output binding x",
        ),
        (
            "orders",
            r#"{"data": 1, "operation": "delete"}"#,
            "error invoking output binding orders: binding orders does not support operation delete. supported operations:create",
        ),
        (
            "orders",
            r#"{"data": 1}"#,
            "error invoking output binding orders: operation field is missing from request",
        ),
        (
            "orders",
            r#"{"data": 1, "operation": ""}"#,
            "error invoking output binding orders: operation field is missing from request",
        ),
    ];
    for (name, body, message) in cases {
        let got = post(&format!("{base}/{name}"), body).await;
        assert_error(&got, 500, "ERR_INVOKE_OUTPUT_BINDING", body);
        assert_eq!(got.1["message"], message);
    }

    // The same causes over gRPC: INTERNAL with the same message.
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    for (name, operation, message) in [
        (
            "x",
            "create",
            "error invoking output binding x: couldn't find output binding x",
        ),
        (
            "orders",
            "delete",
            "error invoking output binding orders: binding orders does not support operation delete. supported operations:create",
        ),
        (
            "orders",
            "",
            "error invoking output binding orders: operation field is missing from request",
        ),
    ] {
        let status = client
            .invoke_binding(pb::InvokeBindingRequest {
                name: name.into(),
                data: "1".into(),
                metadata: Default::default(),
                operation: operation.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{name}/{operation}");
        assert_eq!(status.message(), message);
    }
    assert_still_serves(&sidecar).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unserved_http_apis_are_501_and_unknown_paths_404() {
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1.0/state/store", sidecar.http()))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 501);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_NOT_IMPLEMENTED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("state management"),
        "{body}"
    );
    let resp = client
        .get(format!("{}/no/such/thing/here", sidecar.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    sidecar.stop().await;
}

/// A body of `size` bytes that is a valid envelope (so only its size is wrong).
fn envelope_of(size: usize) -> String {
    let head = r#"{"operation": "create", "data": ""#;
    let tail = r#""}"#;
    let mut s = String::with_capacity(size);
    s.push_str(head);
    s.extend(std::iter::repeat_n('a', size - head.len() - tail.len()));
    s.push_str(tail);
    s
}

/// Sends `body` with chunked transfer encoding (no content-length) over a raw
/// connection and returns the response status. The writer may be cut off
/// when the server answers early; that is fine.
async fn post_chunked(port: u16, path: &str, body: Vec<u8>) -> u16 {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        // The status line is all we need.
        while !response.windows(2).any(|w| w == b"\r\n") {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no response within 30 s");
    let _ = writer.await;
    let line = String::from_utf8_lossy(&response);
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("status line: {line}"));
    status.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_are_refused() {
    let (broker, topic, sidecar) = orders_setup(|c| c.max_request_bytes = 1 << 20).await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());

    // Under the limit: accepted and produced.
    let small = envelope_of(200 * 1024);
    assert_eq!(post(&url, small.clone()).await.0, 204);

    // Over it, with a content-length.
    let big = envelope_of(2 << 20);
    let got = post(&url, big.clone()).await;
    // As daprd: a 400 with ERR_MALFORMED_REQUEST, in Go's words.
    assert_error(
        &got,
        400,
        "ERR_MALFORMED_REQUEST",
        "2 MB with content-length",
    );
    assert_eq!(
        got.1["message"], "failed deserializing HTTP body: stream too large",
        "{}",
        got.1
    );

    // Over it, chunked, with no content-length to check up front.
    let status = post_chunked(
        sidecar.http_port(),
        "/v1.0/bindings/orders",
        big.into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "2 MB chunked");

    // gRPC: a message over the limit.
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let status = client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "orders".into(),
            data: vec![b'a'; 2 << 20].into(),
            metadata: Default::default(),
            operation: "create".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The same connection and server still serve.
    client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "orders".into(),
            data: "after".into(),
            metadata: Default::default(),
            operation: "create".into(),
        })
        .await
        .expect("a small message after the big one");

    assert_still_serves(&sidecar).await;
    // Only what was accepted is on the topic, in order.
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&broker.addr(), &topic, 3, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let small_data: serde_json::Value = serde_json::from_str(&small).unwrap();
    assert_eq!(records[0].text(), small_data["data"].to_string());
    assert_eq!(records[1].text(), "after");
    assert_eq!(records[2].text(), r#"{"ok":true}"#);
    sidecar.stop().await;
}

/// As daprd's HTTP token check answers: plain text, not Dapr's JSON error shape.
async fn assert_plain_invalid_token(resp: reqwest::Response) {
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; charset=utf-8",
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.text().await.unwrap(), "invalid api token\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_token_guards_http_but_not_health() {
    let (_broker, _topic, sidecar) =
        orders_setup(|c| c.api_token = Some("s3cret-token".into())).await;
    let client = reqwest::Client::new();
    let http = sidecar.http();
    let bindings = format!("{http}/v1.0/bindings/orders");
    for token in [None, Some("wrong"), Some(""), Some("s3cret-token2")] {
        let mut req = client.post(&bindings).body(GOOD);
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "POST binding with token {token:?}");
        assert_plain_invalid_token(resp).await;

        let mut req = client.get(format!("{http}/v1.0/metadata"));
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "GET metadata with token {token:?}");
        assert_plain_invalid_token(resp).await;
    }
    // Nor can an unauthenticated caller stop the sidecar.
    let resp = client
        .post(format!("{http}/v1.0/shutdown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let resp = client.get(format!("{http}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 204, "{path} stays open");
    }

    let resp = client
        .post(&bindings)
        .header("dapr-api-token", "s3cret-token")
        .body(GOOD)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = client
        .get(format!("{http}/v1.0/metadata"))
        .header("dapr-api-token", "s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_token_guards_grpc() {
    let (broker, topic, sidecar) =
        orders_setup(|c| c.api_token = Some("s3cret-token".into())).await;
    let channel = tonic::transport::Endpoint::from_shared(sidecar.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = DaprClient::new(channel);
    let with_token = |token: Option<&str>, message: &str| {
        let mut r = tonic::Request::new(pb::InvokeBindingRequest {
            name: "orders".into(),
            data: message.to_string().into(),
            metadata: Default::default(),
            operation: "create".into(),
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("dapr-api-token", t.parse().unwrap());
        }
        r
    };
    for token in [None, Some("wrong"), Some("s3cret-token2")] {
        let status = client
            .invoke_binding(with_token(token, "refused"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "token {token:?}");
        let status = client
            .get_metadata(pb::GetMetadataRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "GetMetadata");
    }
    client
        .invoke_binding(with_token(Some("s3cret-token"), "accepted"))
        .await
        .expect("the right token is accepted");
    let mut md = tonic::Request::new(pb::GetMetadataRequest {});
    md.metadata_mut()
        .insert("dapr-api-token", "s3cret-token".parse().unwrap());
    client
        .get_metadata(md)
        .await
        .expect("GetMetadata with token");

    // Only the accepted message reached the topic.
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&broker.addr(), &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), "accepted");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn message_bigger_than_the_producer_takes_is_a_clear_500() {
    // 2 MB is under the API limit (4 MB default) but over librdkafka's
    // default message.max.bytes (1 MB).
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let got = post(
        &format!("{}/v1.0/bindings/orders", sidecar.http()),
        envelope_of(2 << 20),
    )
    .await;
    assert_error(&got, 500, "ERR_INVOKE_OUTPUT_BINDING", "2 MB message");
    let message = got.1["message"].as_str().unwrap();
    assert!(
        message.starts_with("error invoking output binding orders: the message is larger than"),
        "{message}"
    );
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let status = client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "orders".into(),
            data: vec![b'a'; 2 << 20].into(),
            metadata: Default::default(),
            operation: "create".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_still_serves(&sidecar).await;
    sidecar.stop().await;
}
