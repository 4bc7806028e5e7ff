//! Prometheus metrics: after a known number of output calls and input
//! deliveries, `/metrics` reports exactly those counts.

use std::time::Duration;

use crate::support::*;

/// The value of the one sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_output_calls_input_deliveries_and_retries() {
    let broker = Broker::start();
    let out_topic = unique("metrics-out");
    let in_topic = unique("metrics-in");
    broker.create_topic(&out_topic, 1);
    broker.create_topic(&in_topic, 1);
    // The app refuses offset 2 once, so there is exactly one failed attempt.
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(2) && c.attempt == 1 {
                Answer::Status(500)
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let docs = [
        kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &out_topic), ("direction", "output")],
        ),
        // Nothing listens on this broker address: every call fails.
        kafka_component(
            "nowhere",
            &closed_addr(),
            &[("publishTopic", "x"), ("produceTimeout", "2s")],
        ),
        input_component("events", &broker.addr(), &in_topic, &unique("group"), &[]),
    ];
    let sidecar = start_sidecar(&docs, |c| {
        c.app_port = Some(app.port);
        c.metrics_port = Some(0);
    })
    .await;
    let metrics_url = format!(
        "http://{}/metrics",
        sidecar.sidecar.as_ref().unwrap().metrics_addrs()[0]
    );

    let client = reqwest::Client::new();
    let post = |name: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1.0/bindings/{name}", sidecar.http());
        async move {
            client
                .post(url)
                .body(r#"{"data":1,"operation":"create"}"#)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..7 {
        assert_eq!(post("orders").await, 204);
    }
    for _ in 0..2 {
        assert_eq!(post("nowhere").await, 500);
    }
    produce(&broker.addr(), &in_topic, numbered(5, 1)).await;
    wait_cond("5 accepted deliveries", Duration::from_secs(60), || {
        app.accepted_count() >= 5
    })
    .await;

    let text = wait_until(
        "the delivery counts in /metrics",
        Duration::from_secs(10),
        || {
            let (client, url) = (client.clone(), metrics_url.clone());
            async move {
                let text = client.get(url).send().await.ok()?.text().await.ok()?;
                let delivered = sample(&text, "dapr_component_input_binding_count{")?;
                (delivered == 5.0).then_some(text)
            }
        },
    )
    .await;
    let app_id = &sidecar.sidecar.as_ref().unwrap().state().app_id;
    let out = |name: &str, ok: &str| {
        sample(
            &text,
            &format!(
                "dapr_component_output_binding_count{{app_id=\"{app_id}\",component=\"{name}\",type=\"bindings.kafka\",success=\"{ok}\"}}"
            ),
        )
    };
    assert_eq!(out("orders", "true"), Some(7.0), "{text}");
    assert_eq!(out("orders", "false"), Some(0.0), "{text}");
    assert_eq!(out("nowhere", "true"), Some(0.0), "{text}");
    assert_eq!(out("nowhere", "false"), Some(2.0), "{text}");
    let latency_count = sample(
        &text,
        &format!(
            "dapr_component_output_binding_latencies_count{{app_id=\"{app_id}\",component=\"orders\",type=\"bindings.kafka\"}}"
        ),
    );
    assert_eq!(latency_count, Some(7.0), "{text}");
    let failed = sample(
        &text,
        &format!(
            "outrigger_input_binding_failed_attempts_total{{app_id=\"{app_id}\",component=\"events\"}}"
        ),
    );
    assert_eq!(failed, Some(1.0), "{text}");
    let channel = |ok: &str| {
        sample(
            &text,
            &format!(
                "outrigger_app_channel_requests_total{{app_id=\"{app_id}\",component=\"events\",success=\"{ok}\"}}"
            ),
        )
    };
    assert_eq!(
        (channel("true"), channel("false")),
        (Some(5.0), Some(1.0)),
        "{text}"
    );
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "{text}"
    );

    // The consumer's statistics (every 5 s) report the partition caught up.
    let lag_series = format!(
        "outrigger_input_binding_consumer_lag{{app_id=\"{app_id}\",component=\"events\",topic=\"{in_topic}\",partition=\"0\"}}"
    );
    wait_until(
        "consumer lag 0 in /metrics",
        Duration::from_secs(30),
        || {
            let (client, url, series) = (client.clone(), metrics_url.clone(), lag_series.clone());
            async move {
                let text = client.get(url).send().await.ok()?.text().await.ok()?;
                (sample(&text, &series)? == 0.0).then_some(())
            }
        },
    )
    .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_turned_off_and_a_taken_port_is_not_fatal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sidecar = start_sidecar(&[], |c| c.metrics_port = Some(port)).await;
    assert!(sidecar.sidecar.as_ref().unwrap().metrics_addrs().is_empty());
    let health = reqwest::get(format!("{}/v1.0/healthz", sidecar.http()))
        .await
        .unwrap();
    assert_eq!(health.status(), 204);
    sidecar.stop().await;

    let off = start_sidecar(&[], |c| c.metrics_port = None).await;
    assert!(off.sidecar.as_ref().unwrap().metrics_addrs().is_empty());
    off.stop().await;
}
