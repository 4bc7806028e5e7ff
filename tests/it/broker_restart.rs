//! An Apache Kafka broker (each test its own, `Broker::dedicated`) is SIGKILLed
//! and restarted on the same log directory, stalled, emptied or loses a topic
//! under a running `outrigger sidecar` process.
//! Output: every write the sidecar acknowledged is on the topic after a restart,
//! failed writes get a 500 in bounded time, a stalled broker gets bounded
//! answers and nothing piles up. Input: every message is delivered at least
//! once and in order per partition across a restart; the sidecar survives a
//! broker that comes back empty and the deletion of a consumed topic.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(90);
/// The `produceTimeout` of the output tests, and the slack allowed on top of it
/// for an answer (a bound on hanging, not a performance figure).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_SLACK: Duration = Duration::from_secs(4);

/// An `outrigger sidecar` child process over the components in `dir`.
fn start_sidecar_proc(dir: &Path, app_port: Option<u16>) -> SidecarProc {
    let builder = SidecarProc::builder(dir)
        .app_id("restarts")
        .ready_within(DEADLINE);
    match app_port {
        Some(port) => builder.app_port(port),
        None => builder,
    }
    .start()
}

/// The answer to one `create` through the sidecar.
#[derive(Debug, Clone)]
struct Outcome {
    data: String,
    status: u16,
    body: Value,
    took: Duration,
}

impl Outcome {
    fn acked(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Posts one `create`; status 0 when no answer came within a minute.
async fn post(client: &reqwest::Client, http: &str, data: &str) -> Outcome {
    let started = Instant::now();
    let body = serde_json::json!({"data": data, "operation": "create"});
    let sent = client
        .post(format!("{http}/v1.0/bindings/orders"))
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let (status, body) = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    };
    Outcome {
        data: data.to_string(),
        status,
        body,
        took: started.elapsed(),
    }
}

/// A failed write: 500 with Dapr's output binding error, answered in bounded time.
fn assert_failed_cleanly(o: &Outcome, timeout: Duration) {
    assert_eq!(o.status, 500, "{o:?}");
    assert_eq!(o.body["errorCode"], "ERR_INVOKE_OUTPUT_BINDING", "{o:?}");
    assert!(
        o.took <= timeout + ANSWER_SLACK,
        "answered after {:?} with produceTimeout {timeout:?}: {o:?}",
        o.took
    );
}

/// Every payload on `topic`, as written by the sidecar (JSON strings).
async fn topic_payloads(brokers: String, topic: String, at_least: usize) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        // Wait for what must be there, then take whatever else is.
        read_topic(&brokers, &topic, at_least, Duration::from_secs(60));
        read_all(&brokers, &topic, Duration::from_secs(3))
            .iter()
            .map(|r| r.text())
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_a_broker_restart() {
    // Concurrency 16, as an app with a connection pool would write.
    const WRITERS: usize = 16;
    const RESTARTS: usize = 3;
    let mut broker = Broker::dedicated();
    let topic = unique("acked");
    broker.create_topic(&topic, 2);
    let timeout = format!("{}s", PRODUCE_TIMEOUT.as_secs());
    let dir = components_dir(&[kafka_component(
        "orders",
        &broker.addr(),
        &[("publishTopic", &topic), ("produceTimeout", &timeout)],
    )]);
    let mut sidecar = start_sidecar_proc(dir.path(), None);
    let http = sidecar.http();

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (outcomes, stop, http) = (outcomes.clone(), stop.clone(), http.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u32;
            while !stop.is_cancelled() {
                let o = post(&client, &http, &format!("w{w}-{n}")).await;
                n += 1;
                let failed = !o.acked();
                outcomes.lock().unwrap().push(o);
                if failed {
                    // Pacing, not synchronisation: failures come back at once.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let count = |pred: fn(&Outcome) -> bool| {
        let outcomes = outcomes.clone();
        move || outcomes.lock().unwrap().iter().filter(|o| pred(o)).count()
    };
    let acked = count(Outcome::acked);
    let failed = count(|o| !o.acked());

    wait_cond("30 writes acknowledged", DEADLINE, || acked() >= 30).await;
    for round in 0..RESTARTS {
        broker.kill();
        let failed_before = failed();
        wait_cond(
            &format!("5 writes refused while the broker is down ({round})"),
            DEADLINE,
            || failed() >= failed_before + 5,
        )
        .await;
        let acked_while_down = acked();
        broker.restart();
        wait_cond(
            &format!("30 more writes acknowledged after restart {round}"),
            DEADLINE,
            || acked() >= acked_while_down + 30,
        )
        .await;
        sidecar.assert_alive();
    }
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    sidecar.assert_alive();

    let outcomes = outcomes.lock().unwrap().clone();
    let (ok, refused): (Vec<&Outcome>, Vec<&Outcome>) = outcomes.iter().partition(|o| o.acked());
    for o in &refused {
        assert_failed_cleanly(o, PRODUCE_TIMEOUT);
    }
    for o in &ok {
        assert!(
            o.took <= PRODUCE_TIMEOUT + ANSWER_SLACK,
            "acknowledged after {:?}",
            o.took
        );
    }
    let on_topic = topic_payloads(broker.addr(), topic, ok.len()).await;
    let found: HashSet<&str> = on_topic.iter().map(String::as_str).collect();
    let lost: Vec<&str> = ok
        .iter()
        .map(|o| o.data.as_str())
        .filter(|d| !found.contains(format!("\"{d}\"").as_str()))
        .collect();
    let refused_but_written = refused
        .iter()
        .filter(|o| found.contains(format!("\"{}\"", o.data).as_str()))
        .count();
    let slowest_refusal = refused.iter().map(|o| o.took).max().unwrap_or_default();
    println!(
        "output across {RESTARTS} restarts: {} sent, {} acknowledged, {} refused ({} of them written anyway, \
         slowest refusal {slowest_refusal:?}), {} records on the topic ({} distinct), {} acknowledged missing",
        outcomes.len(),
        ok.len(),
        refused.len(),
        refused_but_written,
        on_topic.len(),
        found.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but not on the topic after the restart: {lost:?}"
    );
}

/// Checks at-least-once and per-partition order in what the app accepted:
/// every expected offset was accepted, and within a partition the offsets
/// never jump ahead (a redelivery may go back, never skip). Returns how many
/// deliveries were repeats.
fn assert_at_least_once_in_order(app: &HttpApp, partitions: i32, per_partition: i64) -> usize {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for c in app.accepted() {
        by_partition
            .entry(c.partition().unwrap())
            .or_default()
            .push(c.offset().unwrap());
    }
    let mut repeats = 0;
    for p in 0..partitions {
        let offsets = by_partition.get(&p).cloned().unwrap_or_default();
        let distinct: BTreeSet<i64> = offsets.iter().copied().collect();
        assert_eq!(
            distinct,
            (0..per_partition).collect::<BTreeSet<_>>(),
            "partition {p}: every offset delivered"
        );
        let mut high = -1;
        for o in &offsets {
            assert!(
                *o <= high + 1,
                "partition {p}: offset {o} delivered before {} ({offsets:?})",
                high + 1
            );
            high = high.max(*o);
        }
        repeats += offsets.len() - distinct.len();
    }
    repeats
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_delivered_when_the_broker_restarts_mid_stream() {
    const PARTITIONS: i32 = 2;
    const BEFORE: usize = 200;
    const AFTER: usize = 40;
    let mut broker = Broker::dedicated();
    let topic = unique("restart");
    broker.create_topic(&topic, PARTITIONS);
    produce(&broker.addr(), &topic, numbered(BEFORE, PARTITIONS)).await;
    // Slow enough that the restart lands mid-stream.
    let app = HttpApp::builder()
        .script(|_| Answer::After(Duration::from_millis(20), 200))
        .start()
        .await;
    let dir = components_dir(&[input_component(
        "stream",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[],
    )]);
    let mut sidecar = start_sidecar_proc(dir.path(), Some(app.port));
    let http = sidecar.http();

    wait_cond("40 deliveries before the restart", DEADLINE, || {
        app.accepted_count() >= 40
    })
    .await;
    broker.kill();
    wait_input_state(&http, "stream", "error", DEADLINE).await;
    let before_restart = app.accepted_count();
    broker.restart();
    let late = (BEFORE..BEFORE + AFTER)
        .map(|i| Msg::new(format!("m{i}")).partition(i as i32 % PARTITIONS));
    produce(&broker.addr(), &topic, late).await;

    let per_partition = ((BEFORE + AFTER) / PARTITIONS as usize) as i64;
    wait_until(
        "every message, old and new, delivered",
        Duration::from_secs(120),
        || {
            sidecar.assert_alive();
            let distinct: HashSet<(i32, i64)> = app
                .accepted()
                .iter()
                .map(|c| (c.partition().unwrap(), c.offset().unwrap()))
                .collect();
            let done = distinct.len() == BEFORE + AFTER;
            async move { done.then_some(()) }
        },
    )
    .await;
    assert!(
        before_restart < BEFORE,
        "the restart must land mid-stream ({before_restart} delivered before)"
    );
    let repeats = assert_at_least_once_in_order(&app, PARTITIONS, per_partition);
    wait_input_state(&http, "stream", "subscribed", DEADLINE).await;
    sidecar.assert_alive();
    println!(
        "input across a restart: {} messages, {} delivered before the restart, {} deliveries in all ({repeats} repeats)",
        BEFORE + AFTER,
        before_restart,
        app.accepted_count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_survives_restarts_of_a_broker_that_loses_its_topics() {
    const RESTARTS: usize = 3;
    let mut broker = Broker::dedicated();
    let topic = unique("outage");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::start().await;
    let dir = components_dir(&[input_component(
        "outage",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[],
    )]);
    let mut sidecar = start_sidecar_proc(dir.path(), Some(app.port));
    let http = sidecar.http();
    wait_cond("3 deliveries", DEADLINE, || app.accepted_count() >= 3).await;

    for round in 0..RESTARTS {
        broker.kill();
        wait_input_state(&http, "outage", "error", DEADLINE).await;
        // The broker comes back empty (a new cluster on the same ports): no
        // topic, group or offsets; the topic is made again at once, under a new
        // id, while the consumer still holds the old one. This crashed
        // librdkafka on tansu's answers; Apache Kafka needs no workaround.
        broker.restart_empty();
        broker.create_topic(&topic, 1);
        let text = format!("after outage {round}");
        produce(&broker.addr(), &topic, [Msg::new(text.clone())]).await;
        wait_until(
            &format!("the message produced after outage {round}"),
            DEADLINE,
            || {
                sidecar.assert_alive();
                let got = app.accepted().iter().any(|c| c.text() == text);
                async move { got.then_some(()) }
            },
        )
        .await;
        wait_input_state(&http, "outage", "subscribed", DEADLINE).await;
    }
    sidecar.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_broker_gets_bounded_answers_and_nothing_piles_up() {
    const STALLED_WRITES: usize = 100;
    const CONCURRENCY: usize = 25;
    let produce_timeout = Duration::from_secs(2);
    let mut broker = Broker::dedicated();
    let topic = unique("stall");
    broker.create_topic(&topic, 1);
    let dir = components_dir(&[kafka_component(
        "orders",
        &broker.addr(),
        &[("publishTopic", &topic), ("produceTimeout", "2s")],
    )]);
    let mut sidecar = start_sidecar_proc(dir.path(), None);
    let http = sidecar.http();
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for i in 0..20 {
        let o = post(&client, &http, &format!("warm-{i}")).await;
        assert!(o.acked(), "{o:?}");
        acked.push(o.data);
    }
    let rss_before = sidecar.rss_kib();

    broker.stall();
    let stalled: Vec<Outcome> = futures::stream::iter(0..STALLED_WRITES)
        .map(|i| {
            let (client, http) = (client.clone(), http.clone());
            async move { post(&client, &http, &format!("stalled-{i}")).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // The API itself is not held up by the stalled broker.
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::get(format!("{http}/v1.0/healthz")),
    )
    .await
    .expect("healthz answers while the broker is stalled")
    .unwrap();
    assert_eq!(health.status(), 204);
    let rss_during = sidecar.rss_kib();
    for o in &stalled {
        assert_failed_cleanly(o, produce_timeout);
    }
    // Nothing piles up: a hundred timed-out writes leave no lasting weight.
    assert!(
        rss_during < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_during} KiB"
    );

    broker.resume();
    let mut attempt = 0;
    let first = wait_until("a write accepted after the stall", DEADLINE, || {
        attempt += 1;
        let (client, http) = (client.clone(), http.clone());
        async move {
            let o = post(&client, &http, &format!("after-{attempt}")).await;
            if o.acked() {
                return Some(o.data);
            }
            assert_failed_cleanly(&o, produce_timeout);
            None
        }
    })
    .await;
    acked.push(first);
    // Recovered: ten more writes are acknowledged. A broker just woken from a
    // stall may drop its connections once more while its own timers catch up
    // (seen once in a loaded CI run); a write in that window still fails
    // cleanly, within the bound, and is never counted as written.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (mut ok, mut sent) = (0, 0);
    while ok < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {ok} of {sent} writes acknowledged after the stall"
        );
        let o = post(&client, &http, &format!("next-{sent}")).await;
        sent += 1;
        if o.acked() {
            ok += 1;
            acked.push(o.data);
        } else {
            assert_failed_cleanly(&o, produce_timeout);
        }
    }
    sidecar.assert_alive();
    let on_topic = topic_payloads(broker.addr(), topic, acked.len()).await;
    let found: HashSet<&str> = on_topic.iter().map(String::as_str).collect();
    for d in &acked {
        assert!(
            found.contains(format!("\"{d}\"").as_str()),
            "{d} acknowledged but not on the topic"
        );
    }
    let slowest = stalled.iter().map(|o| o.took).max().unwrap();
    println!(
        "stalled broker: {STALLED_WRITES} writes refused (slowest answer {slowest:?} with produceTimeout {produce_timeout:?}), \
         RSS {rss_before} -> {rss_during} KiB; {} acknowledged writes all on the topic ({} records)",
        acked.len(),
        on_topic.len()
    );
}

// On tansu this crashed librdkafka (a NULL topic name in its answer). On Apache
// Kafka, which auto-creates topics by default, the topic comes back empty at
// once and consumption goes on from `initialOffset` (the group's offsets went
// with the old topic).
#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_survives_the_deletion_of_a_consumed_topic() {
    let broker = Broker::shared();
    let topic = unique("deleted");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::start().await;
    let dir = components_dir(&[input_component(
        "gone",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[],
    )]);
    let mut sidecar = start_sidecar_proc(dir.path(), Some(app.port));
    wait_cond("3 deliveries", DEADLINE, || app.accepted_count() >= 3).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let deleted = admin
        .delete_topics(&[topic.as_str()], &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    // The broker auto-creates topics (Kafka's default), and the consumer's
    // next metadata request names its topic: the topic comes back empty at
    // once, under a new id. The sidecar keeps its subscription; its old
    // position is out of range on the new topic, so `initialOffset` (oldest
    // here) decides where it reads again.
    let started = std::time::Instant::now();
    let states: Arc<Mutex<Vec<String>>> = Arc::default();
    wait_until(
        "the topic to be back in the broker's metadata",
        DEADLINE,
        || {
            sidecar.assert_alive();
            let (http, brokers, topic) = (sidecar.http(), broker.addr(), topic.clone());
            let seen = states.clone();
            async move {
                let s = input_status(&http, "gone").await;
                let state = format!("{} ({})", s["state"], s["detail"]);
                {
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&state) {
                        seen.push(state);
                    }
                }
                let back = tokio::task::spawn_blocking(move || {
                    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", &brokers)
                        .set("allow.auto.create.topics", "false")
                        .create()
                        .unwrap();
                    use rdkafka::consumer::Consumer;
                    consumer
                        .fetch_metadata(Some(&topic), Duration::from_secs(2))
                        .is_ok_and(|m| {
                            m.topics()
                                .iter()
                                .any(|t| t.name() == topic && t.error().is_none())
                        })
                })
                .await
                .unwrap();
                back.then_some(())
            }
        },
    )
    .await;
    produce(&broker.addr(), &topic, [Msg::new("after deletion")]).await;
    wait_until("the record written after the deletion", DEADLINE, || {
        sidecar.assert_alive();
        let got = app.accepted().iter().any(|c| c.text() == "after deletion");
        async move { got.then_some(()) }
    })
    .await;
    wait_input_state(&sidecar.http(), "gone", "subscribed", DEADLINE).await;
    sidecar.assert_alive();
    println!(
        "topic deleted under the consumer: auto-created again, states {:?}, \
         the next record delivered {:?} after the deletion ({} deliveries)",
        states.lock().unwrap(),
        started.elapsed(),
        app.accepted_count()
    );
}
