//! Output bindings through the HTTP shim, against a real broker: how `data` of
//! each JSON type reaches the topic, how request metadata becomes the Kafka key
//! and headers (as daprd: `partitionKey` or `__key` is the key, every entry is a
//! header unless `excludeHeaderMetaRegex` matches), which partition a key picks
//! (FNV-1a, as daprd's client), the `traceparent` every record carries, the
//! reply (as daprd, an empty 204 that names no topic, partition or offset),
//! ordering, health, metadata and shutdown.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// As daprd, a successful write answers an empty 204 that names nothing of the
/// record's position (no `metadata.topic`, `metadata.partition`, `metadata.offset`).
fn assert_no_reply_metadata(resp: &reqwest::Response, what: &str) {
    let named: Vec<&str> = resp
        .headers()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("metadata."))
        .collect();
    assert!(named.is_empty(), "{what}: reply headers {named:?}");
}

/// The record's `traceparent` header, checked with [`assert_traceparent`].
pub(crate) fn traceparent(r: &Record) -> String {
    let tp = r
        .header("traceparent")
        .unwrap_or_else(|| panic!("a traceparent header: {:?}", r.headers));
    assert_traceparent(&tp);
    tp
}

/// Checks `tp` is a W3C trace context: `00-<32 hex>-<16 hex>-<2 hex>`, lower
/// case, neither id all zeros.
pub(crate) fn assert_traceparent(tp: &str) {
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let parts: Vec<&str> = tp.split('-').collect();
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2),
        "not a traceparent: {tp:?}"
    );
    assert!(
        parts[1].bytes().any(|b| b != b'0') && parts[2].bytes().any(|b| b != b'0'),
        "an all-zero id is invalid: {tp:?}"
    );
}

/// The `traceparent` the sidecar made up for a caller that sent none, as daprd:
/// a valid one, not sampled (flags `00`).
pub(crate) fn new_traceparent(r: &Record) -> String {
    let tp = traceparent(r);
    assert!(
        tp.ends_with("-00"),
        "a new trace context is unsampled: {tp}"
    );
    tp
}

/// The record's header names, sorted.
pub(crate) fn header_names(r: &Record) -> Vec<&str> {
    let mut names: Vec<&str> = r.headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn post_produces_with_key_and_headers() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .body(r#"{"data": {"orderId": 1}, "operation": "create", "metadata": {"partitionKey": "k1", "trace": "abc"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_no_reply_metadata(&resp, "post");
    assert!(resp.bytes().await.unwrap().is_empty(), "204 has no body");

    // A caller's trace context is what the record carries.
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = client
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .header("traceparent", caller)
        .body(r#"{"data": {"orderId": 2}, "operation": "create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_no_reply_metadata(&resp, "post with a traceparent");

    let records = read_back(broker.addr(), topic, 2).await;
    assert_eq!(records[0].text(), r#"{"orderId":1}"#);
    assert_eq!(records[0].key_text().as_deref(), Some("k1"));
    assert_eq!(records[0].header("trace").as_deref(), Some("abc"));
    // As daprd: every metadata entry is a header, the key's too, and every
    // write carries a traceparent (a new, unsampled one here: the caller sent none).
    assert_eq!(records[0].header("partitionKey").as_deref(), Some("k1"));
    new_traceparent(&records[0]);
    assert_eq!(
        header_names(&records[0]),
        ["partitionKey", "trace", "traceparent"]
    );
    assert_eq!(records[1].text(), r#"{"orderId":2}"#);
    assert_eq!(records[1].header("traceparent").as_deref(), Some(caller));
    assert_eq!(header_names(&records[1]), ["traceparent"]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_of_every_json_type_arrives_as_compact_json_text() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    // A record value that is null, not empty: no payload at all.
    const NULL: &str = "<null>";
    // (request body, method, record payload expected on the topic)
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"data": {"orderId": 1}, "operation": "create"}"#,
            "POST",
            r#"{"orderId":1}"#,
        ),
        (
            "{ \"operation\" : \"create\",\n  \"data\" : { \"orderId\" : 2 ,\n \"tags\" : [ 1 , 2 ] } }",
            "PUT",
            r#"{"orderId":2,"tags":[1,2]}"#,
        ),
        (
            r#"{"data": "hello  world \" q", "operation": "create"}"#,
            "POST",
            r#""hello  world \" q""#,
        ),
        (r#"{"data": 42, "operation": "create"}"#, "PUT", "42"),
        (
            r#"{"data": -1.5e3, "operation": "create"}"#,
            "POST",
            "-1.5e3",
        ),
        (r#"{"data": true, "operation": "create"}"#, "POST", "true"),
        (
            r#"{"data": [1, "a", null], "operation": "create"}"#,
            "POST",
            r#"[1,"a",null]"#,
        ),
        // As daprd: JSON null or no `data` at all writes a null value (a tombstone).
        (r#"{"data": null, "operation": "create"}"#, "POST", NULL),
        (r#"{"operation": "create"}"#, "PUT", NULL),
        (
            r#"{"data": {"text": "a { b } : c , d"}, "operation": "create"}"#,
            "POST",
            r#"{"text":"a { b } : c , d"}"#,
        ),
    ];
    let client = reqwest::Client::new();
    for (body, method, _) in cases {
        let request = match *method {
            "PUT" => client.put(&url),
            _ => client.post(&url),
        };
        let resp = request
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{method} {body}");
        assert_no_reply_metadata(&resp, body);
    }
    // One partition and one write after the other: the topic holds them in order.
    let (brokers, t) = (broker.addr(), topic.clone());
    let n = cases.len();
    let values =
        tokio::task::spawn_blocking(move || crate::output_grpc::read_values(&brokers, &t, n))
            .await
            .unwrap();
    let got: Vec<String> = values
        .iter()
        .map(|(_, v)| match v {
            Some(v) => String::from_utf8_lossy(v).into_owned(),
            None => NULL.to_string(),
        })
        .collect();
    let want: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_eq!(got, want);
    assert!(values.iter().all(|(k, _)| k.is_none()), "no key was given");
    let records = read_back(broker.addr(), topic, n).await;
    for r in &records {
        new_traceparent(r);
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_becomes_key_and_headers() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    let client = reqwest::Client::new();
    let bodies = [
        // partitionKey is the key, and a header like every entry (as daprd).
        r#"{"data": 1, "operation": "create", "metadata": {"partitionKey": "pk-1", "source": "web"}}"#,
        // `__key` is the key too; `key` is only a header.
        r#"{"data": 2, "operation": "create", "metadata": {"__key": "uk-2", "key": "k-2"}}"#,
        // Only headers, no key; empty metadata map.
        r#"{"data": 3, "operation": "create", "metadata": {"a": "1", "b": "two words", "c": ""}}"#,
        r#"{"data": 4, "operation": "create", "metadata": {}}"#,
        // With both, partitionKey is the key; both are headers.
        r#"{"data": 5, "operation": "create", "metadata": {"__key": "uk-5", "partitionKey": "pk-5"}}"#,
    ];
    for body in bodies {
        let resp = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 204, "{body}");
        assert_no_reply_metadata(&resp, body);
    }

    // One partition, one write after the other: record i has payload i + 1.
    let r = read_back(broker.addr(), topic, 5).await;
    let payloads: Vec<String> = r.iter().map(Record::text).collect();
    assert_eq!(payloads, ["1", "2", "3", "4", "5"]);
    // Besides the metadata entries, each record carries only a new traceparent.
    for record in &r {
        new_traceparent(record);
    }
    assert_eq!(r[0].key_text().as_deref(), Some("pk-1"));
    assert_eq!(r[0].header("source").as_deref(), Some("web"));
    assert_eq!(r[0].header("partitionKey").as_deref(), Some("pk-1"));
    assert_eq!(
        header_names(&r[0]),
        ["partitionKey", "source", "traceparent"]
    );

    assert_eq!(r[1].key_text().as_deref(), Some("uk-2"));
    assert_eq!(r[1].header("__key").as_deref(), Some("uk-2"));
    assert_eq!(r[1].header("key").as_deref(), Some("k-2"));
    assert_eq!(header_names(&r[1]), ["__key", "key", "traceparent"]);

    assert_eq!(r[2].key, None);
    assert_eq!(r[2].header("a").as_deref(), Some("1"));
    assert_eq!(r[2].header("b").as_deref(), Some("two words"));
    assert_eq!(r[2].header("c").as_deref(), Some(""));
    assert_eq!(header_names(&r[2]), ["a", "b", "c", "traceparent"]);

    assert_eq!(r[3].key, None);
    assert_eq!(header_names(&r[3]), ["traceparent"]);

    assert_eq!(r[4].key_text().as_deref(), Some("pk-5"));
    assert_eq!(r[4].header("partitionKey").as_deref(), Some("pk-5"));
    assert_eq!(r[4].header("__key").as_deref(), Some("uk-5"));
    assert_eq!(
        header_names(&r[4]),
        ["__key", "partitionKey", "traceparent"]
    );
    // Each write got its own trace.
    let mut traces: Vec<String> = r.iter().map(traceparent).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), r.len(), "{traces:?}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_sequential_posts_land_in_order() {
    let (broker, topic, sidecar) = orders_setup(|_| {}).await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    let client = reqwest::Client::new();
    for n in 0..100 {
        let resp = client
            .post(&url)
            .json(&serde_json::json!({"data": {"n": n}, "operation": "create", "metadata": {"partitionKey": "same"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "post {n}");
        assert_no_reply_metadata(&resp, &format!("post {n}"));
    }
    let records = read_back(broker.addr(), topic, 100).await;
    let got: Vec<String> = records.iter().map(Record::text).collect();
    let want: Vec<String> = (0..100).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    assert_eq!(got, want);
    assert!(
        records
            .iter()
            .all(|r| r.key_text().as_deref() == Some("same")),
        "every record has the key"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metadata_without_an_app() {
    let broker = Broker::start();
    let topic = unique("meta");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "meta-out",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |c| c.app_id = "meta-app".into(),
    )
    .await;
    let client = reqwest::Client::new();
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let resp = client
            .get(format!("{}{path}", sidecar.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
    }

    let resp = client
        .get(format!("{}/v1.0/metadata", sidecar.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let md: Value = resp.json().await.unwrap();
    assert_eq!(md["id"], "meta-app");
    assert_eq!(md["runtimeVersion"], env!("CARGO_PKG_VERSION"));
    assert!(md["enabledFeatures"].is_array(), "{md}");
    assert!(md["extended"].is_object(), "{md}");
    assert!(md["appConnectionProperties"].is_object(), "{md}");
    let components = md["components"].as_array().expect("components");
    assert_eq!(components.len(), 1, "{md}");
    let c = &components[0];
    assert_eq!(c["name"], "meta-out");
    assert_eq!(c["type"], "bindings.kafka");
    assert_eq!(c["version"], "v1");
    assert!(c["capabilities"].is_array(), "{md}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_waits_for_the_app_and_metadata_names_it() {
    let broker = Broker::start();
    let topic = unique("meta");
    broker.create_topic(&topic, 1);
    // The app port is reserved (held by the test), but nothing listens yet.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let sidecar = start_sidecar(
        &[kafka_component(
            "meta-out",
            &broker.addr(),
            &[("publishTopic", &topic), ("direction", "output")],
        )],
        |c| {
            c.app_id = "meta-app".into();
            c.app_port = Some(app_port);
            c.app_max_concurrency = Some(7);
        },
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", sidecar.http())).send();
    // Components are loaded: outbound is ready, the sidecar is not (no app yet),
    // and output bindings already work.
    assert_eq!(get("/v1.0/healthz/outbound").await.unwrap().status(), 204);
    let not_ready = get("/v1.0/healthz").await.unwrap();
    assert_eq!(not_ready.status(), 500);
    let resp = client
        .post(format!("{}/v1.0/bindings/meta-out", sidecar.http()))
        .body(r#"{"data": "before the app", "operation": "create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let app = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    let accept = tokio::spawn(async move {
        // Keep accepting: the sidecar only checks that the port answers.
        while let Ok((s, _)) = app.accept().await {
            drop(s);
        }
    });
    wait_until("healthz to turn 204", Duration::from_secs(30), || async {
        let r = get("/v1.0/healthz").await.ok()?;
        (r.status() == 204).then_some(())
    })
    .await;

    let md: Value = get("/v1.0/metadata").await.unwrap().json().await.unwrap();
    let app_props = &md["appConnectionProperties"];
    assert_eq!(app_props["port"], app_port, "{md}");
    assert_eq!(app_props["protocol"], "http", "{md}");
    assert_eq!(app_props["channelAddress"], "127.0.0.1", "{md}");
    assert_eq!(app_props["maxConcurrency"], 7, "{md}");
    sidecar.stop().await;
    accept.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn put_metadata_shows_in_extended() {
    let (_broker, _topic, sidecar) = orders_setup(|_| {}).await;
    let client = reqwest::Client::new();
    let resp = client
        .put(format!("{}/v1.0/metadata/team", sidecar.http()))
        .body("bindings")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let md: Value = client
        .get(format!("{}/v1.0/metadata", sidecar.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["extended"]["team"], "bindings", "{md}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_endpoint_stops_the_in_process_sidecar() {
    let (_broker, _topic, mut sidecar) = orders_setup(|_| {}).await;
    let http = sidecar.http();
    let resp = reqwest::Client::new()
        .post(format!("{http}/v1.0/shutdown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let running = sidecar.sidecar.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the sidecar stops after /v1.0/shutdown");
    let port: u16 = http.rsplit(':').next().unwrap().parse().unwrap();
    // Whether someone else listens there by now is not this test's business.
    assert!(
        !listening_here(port),
        "the HTTP port is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_endpoint_ends_the_process_with_exit_code_0() {
    let broker = Broker::start();
    let topic = unique("bin");
    broker.create_topic(&topic, 1);
    let dir = components_dir(&[kafka_component(
        "bin-out",
        &broker.addr(),
        &[("publishTopic", &topic)],
    )]);
    let mut sidecar = SidecarProc::builder(dir.path()).app_id("bin-app").start();
    let http_port = sidecar.http_port;
    let base = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::new();
    wait_until(
        "the binary to answer healthz",
        Duration::from_secs(30),
        || async {
            let r = client
                .get(format!("{base}/v1.0/healthz"))
                .send()
                .await
                .ok()?;
            (r.status() == 204).then_some(())
        },
    )
    .await;
    let resp = client
        .post(format!("{base}/v1.0/bindings/bin-out"))
        .body(r#"{"data": {"from": "binary"}, "operation": "create"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let resp = client
        .post(format!("{base}/v1.0/shutdown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let status = tokio::task::block_in_place(|| sidecar.wait_exit(Duration::from_secs(30)));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", sidecar.log_text());
    let records = read_back(broker.addr(), topic, 1).await;
    assert_eq!(records[0].text(), r#"{"from":"binary"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_posts_are_all_acknowledged_and_keys_pick_partitions() {
    let broker = Broker::start();
    let topic = unique("spread");
    broker.create_topic(&topic, 3);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;
    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    let client = reqwest::Client::new();
    let posts = (0..60).map(|n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .post(&url)
                .json(&serde_json::json!({
                    "data": n,
                    "operation": "create",
                    "metadata": {"partitionKey": format!("customer-{}", n % 6)},
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 204, "post {n}");
            assert_no_reply_metadata(&resp, &format!("post {n}"));
            n
        }
    });
    let acked = futures::future::join_all(posts).await;

    // The reply names no position: each post's payload is unique, so find it by that.
    let records = read_back(broker.addr(), topic, 60).await;
    assert_eq!(records.len(), 60);
    for n in &acked {
        let mut found = records.iter().filter(|r| r.text() == n.to_string());
        let r = found
            .next()
            .unwrap_or_else(|| panic!("acknowledged post {n} is on the topic"));
        assert!(found.next().is_none(), "post {n} written once");
        let key = format!("customer-{}", n % 6);
        assert_eq!(r.partition, fnv1a_partition(&key, 3), "{key}");
        assert_eq!(r.key_text(), Some(key));
    }
    // One key, one partition.
    for k in 0..6 {
        let key = format!("customer-{k}");
        let mut partitions: Vec<i32> = records
            .iter()
            .filter(|r| r.key_text().as_deref() == Some(key.as_str()))
            .map(|r| r.partition)
            .collect();
        partitions.dedup();
        assert_eq!(partitions.len(), 1, "{key} spread over {partitions:?}");
    }
    sidecar.stop().await;
}

/// 32-bit FNV-1a of `key`.
pub(crate) fn fnv1a(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The partition daprd's client (sarama's hash partitioner) picks for `key`:
/// the hash as a signed 32-bit number, modulo `n`, negated if negative.
pub(crate) fn fnv1a_partition(key: &str, n: i32) -> i32 {
    let p = (fnv1a(key.as_bytes()) as i32) % n;
    if p < 0 { -p } else { p }
}

#[test]
fn fnv1a_matches_published_vectors() {
    // From the FNV reference and librdkafka's fnv1a unit test (Go's hash/fnv).
    assert_eq!(fnv1a(b""), 0x811c_9dc5);
    assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a(b"kafka"), 0x0d33_c4e1);
    assert_eq!(fnv1a(b"giberish123456789"), 0x77a5_8295);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_pick_the_fnv1a_partition_as_daprd() {
    let broker = Broker::start();
    let topic = unique("fnv");
    broker.create_topic(&topic, 3);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;
    // Hashes of both signs; for most of these librdkafka's default partitioner
    // (CRC32) picks another partition, and every partition gets a key.
    let keys = [
        "customer-0",
        "customer-1",
        "customer-2",
        "k2",
        "gamma",
        "order-3",
    ];
    let mut covered: Vec<i32> = keys.iter().map(|k| fnv1a_partition(k, 3)).collect();
    covered.sort();
    covered.dedup();
    assert_eq!(covered, [0, 1, 2], "the keys cover every partition");
    assert!(keys.iter().any(|k| (fnv1a(k.as_bytes()) as i32) < 0));

    let url = format!("{}/v1.0/bindings/orders", sidecar.http());
    let client = reqwest::Client::new();
    for (i, key) in keys.iter().enumerate() {
        // Half through `partitionKey`, half through `__key`: the same rule.
        let field = if i % 2 == 0 { "partitionKey" } else { "__key" };
        let resp = client
            .post(&url)
            .json(&serde_json::json!({"data": i, "operation": "create", "metadata": {field: key}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{key}");
        assert_no_reply_metadata(&resp, key);
    }
    let records = read_back(broker.addr(), topic, keys.len()).await;
    for (i, key) in keys.iter().enumerate() {
        let r = records
            .iter()
            .find(|r| r.text() == i.to_string())
            .unwrap_or_else(|| panic!("record {i} on the topic: {records:?}"));
        assert_eq!(r.key_text().as_deref(), Some(*key));
        assert_eq!(r.partition, fnv1a_partition(key, 3), "partition of {key}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exclude_header_meta_regex_keeps_metadata_out_of_the_headers() {
    let broker = Broker::start();
    let topic = unique("exclude");
    broker.create_topic(&topic, 1);
    // Unanchored, as Go's MatchString: `secret` matches anywhere in a name.
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[
                ("publishTopic", &topic),
                ("excludeHeaderMetaRegex", "^partitionKey$|secret"),
            ],
        )],
        |_| {},
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1.0/bindings/orders", sidecar.http()))
        .body(r#"{"data": "x", "operation": "create", "metadata": {"partitionKey": "pk", "__key": "uk", "x-secret-token": "s3", "keep": "yes"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let r = read_back(broker.addr(), topic, 1).await;
    // An excluded entry still does its job: partitionKey is the key.
    assert_eq!(r[0].key_text().as_deref(), Some("pk"));
    assert_eq!(r[0].header("__key").as_deref(), Some("uk"));
    assert_eq!(r[0].header("keep").as_deref(), Some("yes"));
    new_traceparent(&r[0]);
    assert_eq!(header_names(&r[0]), ["__key", "keep", "traceparent"]);
    sidecar.stop().await;
}
