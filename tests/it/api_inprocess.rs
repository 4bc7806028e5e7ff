//! The HTTP and gRPC APIs over fake output bindings, in this process and
//! without a broker: the HTTP router is called with `tower::ServiceExt::oneshot`
//! (no socket), the gRPC server serves a loopback listener on port 0. Answers
//! and error codes are daprd's (see api_errors.rs for the same against Kafka).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tower::ServiceExt;

use outrigger::api::ApiState;
use outrigger::api::http::ServerLimits;
use outrigger::bindings::BindingError;
use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(10);
const GOOD: &str =
    r#"{"data": {"orderId": 7}, "operation": "create", "metadata": {"partitionKey": "k7"}}"#;

/// An answer of the HTTP router: status, headers, body parsed as JSON when it is.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn assert_error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(body["errorCode"], code, "{body}");
        body
    }
}

fn post(path: &str, body: &str) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn call(state: &Arc<ApiState>, request: http::Request<Body>) -> Answer {
    let response = outrigger::api::http::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn http_create_reaches_the_binding_and_answers_204() {
    let orders = FakeOutput::ok();
    let state = api_state(&[("orders", orders.clone())], |_| {});
    let got = call(&state, post("/v1.0/bindings/orders", GOOD)).await;
    assert_eq!(got.status, 204, "{:?}", got.body);
    assert!(got.body.is_empty());
    let calls = orders.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "create");
    assert_eq!(
        &calls[0].data[..],
        br#"{"orderId":7}"#,
        "data as compact JSON"
    );
    assert_eq!(calls[0].metadata["partitionKey"], "k7");
    // As daprd, a call without a trace context gets a new, unsampled one.
    let tp = &calls[0].metadata["traceparent"];
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    // PUT is the same call.
    let mut put = post("/v1.0/bindings/orders", GOOD);
    *put.method_mut() = http::Method::PUT;
    assert_eq!(call(&state, put).await.status, 204);
    assert_eq!(orders.calls().len(), 2);
}

#[tokio::test]
async fn http_response_data_is_200_with_metadata_headers() {
    let orders = FakeOutput::scripted(|_| Reply::Ok(fake_response("stored", &[("where", "here")])));
    let state = api_state(&[("orders", orders)], |_| {});
    let got = call(&state, post("/v1.0/bindings/orders", GOOD)).await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"stored");
    assert_eq!(got.headers["metadata.where"], "here");
}

#[tokio::test]
async fn http_malformed_bodies_are_400_and_never_reach_the_binding() {
    let orders = FakeOutput::ok();
    let state = api_state(&[("orders", orders.clone())], |_| {});
    for body in [
        "{\"data\": 1",
        "not json",
        "",
        "[1]",
        r#"{"data": 1, "operation": 5}"#,
    ] {
        let got = call(&state, post("/v1.0/bindings/orders", body)).await;
        let json = got.assert_error(400, "ERR_MALFORMED_REQUEST");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .starts_with("failed deserializing HTTP body:"),
            "{body:?}: {json}"
        );
    }
    assert!(orders.calls().is_empty());
}

#[tokio::test]
async fn http_unknown_binding_and_operation_are_500_as_daprd_answers() {
    let orders = FakeOutput::ok();
    let state = api_state(&[("orders", orders.clone())], |_| {});
    // daprd answers an unknown binding 500 ERR_INVOKE_OUTPUT_BINDING, not 404.
    let got = call(&state, post("/v1.0/bindings/nope", GOOD)).await;
    let json = got.assert_error(500, "ERR_INVOKE_OUTPUT_BINDING");
    assert_eq!(
        json["message"],
        "error invoking output binding nope: couldn't find output binding nope"
    );
    let got = call(
        &state,
        post(
            "/v1.0/bindings/orders",
            r#"{"data": 1, "operation": "delete"}"#,
        ),
    )
    .await;
    let json = got.assert_error(500, "ERR_INVOKE_OUTPUT_BINDING");
    assert_eq!(
        json["message"],
        "error invoking output binding orders: binding orders does not support operation delete. supported operations:create"
    );
    let got = call(&state, post("/v1.0/bindings/orders", r#"{"data": 1}"#)).await;
    let json = got.assert_error(500, "ERR_INVOKE_OUTPUT_BINDING");
    assert_eq!(
        json["message"],
        "error invoking output binding orders: operation field is missing from request"
    );
    assert!(orders.calls().is_empty(), "checked before the binding");
    // Paths that are not a binding call: daprd's 404 ERR_DIRECT_INVOKE catch-all.
    let got = call(&state, post("/v1.0/bindings", GOOD)).await;
    assert_eq!(got.status, 404, "{}", got.json());
}

#[tokio::test]
async fn http_binding_failure_is_500_err_invoke_output_binding() {
    let orders =
        FakeOutput::scripted(|_| Reply::Fail(BindingError::Rejected("the broker said no".into())));
    let state = api_state(&[("orders", orders.clone())], |_| {});
    let got = call(&state, post("/v1.0/bindings/orders", GOOD)).await;
    let json = got.assert_error(500, "ERR_INVOKE_OUTPUT_BINDING");
    assert_eq!(
        json["message"],
        "error invoking output binding orders: the broker said no"
    );
    assert_eq!(orders.calls().len(), 1);
    // The failure counts in the binding's metrics.
    let text = state.metrics.render();
    let failed = text
        .lines()
        .find(|l| {
            l.starts_with("dapr_component_output_binding_count")
                && l.contains("orders")
                && l.contains("success=\"false\"")
        })
        .unwrap_or_else(|| panic!("no failure series:\n{text}"));
    assert!(failed.ends_with(" 1"), "{failed}");
}

#[tokio::test]
async fn http_api_token_is_required_when_set() {
    let orders = FakeOutput::ok();
    let state = api_state(&[("orders", orders.clone())], |o| {
        o.token = Some("s3cret".into())
    });
    let got = call(&state, post("/v1.0/bindings/orders", GOOD)).await;
    assert_eq!(got.status, 401);
    let mut with = post("/v1.0/bindings/orders", GOOD);
    with.headers_mut()
        .insert("dapr-api-token", "s3cret".parse().unwrap());
    assert_eq!(call(&state, with).await.status, 204);
    // Health stays open, as daprd's.
    let health = http::Request::builder()
        .uri("/v1.0/healthz")
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&state, health).await.status, 204);
    assert_eq!(orders.calls().len(), 1);
    assert!(!orders.calls()[0].metadata.contains_key("dapr-api-token"));
}

/// Calls whose `data` is `"hang"` never get an answer from the binding.
fn hangs_on_request() -> Arc<FakeOutput> {
    FakeOutput::scripted(|r| {
        if &r.data[..] == b"\"hang\"" {
            Reply::Hang
        } else {
            Reply::Ok(Default::default())
        }
    })
}

const HANG: &str = r#"{"data": "hang", "operation": "create"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn http_calls_past_the_in_flight_cap_are_429_until_a_slot_frees() {
    let orders = hangs_on_request();
    let state = api_state(&[("orders", orders.clone())], |o| o.max_in_flight = 1);
    let held = tokio::spawn({
        let state = state.clone();
        async move { call(&state, post("/v1.0/bindings/orders", HANG)).await }
    });
    wait_cond("the first call to hold the slot", DEADLINE, || {
        orders.in_flight() == 1
    })
    .await;
    let got = call(&state, post("/v1.0/bindings/orders", GOOD)).await;
    let json = got.assert_error(429, "ERR_TOO_MANY_REQUESTS");
    assert!(
        json["message"].as_str().unwrap().contains("at most 1"),
        "{json}"
    );
    assert_eq!(orders.calls().len(), 1, "refused before the binding");
    // The caller that held the slot gives up: the slot is free again.
    held.abort();
    wait_cond("the held call to end", DEADLINE, || orders.in_flight() == 0).await;
    assert_eq!(
        call(&state, post("/v1.0/bindings/orders", GOOD))
            .await
            .status,
        204
    );
}

/// The gRPC API of `state` on a loopback listener (port 0), until the token is cancelled.
async fn grpc_server(
    state: &Arc<ApiState>,
) -> (DaprClient<tonic::transport::Channel>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let limits = ServerLimits::default();
    tokio::spawn(outrigger::api::grpc::serve(
        state.clone(),
        listener,
        stop.clone(),
        limits,
        Arc::new(Semaphore::new(limits.max_connections)),
    ));
    let client = DaprClient::connect(format!("http://{addr}")).await.unwrap();
    (client, stop)
}

fn invoke(name: &str, operation: &str, data: &str) -> pb::InvokeBindingRequest {
    pb::InvokeBindingRequest {
        name: name.into(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        metadata: [("partitionKey".to_string(), "k".to_string())].into(),
        operation: operation.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_invoke_binding_answers_and_errors_as_daprd() {
    let failing =
        FakeOutput::scripted(|_| Reply::Fail(BindingError::Timeout(Duration::from_secs(5))));
    let orders = FakeOutput::ok();
    let state = api_state(
        &[("orders", orders.clone()), ("failing", failing.clone())],
        |_| {},
    );
    let (mut client, stop) = grpc_server(&state).await;

    let reply = client
        .invoke_binding(invoke("orders", "create", "payload"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.data.is_empty() && reply.metadata.is_empty(),
        "{reply:?}"
    );
    let calls = orders.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(&calls[0].data[..], b"payload");
    assert_eq!(calls[0].metadata["partitionKey"], "k");

    for (name, operation, message) in [
        (
            "nope",
            "create",
            "error invoking output binding nope: couldn't find output binding nope",
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
        (
            "failing",
            "create",
            "error invoking output binding failing: no acknowledgement from the broker within 5s; the message may or may not have been written",
        ),
    ] {
        let status = client
            .invoke_binding(invoke(name, operation, "x"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Internal,
            "{name}/{operation}: {status:?}"
        );
        assert_eq!(status.message(), message);
    }
    assert_eq!(orders.calls().len(), 1, "only the good call reached orders");
    assert_eq!(failing.calls().len(), 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_share_the_in_flight_cap() {
    let orders = hangs_on_request();
    let state = api_state(&[("orders", orders.clone())], |o| o.max_in_flight = 1);
    let (mut client, stop) = grpc_server(&state).await;

    // An HTTP call holds the one slot: gRPC is refused at once.
    let held = tokio::spawn({
        let state = state.clone();
        async move { call(&state, post("/v1.0/bindings/orders", HANG)).await }
    });
    wait_cond("the HTTP call to hold the slot", DEADLINE, || {
        orders.in_flight() == 1
    })
    .await;
    let status = client
        .invoke_binding(invoke("orders", "create", "\"x\""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many output binding calls"),
        "{status:?}"
    );
    held.abort();
    wait_cond("the HTTP call to end", DEADLINE, || orders.in_flight() == 0).await;

    // Now a gRPC call holds it: HTTP is refused; its caller gives up, and it is free.
    let mut hanging = client.clone();
    let grpc_held = tokio::spawn(async move {
        hanging
            .invoke_binding(invoke("orders", "create", "\"hang\""))
            .await
    });
    wait_cond("the gRPC call to hold the slot", DEADLINE, || {
        orders.in_flight() == 1
    })
    .await;
    call(&state, post("/v1.0/bindings/orders", GOOD))
        .await
        .assert_error(429, "ERR_TOO_MANY_REQUESTS");
    grpc_held.abort();
    wait_cond("the gRPC call to end", DEADLINE, || orders.in_flight() == 0).await;
    client
        .invoke_binding(invoke("orders", "create", "\"x\""))
        .await
        .unwrap();
    stop.cancel();
}
