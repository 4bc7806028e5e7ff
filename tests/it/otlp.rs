//! OTLP export (`--otlp-endpoint`): spans of output calls and of deliveries to
//! the app reach a collector as OTLP/HTTP JSON and link caller → record →
//! consumer → app; an unsampled parent makes no span; a dead collector fails
//! no call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use outrigger::proto::runtime::v1::InvokeBindingRequest;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const HTTP_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const GRPC_PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const STATE: &str = "congo=t61rcWkgMzE";

/// A stand-in OTLP collector: records every body POSTed to `/v1/traces`.
struct Collector {
    url: String,
    posts: Arc<Mutex<Vec<(String, Value)>>>,
    task: JoinHandle<()>,
}

type Posts = Arc<Mutex<Vec<(String, Value)>>>;

async fn receive(State(posts): State<Posts>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match serde_json::from_slice(&body) {
        Ok(v) => {
            posts.lock().unwrap().push((content_type, v));
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

impl Collector {
    async fn start() -> Collector {
        let posts: Posts = Arc::default();
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(posts.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Collector { url, posts, task }
    }

    /// Every span received: (service.name, span), in arrival order.
    fn spans(&self) -> Vec<(String, Value)> {
        let posts = self.posts.lock().unwrap();
        let mut out = Vec::new();
        for (content_type, body) in posts.iter() {
            assert_eq!(content_type, "application/json");
            for rs in body["resourceSpans"].as_array().expect("resourceSpans") {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .expect("resource attributes")
                    .iter()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .expect("service.name")
                    .to_string();
                for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
                    assert_eq!(ss["scope"]["name"], "outrigger");
                    for span in ss["spans"].as_array().expect("spans") {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Spans of `trace_id` with this kind (4 PRODUCER, 5 CONSUMER).
    fn spans_of(&self, trace_id: &str, kind: i64) -> Vec<Value> {
        self.spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s["traceId"] == trace_id && s["kind"] == kind)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (trace id, parent id) of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {traceparent:?}");
    (parts[1].to_string(), parts[2].to_string())
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
        .unwrap_or_else(|| panic!("no attribute {key} in {span}"))
}

fn str_attr(value: &str) -> Value {
    serde_json::json!({ "stringValue": value })
}

fn int_attr(value: i64) -> Value {
    serde_json::json!({ "intValue": value.to_string() })
}

fn hex_id(v: &Value, len: usize) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("id {v} is not a string"));
    assert_eq!(s.len(), len, "id {s}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "id {s} is not lower-case hex"
    );
    s.to_string()
}

fn check_times(span: &Value) {
    let time = |k: &str| -> u64 {
        span[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is not a string in {span}"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} is not a decimal in {span}"))
    };
    assert!(
        time("endTimeUnixNano") >= time("startTimeUnixNano"),
        "{span}"
    );
    assert!(
        time("startTimeUnixNano") > 1_600_000_000_000_000_000,
        "{span}"
    );
}

/// A sidecar with output `otlp-out` and input `otlp-in` on the same topic,
/// delivering to `app` and exporting to `collector`.
async fn traced_sidecar(
    broker: &Broker,
    topic: &str,
    app: &HttpApp,
    app_id: &str,
    endpoint: &str,
) -> TestSidecar {
    start_sidecar(
        &[
            kafka_component("otlp-out", &broker.addr(), &[("publishTopic", topic)]),
            input_component("otlp-in", &broker.addr(), topic, &unique("g"), &[]),
        ],
        |c| {
            c.app_id = app_id.to_string();
            c.app_port = Some(app.port);
            c.otlp_endpoint = Some(endpoint.to_string());
        },
    )
    .await
}

async fn read_records(broker: &Broker, topic: &str, n: usize) -> Vec<Record> {
    read_back(broker.addr(), topic, n).await
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_link_caller_record_consumer_and_app() {
    let broker = Broker::start();
    let topic = unique("otlp");
    broker.create_topic(&topic, 1);
    let collector = Collector::start().await;
    let app = HttpApp::start().await;
    let app_id = unique("otlp-app");
    let sidecar = traced_sidecar(&broker, &topic, &app, &app_id, &collector.url).await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/otlp-out", sidecar.http()))
        .header("traceparent", HTTP_PARENT)
        .header("tracestate", STATE)
        .body(r#"{"data":"http","operation":"create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let mut req = tonic::Request::new(InvokeBindingRequest {
        name: "otlp-out".into(),
        data: "grpc".into(),
        metadata: Default::default(),
        operation: "create".into(),
    });
    req.metadata_mut()
        .insert("traceparent", GRPC_PARENT.parse().unwrap());
    client.invoke_binding(req).await.unwrap();

    let records = read_records(&broker, &topic, 2).await;
    assert_eq!(records[0].text(), "\"http\"");
    assert_eq!(records[1].text(), "grpc");
    assert_eq!(records[0].header("tracestate").as_deref(), Some(STATE));
    assert_eq!(records[1].header("tracestate"), None);

    wait_cond(
        "both deliveries to the app",
        Duration::from_secs(60),
        || app.accepted_to("otlp-in").len() >= 2,
    )
    .await;
    let (http_trace, _) = ids(HTTP_PARENT);
    let (grpc_trace, _) = ids(GRPC_PARENT);
    wait_cond(
        "a PRODUCER and a CONSUMER span of both traces",
        Duration::from_secs(30),
        || {
            [&http_trace, &grpc_trace].iter().all(|t| {
                !collector.spans_of(t, 4).is_empty() && !collector.spans_of(t, 5).is_empty()
            })
        },
    )
    .await;

    for (parent, record) in [(HTTP_PARENT, &records[0]), (GRPC_PARENT, &records[1])] {
        let (trace, caller_span) = ids(parent);

        // Caller → PRODUCER span → record.
        let producers = collector.spans_of(&trace, 4);
        assert_eq!(producers.len(), 1, "{producers:?}");
        let p = &producers[0];
        assert_eq!(p["name"], "bindings/otlp-out");
        assert_eq!(p["parentSpanId"], caller_span.as_str());
        assert_eq!(hex_id(&p["traceId"], 32), trace);
        let p_span = hex_id(&p["spanId"], 16);
        assert_eq!(attr(p, "messaging.system"), str_attr("kafka"));
        assert_eq!(attr(p, "messaging.destination.name"), str_attr(&topic));
        assert_eq!(attr(p, "dapr.binding.name"), str_attr("otlp-out"));
        assert_eq!(p["status"]["code"], 1);
        check_times(p);
        assert_eq!(
            record.header("traceparent"),
            Some(format!("00-{trace}-{p_span}-01")),
            "the record names the PRODUCER span as parent"
        );

        // Record → CONSUMER span → app.
        let consumers = collector.spans_of(&trace, 5);
        assert_eq!(consumers.len(), 1, "{consumers:?}");
        let c = &consumers[0];
        assert_eq!(c["name"], "bindings/otlp-in");
        assert_eq!(c["parentSpanId"], p_span.as_str());
        let c_span = hex_id(&c["spanId"], 16);
        assert_eq!(attr(c, "messaging.system"), str_attr("kafka"));
        assert_eq!(attr(c, "messaging.destination.name"), str_attr(&topic));
        assert_eq!(attr(c, "messaging.kafka.partition"), int_attr(0));
        assert_eq!(attr(c, "messaging.kafka.offset"), int_attr(record.offset));
        assert_eq!(attr(c, "dapr.binding.name"), str_attr("otlp-in"));
        assert_eq!(c["status"]["code"], 1);
        check_times(c);

        let call = app
            .accepted_to("otlp-in")
            .into_iter()
            .find(|call| call.offset() == Some(record.offset))
            .expect("the app got the record");
        assert_eq!(
            call.header("traceparent").map(str::to_string),
            Some(format!("00-{trace}-{c_span}-01")),
            "the app sees the CONSUMER span as parent"
        );
        assert_eq!(
            call.header("tracestate"),
            record.header("tracestate").as_deref()
        );
    }
    for (service, span) in collector.spans() {
        assert_eq!(service, app_id, "service.name of {span}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsampled_parent_makes_no_span() {
    let broker = Broker::start();
    let topic = unique("otlp-unsampled");
    broker.create_topic(&topic, 1);
    let collector = Collector::start().await;
    let app = HttpApp::start().await;
    let sidecar = traced_sidecar(&broker, &topic, &app, &unique("app"), &collector.url).await;

    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let sampled = "00-33333333333333333333333333333333-4444444444444444-01";
    for parent in [unsampled, sampled] {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1.0/bindings/otlp-out", sidecar.http()))
            .header("traceparent", parent)
            .body(r#"{"data":"x","operation":"create"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let records = read_records(&broker, &topic, 2).await;
    assert_eq!(
        records[0].header("traceparent").as_deref(),
        Some(unsampled),
        "passed on unchanged"
    );
    let (sampled_trace, _) = ids(sampled);
    assert_eq!(
        ids(&records[1].header("traceparent").unwrap()).0,
        sampled_trace
    );

    // The sampled record comes after the unsampled one on the same partition,
    // and spans are exported in the order they end: once its CONSUMER span is
    // in, any span of the unsampled call or delivery would be too.
    wait_cond(
        "the CONSUMER span of the sampled record",
        Duration::from_secs(60),
        || !collector.spans_of(&sampled_trace, 5).is_empty(),
    )
    .await;
    let (unsampled_trace, _) = ids(unsampled);
    let leaked: Vec<_> = collector
        .spans()
        .into_iter()
        .filter(|(_, s)| s["traceId"] == unsampled_trace.as_str())
        .collect();
    assert!(leaked.is_empty(), "unsampled spans exported: {leaked:?}");
    let first = app
        .accepted_to("otlp-in")
        .into_iter()
        .find(|c| c.offset() == Some(records[0].offset))
        .expect("the unsampled record was delivered");
    assert_eq!(first.header("traceparent"), Some(unsampled));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_collector_fails_no_call() {
    let broker = Broker::start();
    let topic = unique("otlp-dead");
    broker.create_topic(&topic, 1);
    // Nothing listens there.
    let endpoint = format!("http://{}", closed_addr());
    let sidecar = start_sidecar(
        &[kafka_component(
            "otlp-out",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |c| c.otlp_endpoint = Some(endpoint),
    )
    .await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/otlp-out", sidecar.http()))
        .header("traceparent", HTTP_PARENT)
        .body(r#"{"data":"x","operation":"create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let records = read_records(&broker, &topic, 1).await;
    assert_eq!(
        ids(&records[0].header("traceparent").unwrap()).0,
        ids(HTTP_PARENT).0
    );

    let tracer = sidecar
        .sidecar
        .as_ref()
        .unwrap()
        .state()
        .tracer
        .clone()
        .expect("export is on");
    wait_cond("the failed export", Duration::from_secs(20), || {
        tracer.stats().failed >= 1
    })
    .await;
    assert_eq!(tracer.stats().exported, 0);
    // A dead collector does not hold up the shutdown beyond its grace period.
    tokio::time::timeout(Duration::from_secs(15), sidecar.stop())
        .await
        .expect("the sidecar stops");
}
