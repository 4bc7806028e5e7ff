//! Topics: create them, feed them with an independent producer, read them back
//! with an independent consumer (no group), and the component documents that
//! point a binding at them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

/// Creates a topic on `brokers` and waits until the broker reports it.
pub fn create_topic_on(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    // The admin future is driven by librdkafka's thread: no async runtime needed.
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures::executor::block_on(admin.create_topics(&topics, &options)).expect("create_topics");
    for r in results {
        if let Err((name, code)) = r {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "create topic {name}: {code:?}"
            );
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    wait_for(
        &format!("topic {topic} in metadata"),
        Duration::from_secs(30),
        || {
            let md = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0))
            .then_some(())
        },
    );
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, Vec<u8>>,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn record(m: &OwnedMessage) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Reads every partition of `topic` from the beginning, with no consumer group,
/// until `n` records arrived (panics after `timeout`). Records come sorted by
/// partition, then offset.
pub fn read_topic(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = wait_for(&format!("metadata of {topic}"), timeout, || {
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()
            .filter(|md| {
                md.topics()
                    .first()
                    .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
            })
    });
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} records from {topic} within {timeout:?}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(record(&m.detach()));
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// [`read_topic`] on a blocking thread (so that an async test's runtime keeps
/// serving its sidecar): `n` records of `topic`, within 30 s.
pub async fn read_back(
    brokers: impl Into<String>,
    topic: impl Into<String>,
    n: usize,
) -> Vec<Record> {
    let (brokers, topic) = (brokers.into(), topic.into());
    tokio::task::spawn_blocking(move || read_topic(&brokers, &topic, n, Duration::from_secs(30)))
        .await
        .unwrap()
}

/// Reads whatever the topic holds, waiting `settle` with no new record before returning.
pub fn read_all(brokers: &str, topic: &str, settle: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push(record(&m.detach()));
            last = Instant::now();
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// A `bindings.kafka` component; `extra` adds or overrides metadata.
pub fn kafka_component(name: &str, brokers: &str, extra: &[(&str, &str)]) -> String {
    let mut meta: Vec<(String, String)> = vec![("brokers".into(), brokers.into())];
    for (k, v) in extra {
        meta.retain(|(n, _)| n != k);
        meta.push((k.to_string(), v.to_string()));
    }
    let items: String = meta
        .iter()
        .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n{items}"
    )
}

/// The quickstart's Kafka component text (from the example folder or the
/// deploy ConfigMap) pointed at `brokers`, `topic` and `group` instead of its
/// own broker address `was_brokers`, topic `sample` and group `group1`. Fails
/// if the component no longer has that shape.
pub fn retarget_quickstart_component(
    text: &str,
    was_brokers: &str,
    brokers: &str,
    topic: &str,
    group: &str,
) -> String {
    let mut out = String::new();
    let mut replaced = [0; 3];
    let broker_line = format!("value: {was_brokers}");
    for line in text.lines() {
        let trimmed = line.trim();
        let rewritten = if trimmed == broker_line {
            replaced[0] += 1;
            line.replace(was_brokers, brokers)
        } else if trimmed == "value: sample" {
            // `topics` and `publishTopic` both name the topic `sample`.
            replaced[1] += 1;
            line.replace("sample", topic)
        } else if trimmed == "value: group1" {
            replaced[2] += 1;
            line.replace("group1", group)
        } else {
            line.to_string()
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    assert_eq!(replaced, [1, 2, 1], "the component changed shape:\n{text}");
    out
}

/// A Kafka input component that reads `topic` from the start in `group`, with
/// short group timeouts and quick retries; `extra` adds or overrides metadata.
pub fn input_component(
    name: &str,
    brokers: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut meta = vec![
        ("topics", topic),
        ("consumerGroup", group),
        ("initialOffset", "oldest"),
        ("sessionTimeout", "6s"),
        ("heartbeatInterval", "1s"),
        ("consumeRetryInterval", "50ms"),
    ];
    meta.extend_from_slice(extra);
    kafka_component(name, brokers, &meta)
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Msg {
    pub partition: Option<i32>,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// CreateTime in ms since the epoch (the producer's clock when `None`).
    pub timestamp: Option<i64>,
}

impl Msg {
    pub fn new(payload: impl Into<Vec<u8>>) -> Msg {
        Msg {
            payload: payload.into(),
            ..Msg::default()
        }
    }
    pub fn partition(mut self, p: i32) -> Msg {
        self.partition = Some(p);
        self
    }
    pub fn key(mut self, k: &str) -> Msg {
        self.key = Some(k.to_string());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Msg {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn timestamp(mut self, ms: i64) -> Msg {
        self.timestamp = Some(ms);
        self
    }
}

/// Produces the records one after another (each acknowledged before the next),
/// so that their order in a partition is the order given.
pub async fn produce(brokers: &str, topic: &str, msgs: impl IntoIterator<Item = Msg>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    for m in msgs {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic)
            .payload(&m.payload)
            .headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k);
        }
        if let Some(p) = m.partition {
            record = record.partition(p);
        }
        if let Some(t) = m.timestamp {
            record = record.timestamp(t);
        }
        producer
            .send(record, Duration::from_secs(20))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

/// `n` records with payloads `m0`, `m1`, ... spread round-robin over `partitions`.
pub fn numbered(n: usize, partitions: i32) -> Vec<Msg> {
    (0..n)
        .map(|i| Msg::new(format!("m{i}")).partition(i as i32 % partitions))
        .collect()
}

/// The offset `group` has committed on `topic`/`partition` (None when nothing is).
pub fn committed(brokers: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match got.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
