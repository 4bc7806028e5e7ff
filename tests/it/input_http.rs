//! Kafka input bindings delivered to an HTTP app: the POST carries the raw
//! message with daprd's event metadata as headers (`__key`, `__topic`, ...,
//! then the record headers; `excludeHeaderMetaRegex` and `escapeHeaders`
//! apply), a header cannot override the event fields, `route` picks the path, the
//! OPTIONS probe decides whether a binding is consumed, `direction: input`
//! skips the probe, and the app token is sent.

use std::time::Duration;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn post_carries_raw_body_and_kafka_metadata() {
    let broker = Broker::start();
    let topic = unique("orders");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    // One component both ways: produce through the sidecar's output API, read it back as input.
    let component = input_component(
        "orders",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[("publishTopic", &topic)],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .body(r#"{"data": {"orderId": 1}, "operation": "create", "metadata": {"partitionKey": "k1", "trace": "abc"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
    // Bytes that are not JSON reach the app untouched; no key, no `__key`.
    const STAMP: i64 = 1_700_000_000_123;
    produce(
        &broker.addr(),
        &topic,
        [
            Msg::new(&b"raw \x00\xff bytes"[..])
                .key("k2")
                .timestamp(STAMP)
                .header("x-first", "one")
                .header("x-second", "two"),
            Msg::new("keyless"),
        ],
    )
    .await;

    wait_cond("three deliveries", DEADLINE, || app.accepted_count() >= 3).await;
    let got = app.accepted();
    assert_eq!(got.len(), 3, "{got:#?}");

    // daprd's names: `__key`, `__topic`, `__partition`, `__offset`, `__timestamp`,
    // then every record header (HTTP lower-cases the names).
    let first = &got[0];
    assert_eq!(first.path, "orders");
    assert_eq!(&first.body[..], br#"{"orderId":1}"#);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("__topic"), Some(topic.as_str()));
    assert_eq!(first.header("__key"), Some("k1"));
    assert_eq!(first.header("__partition"), Some("0"));
    assert_eq!(first.header("__offset"), Some("0"));
    assert_eq!(first.header("trace"), Some("abc"));
    assert_eq!(
        first.header("partitionkey"),
        Some("k1"),
        "the output wrote it as a header"
    );
    let stamp: i64 = first.header("__timestamp").unwrap().parse().unwrap();
    assert!(stamp > STAMP, "the broker stamped it now, in ms: {stamp}");
    for old in ["topic", "key", "partition", "offset"] {
        assert_eq!(first.header(old), None, "no {old} header any more");
    }
    assert_eq!(first.header("dapr-api-token"), None, "no app token set");

    let second = &got[1];
    assert_eq!(&second.body[..], b"raw \x00\xff bytes");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.header("__key"), Some("k2"));
    assert_eq!(second.header("__offset"), Some("1"));
    assert_eq!(
        second.header("__timestamp"),
        Some(STAMP.to_string().as_str())
    );
    assert_eq!(second.header("x-first"), Some("one"));
    assert_eq!(second.header("x-second"), Some("two"));

    let third = &got[2];
    assert_eq!(third.text(), "keyless");
    assert_eq!(third.header("__offset"), Some("2"));
    assert_eq!(
        third.header("__key"),
        None,
        "only a record with a key has __key"
    );

    let status = input_status(&sidecar.http(), "orders").await;
    assert_eq!(status["state"], "subscribed", "{status}");
    assert_eq!(status["delivered"], 3, "{status}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn route_metadata_changes_the_path() {
    let broker = Broker::start();
    let topic = unique("routed");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    let component = input_component(
        "routed",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[("route", "/custom/orders")],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    produce(&broker.addr(), &topic, [Msg::new("hello")]).await;

    wait_cond("a delivery", DEADLINE, || app.accepted_count() >= 1).await;
    let got = app.accepted();
    assert_eq!(got[0].path, "custom/orders");
    assert_eq!(got[0].text(), "hello");
    assert_eq!(
        app.calls_to("OPTIONS", "custom/orders").len(),
        1,
        "the probe asks the route, once: {:#?}",
        app.calls()
    );
    assert!(
        app.calls().iter().all(|c| c.path != "routed"),
        "nothing goes to the binding name when a route is set: {:#?}",
        app.calls()
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn options_probe_decides_what_is_consumed() {
    let broker = Broker::start();
    let (t404, t405, texplicit) = (unique("t404"), unique("t405"), unique("texplicit"));
    for t in [&t404, &t405, &texplicit] {
        broker.create_topic(t, 1);
    }
    let app = HttpApp::builder()
        .options("unserved", 404)
        .options("post-only", 405)
        .options("explicit", 404)
        .start()
        .await;
    let group = unique("group");
    let components = [
        input_component("unserved", &broker.addr(), &t404, &group, &[]),
        input_component("post-only", &broker.addr(), &t405, &group, &[]),
        // `direction: input` consumes without asking, even though OPTIONS would say 404.
        input_component(
            "explicit",
            &broker.addr(),
            &texplicit,
            &group,
            &[("direction", "input")],
        ),
    ];
    for t in [&t404, &t405, &texplicit] {
        produce(&broker.addr(), t, [Msg::new(format!("to {t}"))]).await;
    }
    let sidecar = start_sidecar(&components, |c| c.app_port = Some(app.port)).await;

    wait_input_state(&sidecar.http(), "unserved", "not served by app", DEADLINE).await;
    wait_cond("deliveries to post-only and explicit", DEADLINE, || {
        !app.accepted_to("post-only").is_empty() && !app.accepted_to("explicit").is_empty()
    })
    .await;
    assert_eq!(app.accepted_to("post-only")[0].text(), format!("to {t405}"));
    assert_eq!(
        app.accepted_to("explicit")[0].text(),
        format!("to {texplicit}")
    );
    assert!(
        app.deliveries("unserved").is_empty(),
        "a binding the app does not serve is not consumed"
    );
    assert_eq!(app.calls_to("OPTIONS", "unserved").len(), 1);
    assert_eq!(app.calls_to("OPTIONS", "post-only").len(), 1);
    assert!(
        app.calls_to("OPTIONS", "explicit").is_empty(),
        "direction: input skips the probe"
    );
    for name in ["post-only", "explicit"] {
        let s = input_status(&sidecar.http(), name).await;
        assert_eq!(s["state"], "subscribed", "{name}: {s}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_token_is_sent_to_the_app() {
    let broker = Broker::start();
    let topic = unique("secured");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    let component = input_component("secured", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| {
        c.app_port = Some(app.port);
        c.app_token = Some("app-secret".into());
    })
    .await;
    produce(&broker.addr(), &topic, [Msg::new("{}")]).await;

    wait_cond("a delivery", DEADLINE, || app.accepted_count() >= 1).await;
    assert_eq!(
        app.accepted()[0].header("dapr-api-token"),
        Some("app-secret")
    );
    let probe = app.calls_to("OPTIONS", "secured");
    assert_eq!(probe[0].header("dapr-api-token"), Some("app-secret"));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_with_to_is_produced_to_the_output_binding() {
    let broker = Broker::start();
    let (t_in, t_out) = (unique("in"), unique("out"));
    broker.create_topic(&t_in, 1);
    broker.create_topic(&t_out, 1);
    let app = HttpApp::builder()
        .script(|_| {
            Answer::Reply(
                200,
                r#"{"to": ["outgoing"], "data": {"seen": true}}"#.into(),
            )
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
    let sidecar = start_sidecar(&components, |c| c.app_port = Some(app.port)).await;
    produce(&broker.addr(), &t_in, [Msg::new("order-9")]).await;

    let records = read_back(broker.addr(), t_out, 1).await;
    assert_eq!(records[0].text(), r#"{"seen":true}"#);
    assert_eq!(app.accepted_to("incoming")[0].text(), "order-9");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_headers_cannot_break_the_http_request() {
    let broker = Broker::start();
    let topic = unique("framing");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    let component = input_component("framing", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    // Headers any producer may set, named like HTTP's own framing headers.
    produce(
        &broker.addr(),
        &topic,
        [
            Msg::new("first").header("content-length", "999"),
            Msg::new("second").header("transfer-encoding", "chunked"),
            Msg::new("third")
                .header("connection", "close")
                .header("host", "elsewhere.example"),
            Msg::new("fourth").header("x-after", "ok"),
        ],
    )
    .await;

    wait_cond("4 deliveries", DEADLINE, || app.accepted_count() >= 4).await;
    let got = app.accepted();
    let texts: Vec<String> = got.iter().map(|c| c.text()).collect();
    assert_eq!(texts, ["first", "second", "third", "fourth"]);
    assert_eq!(got[0].header("content-length"), Some("5"));
    assert_eq!(got[1].header("transfer-encoding"), None);
    assert_eq!(got[3].header("x-after"), Some("ok"));
    let s = input_status(&sidecar.http(), "framing").await;
    assert_eq!(s["failedAttempts"], 0, "no delivery failed: {s}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_created_after_start_is_consumed() {
    let broker = Broker::start();
    let topic = unique("later");
    let app = HttpApp::start().await;
    let component = input_component("later", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    // Consuming before the topic exists: subscribed, or already told by the
    // broker that the topic is unknown (shown as an error until it exists).
    let http = sidecar.http();
    wait_until(
        "the consumer to join before the topic exists",
        DEADLINE,
        || {
            let http = http.clone();
            async move {
                let s = input_status(&http, "later").await;
                let unknown = s["state"] == "error"
                    && s["detail"].as_str().unwrap_or("").contains("UnknownTopic");
                (s["state"] == "subscribed" || unknown).then_some(())
            }
        },
    )
    .await;
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, [Msg::new("late")]).await;

    wait_cond("a delivery", DEADLINE, || app.accepted_count() >= 1).await;
    assert_eq!(app.accepted()[0].text(), "late");
    // Any "unknown topic" error is gone once the partition is assigned and delivering.
    wait_input_state(&sidecar.http(), "later", "subscribed", DEADLINE).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn record_headers_overwrite_event_fields_and_can_be_excluded() {
    let broker = Broker::start();
    let topic = unique("excluded");
    broker.create_topic(&topic, 1);
    let app = HttpApp::start().await;
    let component = input_component(
        "excluded",
        &broker.addr(),
        &topic,
        &unique("group"),
        // Unanchored, as Go's MatchString: `internal` matches anywhere in a name.
        &[("excludeHeaderMetaRegex", "internal|^__offset$")],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    produce(
        &broker.addr(),
        &topic,
        [Msg::new("m0")
            .key("real-key")
            .header("x-internal-id", "7")
            .header("internal", "8")
            .header("kept", "yes")
            // As daprd: a header of an event field's name overwrites it...
            .header("__key", "from-header")
            // ...unless it is excluded: then the field stays.
            .header("__offset", "99")],
    )
    .await;

    wait_cond("a delivery", DEADLINE, || app.accepted_count() >= 1).await;
    let got = &app.accepted()[0];
    assert_eq!(got.text(), "m0");
    assert_eq!(got.header("kept"), Some("yes"));
    assert_eq!(got.header("x-internal-id"), None, "{:?}", got.headers);
    assert_eq!(got.header("internal"), None, "{:?}", got.headers);
    assert_eq!(got.header("__key"), Some("from-header"));
    assert_eq!(got.header("__offset"), Some("0"));
    assert_eq!(got.header("__topic"), Some(topic.as_str()));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_headers_query_escapes_the_key_and_header_values() {
    let broker = Broker::start();
    let (plain_topic, escaped_topic) = (unique("plain"), unique("escaped"));
    broker.create_topic(&plain_topic, 1);
    broker.create_topic(&escaped_topic, 1);
    let app = HttpApp::start().await;
    let group = unique("group");
    let components = [
        input_component("plain", &broker.addr(), &plain_topic, &group, &[]),
        input_component(
            "escaped",
            &broker.addr(),
            &escaped_topic,
            &group,
            &[("escapeHeaders", "true")],
        ),
    ];
    let sidecar = start_sidecar(&components, |c| c.app_port = Some(app.port)).await;
    let msg = || {
        Msg::new("body stays")
            .key("a b/c?d=é")
            .header("x-query", "q=1&r=two words")
            .header("x-safe", "AZaz09-_.~")
    };
    produce(&broker.addr(), &plain_topic, [msg()]).await;
    produce(&broker.addr(), &escaped_topic, [msg()]).await;

    wait_cond("both deliveries", DEADLINE, || {
        !app.accepted_to("plain").is_empty() && !app.accepted_to("escaped").is_empty()
    })
    .await;
    let plain = &app.accepted_to("plain")[0];
    assert_eq!(plain.header("x-query"), Some("q=1&r=two words"));
    assert_eq!(plain.header("__key"), Some("a b/c?d=é"));

    // Go's url.QueryEscape: space as `+`, UTF-8 bytes and reserved ones as %XX.
    let escaped = &app.accepted_to("escaped")[0];
    assert_eq!(escaped.text(), "body stays");
    assert_eq!(escaped.header("__key"), Some("a+b%2Fc%3Fd%3D%C3%A9"));
    assert_eq!(escaped.header("x-query"), Some("q%3D1%26r%3Dtwo+words"));
    assert_eq!(escaped.header("x-safe"), Some("AZaz09-_.~"));
    // Only the key and header values: the event's own fields are as they are.
    assert_eq!(escaped.header("__topic"), Some(escaped_topic.as_str()));
    sidecar.stop().await;
}
