//! Output bindings and the other served rpcs through the gRPC API (key and
//! headers from request and call metadata, never the API token, FNV-1a
//! partitions, empty data as a null value, an empty reply as daprd's), with the
//! generated tonic client, a raw tonic client for rpcs we do not serve, and a
//! bare HTTP/2 client for the `application/grpc+proto` content type.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::Code;

use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::output_http::{header_names, new_traceparent, traceparent};
use crate::support::*;

/// As daprd, a successful InvokeBinding answers an empty response: no data, and
/// no metadata naming the record's topic, partition or offset.
fn assert_empty_reply(reply: &pb::InvokeBindingResponse) {
    assert!(reply.data.is_empty(), "{reply:?}");
    assert!(reply.metadata.is_empty(), "{reply:?}");
}

/// Checks the headers of a record written through the generated tonic client at
/// `port`: as daprd, the request's metadata (`request`), plus every call
/// metadata entry (`:authority` as `dapr-authority`) and a new traceparent.
fn assert_tonic_call_headers(r: &Record, port: u16, request: &[&str]) {
    assert_call_headers_of(r, port, "tonic/");
    let mut want: Vec<&str> = request.to_vec();
    want.extend(TONIC_CALL_HEADERS);
    want.sort_unstable();
    assert_eq!(header_names(r), want, "{:?}", r.headers);
}

/// The call metadata every gRPC client sends, as daprd writes it to the record:
/// `content-type`, `:authority` as `dapr-authority`, the client's `user-agent`
/// (starting with `agent`), and a new traceparent.
pub fn assert_call_headers_of(r: &Record, port: u16, agent: &str) {
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(
        r.header("dapr-authority"),
        Some(format!("127.0.0.1:{port}")),
        "{:?}",
        r.headers
    );
    let got = r.header("user-agent").unwrap_or_default();
    assert!(got.starts_with(agent), "user-agent {got:?}");
    new_traceparent(r);
}

/// The call metadata a tonic client sends that ends up as record headers
/// (`te` and `grpc-timeout` stay out, as grpc-go keeps them from daprd), and the
/// traceparent every write carries.
const TONIC_CALL_HEADERS: [&str; 4] = [
    "content-type",
    "dapr-authority",
    "traceparent",
    "user-agent",
];

fn invoke(name: &str, data: &[u8], metadata: &[(&str, &str)]) -> pb::InvokeBindingRequest {
    pb::InvokeBindingRequest {
        name: name.into(),
        data: Bytes::copy_from_slice(data),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        operation: "create".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_binding_round_trip() {
    let (broker, topic, sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let port = sidecar.grpc_port();
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();

    let first = client
        .invoke_binding(invoke(
            "orders",
            br#"{"orderId":1}"#,
            &[
                ("partitionKey", "k1"),
                ("key", "not-the-key"),
                ("trace", "abc"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&first);

    // gRPC data is raw bytes: not JSON, not even UTF-8, passed through as is.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let second = client
        .invoke_binding(invoke("orders", &binary, &[("partitionKey", "pk")]))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&second);
    let third = client
        .invoke_binding(invoke("orders", b"3", &[("__key", "uk")]))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&third);

    // One partition, one call after the other: the records are in call order.
    let r = read_back(broker.addr(), topic, 3).await;
    assert_eq!(r[0].text(), r#"{"orderId":1}"#);
    assert_eq!(r[0].key_text().as_deref(), Some("k1"));
    // As daprd: `key` is only a header; every entry is a header, the key's too.
    assert_eq!(r[0].header("trace").as_deref(), Some("abc"));
    assert_eq!(r[0].header("key").as_deref(), Some("not-the-key"));
    assert_eq!(r[0].header("partitionKey").as_deref(), Some("k1"));
    assert_tonic_call_headers(&r[0], port, &["key", "partitionKey", "trace"]);
    assert_eq!(r[1].payload, binary);
    assert_eq!(r[1].key_text().as_deref(), Some("pk"));
    assert_eq!(r[1].header("partitionKey").as_deref(), Some("pk"));
    assert_tonic_call_headers(&r[1], port, &["partitionKey"]);
    assert_eq!(r[2].text(), "3");
    assert_eq!(r[2].key_text().as_deref(), Some("uk"));
    assert_eq!(r[2].header("__key").as_deref(), Some("uk"));
    assert_tonic_call_headers(&r[2], port, &["__key"]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn call_metadata_becomes_headers_but_never_the_api_token() {
    let broker = Broker::start();
    let topic = unique("grpc-callmd");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |c| c.api_token = Some("grpc-secret".into()),
    )
    .await;
    let port = sidecar.grpc_port();
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let call = |data: &[u8], metadata: &[(&str, &str)], call_md: &[(&'static str, &str)]| {
        let mut request = tonic::Request::new(invoke("orders", data, metadata));
        request
            .metadata_mut()
            .insert("dapr-api-token", "grpc-secret".parse().unwrap());
        for (k, v) in call_md {
            request.metadata_mut().insert(*k, v.parse().unwrap());
        }
        request
    };
    // A custom entry becomes a header; the request's own entry of the same name
    // wins; the caller's trace context is the record's.
    let reply = client
        .invoke_binding(call(
            b"1",
            &[("source", "request")],
            &[
                ("x-call", "yes"),
                ("source", "call"),
                ("traceparent", caller),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&reply);
    let reply = client
        .invoke_binding(call(b"2", &[], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&reply);

    let r = read_back(broker.addr(), topic, 2).await;
    assert_eq!(r[0].text(), "1");
    assert_eq!(r[0].header("x-call").as_deref(), Some("yes"));
    assert_eq!(r[0].header("source").as_deref(), Some("request"));
    assert_eq!(traceparent(&r[0]), caller);
    assert_eq!(r[1].text(), "2");
    assert_tonic_call_headers(&r[1], port, &[]);
    for record in &r {
        // The token authorised the call; it must not be written to the topic.
        assert_eq!(
            record.header("dapr-api-token"),
            None,
            "{:?}",
            record.headers
        );
        assert!(
            !record.headers.values().any(|v| v == b"grpc-secret"),
            "{:?}",
            record.headers
        );
    }
    let mut want = vec!["source", "x-call"];
    want.extend(TONIC_CALL_HEADERS);
    want.sort_unstable();
    assert_eq!(header_names(&r[0]), want, "{:?}", r[0].headers);
    sidecar.stop().await;
}

/// A record's key and value; `None` is null, not empty.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The first `n` records of partition 0 of `topic`, telling a null value from an empty one.
pub(crate) fn read_values(brokers: &str, topic: &str, n: usize) -> Vec<KeyValue> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message as _;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    wait_for(
        &format!("{n} records of {topic}"),
        Duration::from_secs(30),
        || {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
            }
            (out.len() >= n).then_some(())
        },
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_data_writes_a_null_value() {
    let (broker, topic, sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    // A tombstone, as daprd's client writes for an empty payload: key, no value.
    let reply = client
        .invoke_binding(invoke("orders", b"", &[("partitionKey", "gone")]))
        .await
        .unwrap()
        .into_inner();
    assert_empty_reply(&reply);
    client
        .invoke_binding(invoke("orders", b"x", &[]))
        .await
        .unwrap();
    // Over HTTP a missing `data` is a tombstone too, as daprd writes it.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .body(r#"{"operation": "create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let (brokers, t) = (broker.addr(), topic.clone());
    let got = tokio::task::spawn_blocking(move || read_values(&brokers, &t, 3))
        .await
        .unwrap();
    assert_eq!(got[0], (Some(b"gone".to_vec()), None), "a null value");
    assert_eq!(got[1], (None, Some(b"x".to_vec())));
    assert_eq!(got[2], (None, None), "a null value, not the text `null`");
    sidecar.stop().await;
}

/// Without `producerLinger`, a call alone in flight goes out through a producer
/// that sends at once and overlapping calls through the lingering one: every
/// record lands, and a call made after others were answered is written after
/// them, whichever producer each took.
#[tokio::test(flavor = "multi_thread")]
async fn lone_and_overlapping_calls_all_land_in_answer_order() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;
    let client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    const ROUNDS: usize = 4;
    const OVERLAPPING: usize = 32;
    for round in 0..ROUNDS {
        let lone = format!("lone-{round}");
        let reply = client
            .clone()
            .invoke_binding(invoke("orders", lone.as_bytes(), &[]))
            .await;
        assert_empty_reply(&reply.unwrap().into_inner());
        let calls: Vec<_> = (0..OVERLAPPING)
            .map(|i| {
                let mut c = client.clone();
                let data = format!("batch-{round}-{i}");
                tokio::spawn(async move {
                    c.invoke_binding(invoke("orders", data.as_bytes(), &[]))
                        .await
                })
            })
            .collect();
        for call in calls {
            assert_empty_reply(&call.await.unwrap().unwrap().into_inner());
        }
    }
    let records = read_back(broker.addr(), topic, ROUNDS * (OVERLAPPING + 1)).await;
    let texts: Vec<String> = records.iter().map(|r| r.text()).collect();
    for round in 0..ROUNDS {
        let at = texts
            .iter()
            .position(|t| *t == format!("lone-{round}"))
            .unwrap_or_else(|| panic!("lone-{round} missing: {texts:?}"));
        // The partition holds the rounds in order: round r's lone call, then its batch.
        let start = round * (OVERLAPPING + 1);
        assert_eq!(at, start, "{texts:?}");
        let mut batch: Vec<&String> = texts[start + 1..start + 1 + OVERLAPPING].iter().collect();
        batch.sort();
        let mut want: Vec<String> = (0..OVERLAPPING)
            .map(|i| format!("batch-{round}-{i}"))
            .collect();
        want.sort();
        assert_eq!(batch, want.iter().collect::<Vec<_>>(), "round {round}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_pick_the_fnv1a_partition_over_grpc() {
    let broker = Broker::start();
    let topic = unique("grpc-fnv");
    broker.create_topic(&topic, 3);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[
                ("publishTopic", &topic),
                ("excludeHeaderMetaRegex", "^x-internal-"),
            ],
        )],
        |_| {},
    )
    .await;
    let port = sidecar.grpc_port();
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let keys = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "customer-4",
        "customer-5",
    ];
    for key in keys {
        let mut request = tonic::Request::new(invoke(
            "orders",
            key.as_bytes(),
            &[
                ("partitionKey", key),
                ("x-internal-id", "7"),
                ("kept", "yes"),
            ],
        ));
        // Call metadata joins the request metadata, so the regex applies to it too.
        request
            .metadata_mut()
            .insert("x-internal-call", "8".parse().unwrap());
        let reply = client.invoke_binding(request).await.unwrap().into_inner();
        assert_empty_reply(&reply);
    }
    let records = read_back(broker.addr(), topic, keys.len()).await;
    for key in keys {
        let r = records
            .iter()
            .find(|r| r.text() == key)
            .unwrap_or_else(|| panic!("{key} on the topic: {records:?}"));
        assert_eq!(r.key_text().as_deref(), Some(key));
        assert_eq!(
            r.partition,
            crate::output_http::fnv1a_partition(key, 3),
            "{key}"
        );
        // `excludeHeaderMetaRegex` keeps x-internal-* out of the headers.
        assert_eq!(r.header("x-internal-id"), None, "{:?}", r.headers);
        assert_eq!(r.header("x-internal-call"), None, "{:?}", r.headers);
        assert_eq!(r.header("kept").as_deref(), Some("yes"));
        assert_eq!(r.header("partitionKey").as_deref(), Some(key));
        assert_tonic_call_headers(r, port, &["kept", "partitionKey"]);
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_set_metadata() {
    let (_broker, _topic, sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let md = client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.id, "grpc-app");
    assert_eq!(md.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(md.registered_components.len(), 1, "{md:?}");
    let c = &md.registered_components[0];
    assert_eq!(
        (c.name.as_str(), c.r#type.as_str(), c.version.as_str()),
        ("orders", "bindings.kafka", "v1")
    );
    assert!(!md.extended_metadata.contains_key("team"));

    client
        .set_metadata(pb::SetMetadataRequest {
            key: "team".into(),
            value: "bindings".into(),
        })
        .await
        .unwrap();
    let md = client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        md.extended_metadata.get("team").map(String::as_str),
        Some("bindings")
    );

    // Both APIs share one store: the HTTP shim sees the gRPC write.
    let http: serde_json::Value = reqwest::get(format!("{}/v1.0/metadata", sidecar.http()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["extended"]["team"], "bindings", "{http}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_rpc_stops_the_sidecar() {
    let (_broker, _topic, mut sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let grpc_port = sidecar.grpc_port();
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    client.shutdown(pb::ShutdownRequest {}).await.unwrap();
    let running = sidecar.sidecar.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the sidecar stops after the Shutdown rpc");
    // Whether someone else listens there by now is not this test's business.
    assert!(
        !listening_here(grpc_port),
        "the gRPC port is closed after shutdown"
    );
}

/// Calls `path` with an empty message through a plain tonic client.
async fn call_raw(endpoint: &str, path: &'static str) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec =
        tonic_prost::ProstCodec::<pb::GetMetadataRequest, pb::GetMetadataRequest>::default();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        grpc.unary(
            tonic::Request::new(pb::GetMetadataRequest {}),
            http::uri::PathAndQuery::from_static(path),
            codec,
        ),
    )
    .await
    .expect("an unserved rpc answers, it does not hang");
    result.expect_err(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn unserved_rpcs_answer_unimplemented_naming_the_building_block() {
    let (_broker, _topic, sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let cases = [
        ("/dapr.proto.runtime.v1.Dapr/SaveState", "state management"),
        ("/dapr.proto.runtime.v1.Dapr/GetState", "state management"),
        (
            "/dapr.proto.runtime.v1.Dapr/PublishEvent",
            "publish and subscribe",
        ),
        (
            "/dapr.proto.runtime.v1.Dapr/InvokeService",
            "service invocation",
        ),
        ("/dapr.proto.runtime.v1.Dapr/GetSecret", "secrets"),
        ("/dapr.proto.runtime.v1.Dapr/InvokeActor", "actors"),
    ];
    for (path, block) in cases {
        let status = call_raw(&sidecar.grpc(), path).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert!(
            status.message().contains(block),
            "{path}: {:?} should name {block}",
            status.message()
        );
    }
    // Not a Dapr rpc at all, and the app-side service the sidecar does not serve.
    for path in [
        "/no.such.Service/Method",
        "/dapr.proto.runtime.v1.AppCallback/OnBindingEvent",
    ] {
        let status = call_raw(&sidecar.grpc(), path).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    // And the served ones still work on the same server.
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("GetMetadata after unserved calls");
    sidecar.stop().await;
}

/// A gRPC length-prefixed message frame (uncompressed).
fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut buf = BytesMut::with_capacity(5 + body.len());
    buf.put_u8(0);
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    buf.freeze()
}

/// Sends one unary gRPC call over bare HTTP/2 with the given content type;
/// returns the response content type, grpc-status, grpc-message and message bytes.
async fn raw_h2_call(
    port: u16,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> (String, String, String, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let (parts, body) = response.into_parts();
    let content_type = parts
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let collected = body.collect().await.unwrap();
    // Status comes in trailers, or in the headers of a trailers-only response.
    let mut fields: HashMap<String, String> = HashMap::new();
    for map in [Some(&parts.headers), collected.trailers()]
        .into_iter()
        .flatten()
    {
        for key in ["grpc-status", "grpc-message"] {
            if let Some(v) = map.get(key) {
                fields.insert(key.into(), v.to_str().unwrap().to_string());
            }
        }
    }
    let bytes = collected.to_bytes();
    let message = if bytes.len() >= 5 {
        bytes.slice(5..)
    } else {
        Bytes::new()
    };
    (
        content_type,
        fields.remove("grpc-status").unwrap_or_default(),
        fields.remove("grpc-message").unwrap_or_default(),
        message,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_plus_proto_content_type_is_accepted() {
    let (broker, topic, sidecar) = orders_setup(|c| c.app_id = "grpc-app".into()).await;
    let port = sidecar.grpc_port();
    for content_type in ["application/grpc+proto", "application/grpc"] {
        let (ct, status, message, bytes) = raw_h2_call(
            port,
            "/dapr.proto.runtime.v1.Dapr/InvokeBinding",
            content_type,
            frame(&invoke(
                "orders",
                content_type.as_bytes(),
                &[("partitionKey", "raw")],
            )),
        )
        .await;
        assert_eq!(status, "0", "{content_type}: {message}");
        assert!(ct.starts_with("application/grpc"), "{ct}");
        let reply = pb::InvokeBindingResponse::decode(bytes).unwrap();
        assert_empty_reply(&reply);
    }
    let (_, status, message, bytes) = raw_h2_call(
        port,
        "/dapr.proto.runtime.v1.Dapr/GetMetadata",
        "application/grpc+proto",
        frame(&pb::GetMetadataRequest {}),
    )
    .await;
    assert_eq!(status, "0", "{message}");
    assert_eq!(
        pb::GetMetadataResponse::decode(bytes).unwrap().id,
        "grpc-app"
    );

    let r = read_back(broker.addr(), topic, 2).await;
    assert_eq!(r[0].text(), "application/grpc+proto");
    assert_eq!(r[1].text(), "application/grpc");
    assert_eq!(r[0].key_text().as_deref(), Some("raw"));
    assert_eq!(r[0].header("partitionKey").as_deref(), Some("raw"));
    // Each call's content type is a header of its record, as all call metadata.
    assert_eq!(
        r[0].header("content-type").as_deref(),
        Some("application/grpc+proto")
    );
    assert_eq!(
        r[1].header("content-type").as_deref(),
        Some("application/grpc")
    );
    for record in &r {
        new_traceparent(record);
        assert_eq!(
            record.header("dapr-authority"),
            Some(format!("127.0.0.1:{port}")),
            "{:?}",
            record.headers
        );
    }
    sidecar.stop().await;
}
