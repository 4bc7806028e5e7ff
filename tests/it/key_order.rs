//! `deliveryOrder: key` on the real broker: records with the same key reach the
//! app in order and never two at once, different keys concurrently, at most
//! `maxInFlightPerPartition` per partition; a SIGKILL mid-stream loses nothing
//! and the committed offset never passes a record the app has not accepted; a
//! poison record holds back only its own key (and with a dead-letter topic
//! moves aside, then its key resumes); records without a key are each a key of
//! their own; the default stays one delivery at a time per partition; the two
//! metadata fields are checked at load time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use outrigger::bindings::{self, kafka::KafkaMetadata};
use outrigger::config::{self, ConfigError};

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(120);

/// One delivery the app got.
#[derive(Debug, Clone)]
struct Delivery {
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: String,
    /// 1 for the first delivery of this record, 2 for its first retry, ...
    attempt: usize,
}

#[derive(Default)]
struct Seen {
    in_flight: HashMap<i32, usize>,
    max_in_flight: HashMap<i32, usize>,
    /// Keys with a delivery in flight.
    busy: HashSet<(i32, String)>,
    /// A key delivered while a delivery of it was in flight.
    overlaps: Vec<String>,
    attempts: HashMap<(i32, i64), usize>,
    /// In arrival order.
    calls: Vec<Delivery>,
    /// In answer order.
    accepted: Vec<Delivery>,
}

/// How long the app takes over a delivery, and its status code.
type Script = Arc<dyn Fn(&Delivery) -> (Duration, u16) + Send + Sync>;

struct AppState {
    seen: Arc<Mutex<Seen>>,
    script: Script,
}

/// An HTTP app that tracks, per partition, how many deliveries are in flight
/// and whether a key is ever delivered twice at once.
struct KeyApp {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for KeyApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ends a delivery in the books, also when the sidecar hangs up first.
struct Leave {
    seen: Arc<Mutex<Seen>>,
    partition: i32,
    key: Option<(i32, String)>,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut s = self.seen.lock().unwrap();
        *s.in_flight.entry(self.partition).or_default() -= 1;
        if let Some(k) = &self.key {
            s.busy.remove(k);
        }
    }
}

async fn handle(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST {
        // The sidecar's `OPTIONS /{route}` probe: the route is served.
        return StatusCode::OK;
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let partition: i32 = h("__partition").and_then(|v| v.parse().ok()).unwrap_or(-1);
    let offset: i64 = h("__offset").and_then(|v| v.parse().ok()).unwrap_or(-1);
    let key = h("__key");
    let (delivery, leave) = {
        let mut s = st.seen.lock().unwrap();
        let attempt = s.attempts.entry((partition, offset)).or_default();
        *attempt += 1;
        let d = Delivery {
            partition,
            offset,
            key: key.clone(),
            payload: String::from_utf8_lossy(&body).into_owned(),
            attempt: *attempt,
        };
        s.calls.push(d.clone());
        let n = s.in_flight.entry(partition).or_default();
        *n += 1;
        let n = *n;
        let max = s.max_in_flight.entry(partition).or_default();
        *max = (*max).max(n);
        let mut lane = None;
        if let Some(k) = &key {
            if s.busy.insert((partition, k.clone())) {
                lane = Some((partition, k.clone()));
            } else {
                s.overlaps.push(format!(
                    "{k} at {partition}/{offset} while one of it was in flight"
                ));
            }
        }
        (
            d,
            Leave {
                seen: st.seen.clone(),
                partition,
                key: lane,
            },
        )
    };
    let (wait, code) = (st.script)(&delivery);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    // Leave before the answer goes out: the sidecar may send the key's next
    // record as soon as it has the answer.
    let ok = (200..300).contains(&code);
    {
        let mut s = st.seen.lock().unwrap();
        if ok {
            s.accepted.push(delivery);
        }
    }
    drop(leave);
    StatusCode::from_u16(code).unwrap()
}

impl KeyApp {
    async fn start(
        script: impl Fn(&Delivery) -> (Duration, u16) + Send + Sync + 'static,
    ) -> KeyApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Arc::new(AppState {
            seen: seen.clone(),
            script: Arc::new(script),
        });
        let router = Router::new().fallback(handle).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        KeyApp { port, seen, task }
    }

    fn accepted(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().accepted.clone()
    }
    fn calls(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().calls.clone()
    }
    /// Distinct (partition, offset) accepted.
    fn accepted_set(&self) -> BTreeSet<(i32, i64)> {
        self.accepted()
            .iter()
            .map(|d| (d.partition, d.offset))
            .collect()
    }
    fn max_in_flight(&self, partition: i32) -> usize {
        self.seen
            .lock()
            .unwrap()
            .max_in_flight
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }
    fn overlaps(&self) -> Vec<String> {
        self.seen.lock().unwrap().overlaps.clone()
    }
}

/// A number that looks random but is fixed for `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A latency from 0 to `max_ms` ms that looks random but is fixed per delivery.
fn jitter(d: &Delivery, max_ms: u64) -> Duration {
    let x = mix((d.partition as u64) << 40 ^ (d.offset as u64) << 4 ^ d.attempt as u64);
    Duration::from_micros(x % (max_ms * 1000 + 1))
}

/// One record to produce.
struct Rec {
    partition: i32,
    key: Option<String>,
    payload: String,
}

/// `count` records over `keys` keys (`key-0`, ...) in a scrambled order, a
/// quarter of them on five hot keys, so that records of one key often follow
/// each other closely; payload `key-K#seq`. Key K goes to partition
/// K % `partitions`, so a key's order is its produce order.
fn keyed(count: usize, keys: usize, partitions: i32) -> Vec<Rec> {
    let mut seq = vec![0usize; keys];
    (0..count)
        .map(|i| {
            let x = mix(i as u64);
            let k = if x.is_multiple_of(4) {
                (x >> 8) as usize % 5.min(keys)
            } else {
                (x >> 8) as usize % keys
            };
            seq[k] += 1;
            Rec {
                partition: k as i32 % partitions,
                key: Some(format!("key-{k}")),
                payload: format!("key-{k}#{}", seq[k] - 1),
            }
        })
        .collect()
}

/// Produces all records with one idempotent producer: in order per partition,
/// without waiting for each acknowledgement.
async fn produce_all(brokers: &str, topic: &str, recs: &[Rec]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let sends = recs.iter().map(|r| {
        let mut record = FutureRecord::<String, String>::to(topic)
            .payload(&r.payload)
            .partition(r.partition);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        producer.send(record, Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("produce");
    }
}

/// Every (partition, offset) of a fresh topic fed with `recs`.
fn all_offsets(recs: &[Rec]) -> BTreeSet<(i32, i64)> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    recs.iter()
        .map(|r| {
            let o = next.entry(r.partition).or_default();
            *o += 1;
            (r.partition, *o - 1)
        })
        .collect()
}

/// Per key, the accepted records must be in offset order (each once, since
/// nothing is delivered twice within one run).
fn assert_key_order(accepted: &[Delivery]) {
    let mut per_key: HashMap<(i32, &str), Vec<i64>> = HashMap::new();
    for d in accepted {
        if let Some(k) = &d.key {
            per_key.entry((d.partition, k)).or_default().push(d.offset);
        }
    }
    for ((p, k), offsets) in &per_key {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "key {k} on partition {p} accepted out of order: {offsets:?}"
        );
    }
}

async fn committed_async(brokers: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let (b, g, t) = (brokers.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || committed(&b, &g, &t, partition))
        .await
        .unwrap()
}

async fn wait_committed(brokers: &str, group: &str, topic: &str, partition: i32, want: i64) {
    wait_until(
        &format!("{topic}[{partition}] committed at {want}"),
        DEADLINE,
        || async {
            (committed_async(brokers, group, topic, partition).await == Some(want)).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn same_key_in_order_different_keys_in_parallel() {
    const N: usize = 16;
    let broker = Broker::shared();
    let (topic, group) = (unique("keys"), unique("group"));
    broker.create_topic(&topic, 2);
    let recs = keyed(3000, 100, 2);
    produce_all(&broker.addr(), &topic, &recs).await;
    let app = KeyApp::start(|d| (jitter(d, 6), 200)).await;
    let component = input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[("deliveryOrder", "key"), ("maxInFlightPerPartition", "16")],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    let want = all_offsets(&recs);
    wait_cond_async("all 3000 records accepted", || app.accepted_set() == want).await;
    let accepted = app.accepted();
    assert_eq!(accepted.len(), 3000, "each record once");
    assert_eq!(
        app.overlaps(),
        Vec::<String>::new(),
        "a key twice in flight"
    );
    assert_key_order(&accepted);
    // Payloads confirm the order is the produce order, not just the offsets.
    let mut seq: HashMap<String, usize> = HashMap::new();
    for d in &accepted {
        let (k, n) = d.payload.split_once('#').unwrap();
        let expected = seq.entry(k.to_string()).or_default();
        assert_eq!(n.parse::<usize>().unwrap(), *expected, "{k} out of order");
        *expected += 1;
    }
    for p in 0..2 {
        let m = app.max_in_flight(p);
        assert!(
            m > 1 && m <= N,
            "partition {p}: {m} in flight at most (1 < m ≤ {N})"
        );
        let end = want.iter().filter(|(q, _)| *q == p).count() as i64;
        wait_committed(&broker.addr(), &group, &topic, p, end).await;
    }
    sidecar.stop().await;
}

/// Waits until `check` holds, polling every 20 ms.
async fn wait_cond_async(what: &str, mut check: impl FnMut() -> bool) {
    wait_until(what, DEADLINE, || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_nothing_and_commits_only_below_the_oldest_unaccepted() {
    const TOTAL: usize = 2000;
    let broker = Broker::shared();
    let (topic, group) = (unique("keykill"), unique("group"));
    broker.create_topic(&topic, 2);
    let mut recs = keyed(TOTAL, 40, 2);
    // Three records of partition 0 get a key of their own; the app holds the
    // first one (offset 9) until the kill, while every other key runs ahead.
    let p0: Vec<usize> = (0..TOTAL).filter(|&i| recs[i].partition == 0).collect();
    for (n, &i) in [p0[9], p0[400], p0[800]].iter().enumerate() {
        recs[i].key = Some("slow".into());
        recs[i].payload = format!("slow#{n}");
    }
    const HELD: i64 = 9;
    produce_all(&broker.addr(), &topic, &recs).await;
    let end1 = (TOTAL - p0.len()) as i64;
    let dir = components_dir(&[input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[("deliveryOrder", "key"), ("maxInFlightPerPartition", "32")],
    )]);
    let log = dir.path().join("sidecar.log");
    let quick = |d: &Delivery| (Duration::from_millis(1) + jitter(d, 10), 200);

    let app1 = KeyApp::start(move |d| {
        if d.payload == "slow#0" {
            (Duration::from_secs(50), 200)
        } else {
            quick(d)
        }
    })
    .await;
    let mut first = SidecarProc::builder(dir.path())
        .app_port(app1.port)
        .log(&log)
        .start();
    wait_cond_async("300 records of partition 0 past the held one", || {
        app1.accepted_set().range((0, HELD + 1)..(1, 0)).count() >= 300
    })
    .await;
    // One more record, and its commit: an auto-commit ran after the above.
    let marker = [Rec {
        partition: 1,
        key: Some("marker".into()),
        payload: "marker".into(),
    }];
    produce_all(&broker.addr(), &topic, &marker).await;
    wait_committed(&broker.addr(), &group, &topic, 1, end1 + 1).await;
    first.kill9();
    let run1 = app1.accepted_set();
    assert!(
        !run1.contains(&(0, HELD)),
        "the held record was in flight at the kill"
    );
    assert_eq!(app1.overlaps(), Vec::<String>::new());
    assert_key_order(&app1.accepted());

    let mut resume = BTreeMap::new();
    for p in 0..2 {
        let c = committed_async(&broker.addr(), &group, &topic, p)
            .await
            .unwrap_or(0);
        let unaccepted = (0..c).find(|o| !run1.contains(&(p, *o)));
        assert_eq!(
            unaccepted, None,
            "partition {p}: committed {c}, past a record the app never accepted"
        );
        resume.insert(p, c);
    }
    assert_eq!(
        resume[&0], HELD,
        "partition 0 commits up to the held record, not past it"
    );

    let app2 = KeyApp::start(quick).await;
    let _second = SidecarProc::builder(dir.path())
        .app_port(app2.port)
        .log(&log)
        .start();
    let mut want = all_offsets(&recs);
    want.insert((1, end1));
    let from_resume: BTreeSet<(i32, i64)> = want
        .iter()
        .filter(|(p, o)| *o >= resume[p])
        .copied()
        .collect();
    wait_cond_async(
        "every record from the committed offsets on, after the restart",
        || app2.accepted_set().is_superset(&from_resume),
    )
    .await;
    assert_eq!(
        app2.accepted_set(),
        from_resume,
        "the restart resumes exactly at the committed offsets {resume:?}"
    );
    let union: BTreeSet<(i32, i64)> = run1.union(&app2.accepted_set()).copied().collect();
    assert_eq!(union, want, "every record delivered at least once");
    assert_eq!(app2.overlaps(), Vec::<String>::new());
    assert_key_order(&app2.accepted());
}

/// A hot key of `keyed`.
const POISON_KEY: &str = "key-3";

/// The offsets of `key`'s records on a one-partition topic fed with `recs`.
fn offsets_of(recs: &[Rec], key: &str) -> Vec<i64> {
    (0..recs.len() as i64)
        .filter(|&o| recs[o as usize].key.as_deref() == Some(key))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_blocks_only_its_key() {
    let broker = Broker::shared();
    let (topic, group) = (unique("poison"), unique("group"));
    broker.create_topic(&topic, 1);
    let recs = keyed(200, 10, 1);
    produce_all(&broker.addr(), &topic, &recs).await;
    let app = KeyApp::start(|d| {
        if d.key.as_deref() == Some(POISON_KEY) {
            (Duration::ZERO, 500)
        } else {
            (jitter(d, 3), 200)
        }
    })
    .await;
    let component = input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[("deliveryOrder", "key")],
    );
    let poison = offsets_of(&recs, POISON_KEY);
    // Fewer than maxInFlightPerPartition (64) wait behind it, so the partition never pauses.
    assert!(
        poison.len() > 1 && poison.len() < 64,
        "{} poison records",
        poison.len()
    );
    let first = poison[0];
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    let others: BTreeSet<(i32, i64)> = (0..200)
        .filter(|o| !poison.contains(o))
        .map(|o| (0, o))
        .collect();
    wait_cond_async("the records of the other keys", || {
        app.accepted_set() == others
    })
    .await;
    // The poison key's first record is retried; its later ones wait.
    wait_cond_async("the poison record retried", || {
        app.calls()
            .iter()
            .any(|d| d.offset == first && d.attempt >= 3)
    })
    .await;
    let poison_calls: BTreeSet<i64> = app
        .calls()
        .iter()
        .filter(|d| d.key.as_deref() == Some(POISON_KEY))
        .map(|d| d.offset)
        .collect();
    assert_eq!(
        poison_calls,
        BTreeSet::from([first]),
        "only its first record was tried"
    );
    assert_key_order(&app.accepted());
    assert_eq!(app.overlaps(), Vec::<String>::new());
    // Everything before the poison record is committed, nothing past it.
    wait_committed(&broker.addr(), &group, &topic, 0, first).await;
    let s = input_status(&sidecar.http(), "orders").await;
    assert!(s["failedAttempts"].as_u64() >= Some(2), "{s}");
    assert_eq!(s["delivered"], others.len(), "{s}");
    sidecar.stop().await;
    assert_eq!(
        committed_async(&broker.addr(), &group, &topic, 0).await,
        Some(first),
        "the shutdown commit stays below the poison record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_moves_to_the_dead_letter_topic_and_its_key_resumes() {
    let broker = Broker::shared();
    let (topic, group, dlq) = (unique("poison"), unique("group"), unique("dlq"));
    broker.create_topic(&topic, 1);
    broker.create_topic(&dlq, 1);
    let recs = keyed(200, 10, 1);
    produce_all(&broker.addr(), &topic, &recs).await;
    let app = KeyApp::start(|d| {
        if d.payload == format!("{POISON_KEY}#0") {
            (Duration::ZERO, 500)
        } else {
            (jitter(d, 3), 200)
        }
    })
    .await;
    let component = input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[
            ("deliveryOrder", "key"),
            ("maxInFlightPerPartition", "8"),
            ("deadLetterTopic", &dlq),
            ("maxDeliveryAttempts", "3"),
        ],
    );
    // More than maxInFlightPerPartition (8) of its key follow it: the partition
    // pauses for a while once 8 wait, then goes on once it is moved aside.
    let poison = offsets_of(&recs, POISON_KEY);
    assert!(
        poison.len() > 9,
        "{} records of the poison key",
        poison.len()
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    let rest: BTreeSet<(i32, i64)> = (0..200)
        .filter(|o| *o != poison[0])
        .map(|o| (0, o))
        .collect();
    wait_cond_async("every record but the poison one", || {
        app.accepted_set() == rest
    })
    .await;
    let calls = app.calls();
    let tries: Vec<usize> = calls
        .iter()
        .filter(|d| d.offset == poison[0])
        .map(|d| d.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2, 3], "maxDeliveryAttempts 3, then aside");
    let last_try = calls.iter().rposition(|d| d.offset == poison[0]).unwrap();
    let next_of_key = calls.iter().position(|d| d.offset == poison[1]).unwrap();
    assert!(
        next_of_key > last_try,
        "the key's next record waits for the poison one"
    );
    assert_key_order(&app.accepted());
    assert_eq!(app.overlaps(), Vec::<String>::new());
    let moved = read_back(broker.addr(), dlq.clone(), 1).await;
    assert_eq!(moved[0].text(), format!("{POISON_KEY}#0"));
    assert_eq!(moved[0].key_text().as_deref(), Some(POISON_KEY));
    wait_committed(&broker.addr(), &group, &topic, 0, 200).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_without_a_key_are_delivered_concurrently() {
    let broker = Broker::shared();
    let (topic, group) = (unique("nokey"), unique("group"));
    broker.create_topic(&topic, 1);
    let recs: Vec<Rec> = (0..300)
        .map(|i| Rec {
            partition: 0,
            key: None,
            payload: format!("m{i}"),
        })
        .collect();
    produce_all(&broker.addr(), &topic, &recs).await;
    let app = KeyApp::start(|d| (Duration::from_millis(2) + jitter(d, 4), 200)).await;
    let component = input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[("deliveryOrder", "key"), ("maxInFlightPerPartition", "8")],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    let want = all_offsets(&recs);
    wait_cond_async("all 300 records", || app.accepted_set() == want).await;
    let m = app.max_in_flight(0);
    assert!(m > 1 && m <= 8, "{m} in flight at most (1 < m ≤ 8)");
    wait_committed(&broker.addr(), &group, &topic, 0, 300).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_one_delivery_at_a_time_per_partition() {
    let broker = Broker::shared();
    let (topic, group) = (unique("default"), unique("group"));
    broker.create_topic(&topic, 2);
    let recs = keyed(400, 20, 2);
    produce_all(&broker.addr(), &topic, &recs).await;
    let app = KeyApp::start(|d| (jitter(d, 3), 200)).await;
    let component = input_component("orders", &broker.addr(), &topic, &group, &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;
    let want = all_offsets(&recs);
    wait_cond_async("all 400 records", || app.accepted_set() == want).await;
    for p in 0..2 {
        assert_eq!(app.max_in_flight(p), 1, "partition {p}");
        let offsets: Vec<i64> = app
            .accepted()
            .iter()
            .filter(|d| d.partition == p)
            .map(|d| d.offset)
            .collect();
        let end = want.iter().filter(|(q, _)| *q == p).count() as i64;
        assert_eq!(
            offsets,
            (0..end).collect::<Vec<_>>(),
            "partition {p} in offset order"
        );
    }
    sidecar.stop().await;
}

fn plan(items: &[(&str, &str)]) -> (Vec<bindings::Planned>, Vec<ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: k\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n    - name: brokers\n      value: 127.0.0.1:9092\n    - name: topics\n      value: t\n    - name: consumerGroup\n      value: g\n".to_string();
    for (k, v) in items {
        doc.push_str(&format!("    - name: {k}\n      value: {v:?}\n"));
    }
    std::fs::write(dir.path().join("k.yaml"), doc).unwrap();
    let paths: Vec<PathBuf> = vec![dir.path().to_path_buf()];
    let (components, mut errors) = config::load(&paths, "app");
    let (planned, plan_errors) = bindings::plan(components);
    errors.extend(plan_errors);
    (planned, errors)
}

fn in_flight_of(items: &[(&str, &str)]) -> (bool, u32) {
    let (planned, errors) = plan(items);
    assert!(errors.is_empty(), "{errors:?}");
    match planned[0].metadata::<KafkaMetadata>() {
        Some(m) => (m.key_ordered(), m.max_in_flight_per_partition()),
        None => panic!("not kafka: {:?}", planned[0].plan),
    }
}

#[test]
fn delivery_order_metadata() {
    assert_eq!(in_flight_of(&[]), (false, 1), "default: one per partition");
    assert_eq!(in_flight_of(&[("deliveryOrder", "partition")]), (false, 1));
    assert_eq!(
        in_flight_of(&[("deliveryOrder", "key")]),
        (true, 64),
        "key: 64 by default"
    );
    assert_eq!(
        in_flight_of(&[("deliveryOrder", "Key"), ("maxInFlightPerPartition", "1")]),
        (true, 1)
    );
    assert_eq!(
        in_flight_of(&[
            ("deliveryOrder", "key"),
            ("maxInFlightPerPartition", "1024")
        ]),
        (true, 1024)
    );
    let refused = |items: &[(&str, &str)], field: &str, why: &str| {
        let (_, errors) = plan(items);
        assert_eq!(errors.len(), 1, "{items:?}: {errors:?}");
        assert_eq!(errors[0].field.as_deref(), Some(field), "{items:?}");
        assert!(
            errors[0].message.contains(why),
            "{items:?}: {}",
            errors[0].message
        );
    };
    refused(
        &[("deliveryOrder", "offset")],
        "deliveryOrder",
        "expected `partition`",
    );
    refused(
        &[("maxInFlightPerPartition", "8")],
        "maxInFlightPerPartition",
        "needs `deliveryOrder: key`",
    );
    refused(
        &[
            ("deliveryOrder", "partition"),
            ("maxInFlightPerPartition", "8"),
        ],
        "maxInFlightPerPartition",
        "needs `deliveryOrder: key`",
    );
    for (v, why) in [
        ("0", "at least 1"),
        ("1025", "at most 1024"),
        ("-1", "whole number"),
        ("many", "whole number"),
    ] {
        refused(
            &[("deliveryOrder", "key"), ("maxInFlightPerPartition", v)],
            "maxInFlightPerPartition",
            why,
        );
    }
}
