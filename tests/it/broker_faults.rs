//! Output bindings when the broker is not there: a sidecar started before its
//! broker, and a broker killed under a running sidecar. Calls fail with a clear
//! error in bounded time, the sidecar stays up, and it recovers on its own once
//! the broker is back on the same port, without a restart. Each test owns an
//! Apache Kafka broker (`Broker::dedicated`).

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Posts one `create` of `data`; panics if no answer comes within 30 s.
async fn post(http: &str, data: &str) -> (u16, Value) {
    let body = serde_json::json!({"data": data, "operation": "create"});
    let send = reqwest::Client::new()
        .post(format!("{http}/v1.0/bindings/orders"))
        .json(&body)
        .send();
    let resp = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .expect("the sidecar answers within 30 s even with the broker down")
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_invoke_failed(got: &(u16, Value)) {
    assert_eq!(got.0, 500, "{}", got.1);
    assert_eq!(got.1["errorCode"], "ERR_INVOKE_OUTPUT_BINDING", "{}", got.1);
    let message = got.1["message"].as_str().unwrap();
    assert!(
        message.starts_with("error invoking output binding orders: "),
        "{message}"
    );
}

async fn get_status(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

async fn extended(http: &str) -> Value {
    let md: Value = reqwest::get(format!("{http}/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    md["extended"].clone()
}

/// Posts until one succeeds (the broker is back); returns the data that made it.
async fn post_until_accepted(http: &str) -> String {
    let mut attempt = 0u32;
    wait_until(
        "a POST to succeed once the broker is back",
        Duration::from_secs(90),
        || {
            attempt += 1;
            let data = format!("attempt-{attempt}");
            async move {
                let got = post(http, &data).await;
                if got.0 == 204 {
                    return Some(data);
                }
                assert_invoke_failed(&got);
                None
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_started_before_its_broker_recovers() {
    // Prepared (ports known), then stopped: nobody listens when the sidecar starts.
    let mut broker = Broker::dedicated();
    broker.kill();
    let brokers = broker.addr();
    let topic = unique("late");
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &brokers,
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;
    let http = sidecar.http();

    let got = post(&http, "nobody listens").await;
    assert_invoke_failed(&got);
    // Still up: health, metadata, and it says what is wrong.
    assert_eq!(get_status(format!("{http}/v1.0/healthz")).await, 204);
    assert_eq!(
        get_status(format!("{http}/v1.0/healthz/outbound")).await,
        204
    );
    wait_until(
        "metadata to report the output binding's problem",
        Duration::from_secs(30),
        || async {
            let ext = extended(&http).await;
            ext["outputBinding.orders"]
                .as_str()
                .is_some_and(|v| v.starts_with("error: "))
                .then_some(())
        },
    )
    .await;
    assert_invoke_failed(&post(&http, "still nobody").await);

    broker.restart();
    broker.create_topic(&topic, 1);
    let accepted = post_until_accepted(&http).await;
    assert_eq!(post(&http, "next").await.0, 204);
    let ext = extended(&http).await;
    assert!(ext.get("outputBinding.orders").is_none(), "{ext}");

    let records = read_back(broker.addr(), topic, 2).await;
    assert_eq!(records[0].text(), format!("\"{accepted}\""));
    assert_eq!(records[1].text(), "\"next\"");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_killed_and_restarted_under_a_running_sidecar() {
    let mut broker = Broker::dedicated();
    let topic = unique("killed");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        |_| {},
    )
    .await;
    let http = sidecar.http();
    assert_eq!(post(&http, "before").await.0, 204);

    broker.kill();
    assert_invoke_failed(&post(&http, "while down").await);
    assert_invoke_failed(&post(&http, "while down again").await);
    assert_eq!(get_status(format!("{http}/v1.0/healthz")).await, 204);

    // Same log directory: the topic and "before" are still there.
    broker.restart();
    let accepted = post_until_accepted(&http).await;
    assert_eq!(post(&http, "after").await.0, 204);

    let records = read_back(broker.addr(), topic, 3).await;
    let texts: Vec<String> = records.iter().map(Record::text).collect();
    assert_eq!(texts[0], "\"before\"", "{texts:?}");
    assert_eq!(
        texts[texts.len() - 2],
        format!("\"{accepted}\""),
        "{texts:?}"
    );
    assert_eq!(texts[texts.len() - 1], "\"after\"", "{texts:?}");
    sidecar.stop().await;
}
