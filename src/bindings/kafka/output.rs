//! Kafka output: `create` produces one record and answers once the broker
//! acknowledged it with `acks=all`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tokio_util::sync::CancellationToken;

use super::metadata::DEFAULT_PRODUCER_LINGER;
use super::metadata::HeaderFilter;
use super::producer::AsyncProducer;
use super::{BrokerHealth, KafkaContext, KafkaMetadata, client_config, spawn_health_probe};
use crate::bindings::{
    BindingError, BoxFuture, InvokeRequest, InvokeResponse, OutputBinding, OutputInit,
};

const OPERATIONS: &[&str] = &["create"];

pub struct KafkaOutput {
    name: String,
    /// `publishTopic` (a component without one gets a `NoTopicOutput`).
    topic: String,
    /// Made at start. With `producerLinger` it lingers that long and takes
    /// every call. Without, it sends at once and takes each call that has no
    /// other in flight (nothing to batch it with, so waiting for a linger
    /// would only add latency and a wake-up).
    producer: AsyncProducer,
    /// Without `producerLinger`: a producer lingering
    /// [`DEFAULT_PRODUCER_LINGER`] so that overlapping calls share batches.
    /// Made in the background when a call first overlaps another, not at
    /// start: its client (threads, connections) would compete with the
    /// start-up for the cores, and a sidecar that never sees overlapping calls
    /// never needs it. Until it exists, every call uses `producer`.
    batching: Arc<OnceLock<AsyncProducer>>,
    /// What `batching` is made from, taken by the first overlapping call;
    /// `None` with `producerLinger` or once taken.
    batching_plan: std::sync::Mutex<Option<BatchingPlan>>,
    /// Set by the first overlapping call: later ones skip the lock.
    batching_asked: AtomicBool,
    /// Calls of this binding waiting for their acknowledgement.
    in_flight: AtomicUsize,
    health: Arc<BrokerHealth>,
    produce_timeout: Duration,
    exclude: Option<HeaderFilter>,
    stop_probe: CancellationToken,
    /// The broker probe, awaited by `close`.
    probe: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for KafkaOutput {
    /// A binding dropped without `close` (a component replaced, a start that
    /// failed half-way) stops its broker probe too.
    fn drop(&mut self) {
        self.stop_probe.cancel();
    }
}

/// A producer for one component: durable writes (`acks=all`), bounded delivery
/// time, batching for `linger`. `queue_bound`, when given, caps the records
/// librdkafka holds for sending; the output-call cap already bounds them, so
/// the default (100,000 records or 1 GiB) would only hide a leak.
pub(crate) fn make_producer(
    name: &str,
    meta: &KafkaMetadata,
    health: Arc<BrokerHealth>,
    queue_bound: Option<usize>,
    linger: Duration,
) -> Result<AsyncProducer, KafkaError> {
    let mut config = client_config(name, meta);
    if let Some(n) = queue_bound {
        config.set(
            "queue.buffering.max.messages",
            n.clamp(1, 10_000_000).to_string(),
        );
    }
    config
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            meta.produce_timeout.as_millis().to_string(),
        )
        .set("linger.ms", format!("{}", linger.as_secs_f64() * 1000.0))
        .set("allow.auto.create.topics", "true")
        // daprd's client (sarama) hashes keys with FNV-1a; librdkafka's default
        // (CRC32) would put the same key on another partition, and a topic
        // written by both sidecars would lose per-key order.
        .set("partitioner", "fnv1a_random");
    if let Some(codec) = meta.compression {
        config.set("compression.type", codec);
    }
    AsyncProducer::new(
        &config,
        KafkaContext {
            binding: name.to_string(),
            brokers: meta.brokers.clone(),
            health,
        },
    )
}

/// What the batching producer of a component without `producerLinger` is made from.
struct BatchingPlan {
    name: String,
    meta: Arc<KafkaMetadata>,
    health: Arc<BrokerHealth>,
    max_in_flight: usize,
}

/// Counts a call in flight until dropped (answered or cancelled).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl KafkaOutput {
    pub fn new(
        name: &str,
        meta: Arc<KafkaMetadata>,
        init: OutputInit,
    ) -> Result<Self, BindingError> {
        let Some(topic) = meta.publish_topic.clone() else {
            return Err(BindingError::Rejected(format!(
                "binding {name} has no publishTopic: it cannot produce"
            )));
        };
        let health = Arc::new(BrokerHealth::default());
        let linger = meta.producer_linger.unwrap_or(Duration::ZERO);
        let producer = make_producer(
            name,
            &meta,
            health.clone(),
            Some(init.max_in_flight),
            linger,
        )
        .map_err(|e| BindingError::Backend {
            context: format!("cannot create the Kafka producer for {name}"),
            source: Box::new(e),
        })?;
        let batching_plan = meta.producer_linger.is_none().then(|| BatchingPlan {
            name: name.to_string(),
            meta: meta.clone(),
            health: health.clone(),
            max_in_flight: init.max_in_flight,
        });
        let stop_probe = CancellationToken::new();
        let probe_producer = producer.clone();
        let probe = spawn_health_probe(
            name.to_string(),
            health.clone(),
            stop_probe.clone(),
            move || {
                probe_producer
                    .client()
                    .fetch_metadata(None, Duration::from_secs(1))
                    .map(|_| ())
            },
        );
        Ok(KafkaOutput {
            name: name.to_string(),
            topic,
            producer,
            batching: Arc::new(OnceLock::new()),
            batching_asked: AtomicBool::new(batching_plan.is_none()),
            batching_plan: std::sync::Mutex::new(batching_plan),
            in_flight: AtomicUsize::new(0),
            health,
            produce_timeout: meta.produce_timeout,
            exclude: meta.exclude_header_meta.clone(),
            stop_probe,
            probe: std::sync::Mutex::new(Some(probe)),
        })
    }

    /// The producer of one call, counted in flight until the guard drops: the
    /// one that sends at once when no other call is waiting (so nothing can
    /// overtake a record already handed over), else the batching one.
    fn producer_for_call(&self) -> (InFlight<'_>, &AsyncProducer) {
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let counted = InFlight(&self.in_flight);
        if alone {
            return (counted, &self.producer);
        }
        match self.batching.get() {
            Some(p) => (counted, p),
            None => {
                self.make_batching();
                (counted, &self.producer)
            }
        }
    }

    /// Starts making the batching producer, once, on a blocking thread.
    fn make_batching(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.batching_asked.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(plan) = self
            .batching_plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let slot = self.batching.clone();
        // Detached: it only fills `slot`; a failure is logged and calls keep
        // going at once.
        drop(tokio::task::spawn_blocking(move || {
            let _runtime = runtime.enter();
            match make_producer(
                &plan.name,
                &plan.meta,
                plan.health,
                Some(plan.max_in_flight),
                DEFAULT_PRODUCER_LINGER,
            ) {
                Ok(p) => {
                    let _ = slot.set(p);
                }
                Err(e) => {
                    tracing::warn!(binding.name = %plan.name, "no batching producer, every call goes at once: {e}")
                }
            }
        }));
    }

    /// daprd's words for a `partitionNumber` the topic does not have.
    async fn partition_out_of_range(&self, topic: &str, partition: i32) -> BindingError {
        let producer = self.producer.clone();
        let t = topic.to_string();
        let count = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&t), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
        })
        .await
        .ok()
        .flatten();
        match count {
            Some(n) => BindingError::Rejected(format!(
                "partition number {partition} is out of range, topic has {n} partitions"
            )),
            None => BindingError::Rejected(format!(
                "partition number {partition} is out of range of topic {topic:?}"
            )),
        }
    }

    fn map_error(&self, e: KafkaError, topic: &str) -> BindingError {
        match e.rdkafka_error_code() {
            // The record may have reached the broker before the connection
            // broke: never say it was not sent.
            Some(RDKafkaErrorCode::MessageTimedOut) => match self.health.problem() {
                Some(p) => BindingError::Backend {
                    context: format!(
                        "no acknowledgement within {:?} and the broker is unreachable ({p}); \
                         the message may or may not have been written",
                        self.produce_timeout
                    ),
                    source: Box::new(e),
                },
                None => BindingError::Timeout(self.produce_timeout),
            },
            Some(RDKafkaErrorCode::QueueFull) => {
                BindingError::Rejected("the producer queue is full; retry later".into())
            }
            Some(RDKafkaErrorCode::MessageSizeTooLarge)
            | Some(RDKafkaErrorCode::InvalidMessageSize) => BindingError::Rejected(format!(
                "the message is larger than the broker accepts: {e}"
            )),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            | Some(RDKafkaErrorCode::UnknownTopic) => BindingError::Rejected(format!(
                "topic {topic:?} does not exist and was not created by the broker"
            )),
            _ => BindingError::Backend {
                context: format!("producing to topic {topic:?} failed"),
                source: Box::new(e),
            },
        }
    }
}

/// `partitionNumber` as daprd reads it (`strconv.ParseInt(v, 10, 32)`, then ≥ 0),
/// with its error texts.
fn parse_partition_number(v: &str) -> Result<i32, BindingError> {
    let syntax = || {
        BindingError::Rejected(format!(
            "invalid partitionNumber metadata value {v:?}: strconv.ParseInt: parsing {v:?}: invalid syntax"
        ))
    };
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    match v.parse::<i32>() {
        Ok(n) if n < 0 => Err(BindingError::Rejected(format!(
            "partitionNumber must be non-negative, got {n}"
        ))),
        Ok(n) => Ok(n),
        Err(_) => Err(BindingError::Rejected(format!(
            "invalid partitionNumber metadata value {v:?}: strconv.ParseInt: parsing {v:?}: value out of range"
        ))),
    }
}

impl OutputBinding for KafkaOutput {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn invoke(&self, req: InvokeRequest) -> BoxFuture<'_, Result<InvokeResponse, BindingError>> {
        Box::pin(async move {
            let topic = self.topic.as_str();
            if let Some(problem) = self.health.refusal() {
                return Err(BindingError::Unavailable(problem));
            }
            // As daprd: the key is `partitionKey` or `__key` (`partitionKey` wins
            // when both are given), and every entry, those two included, is
            // also written as a header unless `excludeHeaderMetaRegex` matches it.
            let mut key: Option<&str> = None;
            let mut partition: Option<i32> = None;
            let mut headers = OwnedHeaders::new_with_capacity(req.metadata.len());
            for (k, v) in &req.metadata {
                match k.as_str() {
                    "partitionKey" => key = Some(v),
                    "__key" => key = key.or(Some(v)),
                    // daprd: an explicit partition, checked as Go's ParseInt does.
                    "partitionNumber" => partition = Some(parse_partition_number(v)?),
                    _ => {}
                }
                if self.exclude.as_ref().is_some_and(|f| f.excludes(k)) {
                    continue;
                }
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            // A call without data writes a record without a value (a tombstone),
            // as daprd's client does with an empty payload.
            let payload = (!req.data.is_empty()).then_some(&req.data[..]);
            let mut record = BaseRecord::<str, [u8]>::to(topic).headers(headers);
            if let Some(p) = payload {
                record = record.payload(p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            let (_counted, producer) = self.producer_for_call();
            // The queue wait is bounded by the delivery timeout librdkafka enforces.
            match producer.send(record, self.produce_timeout).await {
                // As daprd's Kafka binding: nothing to answer but success (204 / an
                // empty InvokeBindingResponse).
                Ok(_) => Ok(InvokeResponse::default()),
                Err(e)
                    if partition.is_some()
                        && e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownPartition) =>
                {
                    Err(self
                        .partition_out_of_range(topic, partition.unwrap_or_default())
                        .await)
                }
                Err(e) => Err(self.map_error(e, topic)),
            }
        })
    }

    fn close(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop_probe.cancel();
            let probe = self.probe.lock().unwrap_or_else(|p| p.into_inner()).take();
            // The probe ends at once (a metadata request in progress is left
            // to time out on its own); the flush does not wait for it.
            let probe = async {
                if let Some(probe) = probe
                    && let Ok(Err(e)) = tokio::time::timeout(timeout, probe).await
                {
                    tracing::warn!(binding.name = %self.name, "broker probe {}", crate::tasks::join_error_message(e));
                }
            };
            // No batching producer is made once closing began.
            drop(
                self.batching_plan
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(),
            );
            let batching = async {
                match self.batching.get() {
                    Some(p) => p.close(timeout).await,
                    None => Ok(()),
                }
            };
            let (flushed, flushed_batching, ()) =
                futures::future::join3(self.producer.close(timeout), batching, probe).await;
            match flushed.and(flushed_batching) {
                Ok(()) => tracing::debug!(binding.name = %self.name, "producer flushed"),
                Err(e) => {
                    tracing::warn!(binding.name = %self.name, "producer flush incomplete: {e}")
                }
            }
        })
    }

    fn problem(&self) -> Option<String> {
        self.health.problem()
    }

    fn messaging_system(&self) -> Option<&'static str> {
        Some("kafka")
    }

    fn destination(&self) -> Option<&str> {
        Some(&self.topic)
    }
}

/// A Kafka component without `publishTopic`: listed as an output binding, as
/// daprd lists it, but it builds no producer, and every call is refused.
pub(crate) struct NoTopicOutput {
    name: String,
}

impl NoTopicOutput {
    pub fn new(name: &str) -> Self {
        NoTopicOutput {
            name: name.to_string(),
        }
    }
}

impl OutputBinding for NoTopicOutput {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn invoke(&self, _req: InvokeRequest) -> BoxFuture<'_, Result<InvokeResponse, BindingError>> {
        Box::pin(async move {
            Err(BindingError::Rejected(format!(
                "binding {} has no publishTopic: it cannot produce",
                self.name
            )))
        })
    }

    fn close(&self, _timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn messaging_system(&self) -> Option<&'static str> {
        Some("kafka")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    /// A component on a port nothing listens on: librdkafka connects lazily,
    /// and no call is made, so no broker is needed.
    fn output(extra: &str) -> KafkaOutput {
        let text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: k\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: 127.0.0.1:9\n  - name: publishTopic\n    value: t\n  - name: authType\n    value: none\n{extra}"
        );
        let (components, errors) =
            crate::config::load_str(std::path::Path::new("k.yaml"), &text, "app");
        assert!(errors.is_empty(), "{errors:?}");
        let meta = Arc::new(KafkaMetadata::parse(&components[0]).unwrap());
        KafkaOutput::new("k", meta, OutputInit { max_in_flight: 16 }).unwrap()
    }

    fn same(a: &AsyncProducer, b: &AsyncProducer) -> bool {
        std::ptr::eq(a.client(), b.client())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_call_goes_at_once_and_overlapping_calls_batch() {
        let out = output("");
        {
            let (_first, p) = out.producer_for_call();
            assert!(same(p, &out.producer), "a lone call goes at once");
            assert!(
                out.batching.get().is_none(),
                "not made before a call overlaps"
            );
            let (_second, p) = out.producer_for_call();
            assert!(
                same(p, &out.producer),
                "until the batching producer exists, an overlapping call goes at once too"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.batching.get().is_none() {
            assert!(Instant::now() < deadline, "no batching producer");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let batching = out.batching.get().unwrap();
        assert!(!same(batching, &out.producer));
        {
            let (_first, p) = out.producer_for_call();
            assert!(same(p, &out.producer), "a lone call goes at once");
            let (_second, p) = out.producer_for_call();
            assert!(same(p, batching), "an overlapping call lingers");
            // Still overlapping: the first call has not been answered.
            let (_third, p) = out.producer_for_call();
            assert!(same(p, batching));
        }
        let (_again, p) = out.producer_for_call();
        assert!(
            same(p, &out.producer),
            "alone again once the others were answered"
        );
        drop(_again);
        out.close(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_given_producer_linger_applies_to_every_call() {
        let out = output("  - name: producerLinger\n    value: 0ms\n");
        let (_first, p) = out.producer_for_call();
        assert!(same(p, &out.producer));
        let (_second, p) = out.producer_for_call();
        assert!(same(p, &out.producer));
        assert!(out.batching_plan.lock().unwrap().is_none());
        assert!(out.batching.get().is_none());
        drop((_first, _second));
        out.close(Duration::from_secs(1)).await;
    }
}
