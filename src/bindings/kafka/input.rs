//! Kafka input: one consumer-group member per component. Each assigned partition
//! gets its own queue and worker, so partitions are delivered in parallel and
//! each partition strictly in order, or with `deliveryOrder: key` in order per
//! key (`key_order`). An offset is stored only after the app accepted the
//! message (or it went to the dead-letter topic), and never past one that is
//! not; revocation and shutdown wait for in-flight deliveries, within a bound,
//! and commit.
//!
//! The app gets daprd's event metadata: `__key` (when the record has one),
//! `__topic`, `__partition`, `__offset`, `__timestamp`, then every header.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::metadata::InitialOffset;
use super::{BrokerHealth, KafkaContext, KafkaMetadata, client_config};
use crate::bindings::{
    BindingError, BindingEvent, BoxFuture, DeliveryError, EventOrigin, EventSink, InputBinding,
    InputInit, OriginAttributes,
};
use crate::status::{InputState, InputStatus};

mod key_order;

type Consumer_ = BaseConsumer<InputContext>;

/// A consumer-group member, built whole (dead-letter producer and consumer
/// created, TLS material loaded) before the sidecar is ready; [`InputBinding::run`]
/// subscribes.
pub struct KafkaInput {
    consumer: Arc<Consumer_>,
}

impl KafkaInput {
    pub fn new(
        name: &str,
        meta: Arc<KafkaMetadata>,
        init: InputInit,
    ) -> Result<Self, BindingError> {
        let health = Arc::new(BrokerHealth::default());
        let dead_letter = match &meta.dead_letter {
            None => None,
            Some(_) => Some(
                super::output::make_producer(
                    name,
                    &meta,
                    health.clone(),
                    None,
                    meta.producer_linger
                        .unwrap_or(super::metadata::DEFAULT_PRODUCER_LINGER),
                )
                .map_err(|e| BindingError::Backend {
                    context: format!("cannot create the dead-letter producer of {name}"),
                    source: Box::new(e),
                })?,
            ),
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            meta: meta.clone(),
            sink: OnceLock::new(),
            status: init.status,
            health: health.clone(),
            dead_letter,
            runtime: tokio::runtime::Handle::current(),
            drain: init.grace,
            failed: CancellationToken::new(),
        });
        let context = InputContext {
            client: KafkaContext {
                binding: name.to_string(),
                brokers: meta.brokers.clone(),
                health,
            },
            consumer: OnceLock::new(),
            shared,
            workers: Mutex::new(HashMap::new()),
        };
        let consumer: Arc<Consumer_> = consumer_config(name, &meta, init.grace)
            .create_with_context(context)
            .map(Arc::new)
            .map_err(|e| BindingError::Backend {
                context: format!("cannot create the Kafka consumer of {name}"),
                source: Box::new(e),
            })?;
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        Ok(KafkaInput { consumer })
    }
}

impl Drop for KafkaInput {
    /// A consumer never run (the app does not serve the binding) is closed off
    /// the async runtime: closing waits for librdkafka's threads.
    fn drop(&mut self) {
        let consumer = self.consumer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || drop(consumer));
        }
    }
}

/// What every partition worker of one binding shares.
struct Shared {
    name: String,
    meta: Arc<KafkaMetadata>,
    /// Set once by `run`, before the subscription: no worker exists before it.
    sink: OnceLock<Arc<dyn EventSink>>,
    status: Arc<InputStatus>,
    /// Down from "all brokers down" until the brokers answer again.
    health: Arc<BrokerHealth>,
    dead_letter: Option<super::producer::AsyncProducer>,
    runtime: tokio::runtime::Handle,
    /// How long a revocation or shutdown waits for in-flight deliveries.
    drain: Duration,
    /// Cancelled when a task of this binding failed: the consumer stops, as at
    /// shutdown (in-flight deliveries finish, stored offsets are committed).
    failed: CancellationToken,
}

impl Shared {
    /// A partition worker or delivery task panicked or could not go on: its
    /// partition would stall with nobody to tell, so the whole binding stops,
    /// committing only what the app accepted, and shows `error` with the cause.
    fn task_failed(&self, what: &str, why: &str) {
        tracing::error!(binding.name = %self.name, "{what} {why}; the input binding stops (nothing unaccepted is committed)");
        self.status.task_failed(format!("{what} {why}; stopped"));
        self.failed.cancel();
    }
}

struct Worker {
    cancel: CancellationToken,
    /// Disconnects when the worker task ends.
    done: mpsc::Receiver<()>,
    /// Set when the worker was given up on: it must not store offsets any more.
    fenced: Arc<AtomicBool>,
}

/// The consumer's context: librdkafka calls it on rebalances, from the consumer thread.
struct InputContext {
    client: KafkaContext,
    consumer: OnceLock<Weak<Consumer_>>,
    shared: Arc<Shared>,
    workers: Mutex<HashMap<(String, i32), Worker>>,
}

impl ClientContext for InputContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message)
    }
    /// Consumer lag per assigned partition: high watermark minus the stored
    /// offset, i.e. what the app has not accepted yet.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag: Vec<((String, i32), i64)> = statistics
            .topics
            .into_iter()
            .flat_map(|(topic, t)| {
                t.partitions.into_values().filter_map(move |p| {
                    (p.partition >= 0 && p.fetch_state != "none" && p.consumer_lag_stored >= 0)
                        .then(|| ((topic.clone(), p.partition), p.consumer_lag_stored))
                })
            })
            .collect();
        lag.sort();
        self.shared.status.set_lag(lag);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason)
    }
}

impl ConsumerContext for InputContext {
    fn pre_rebalance(&self, consumer: &Consumer_, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let keys: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(binding.name = %self.shared.name, partitions = keys.len(), "partitions revoked: finishing in-flight deliveries");
            self.stop_workers(Some(&keys));
            commit(consumer, &self.shared.name);
        }
    }

    fn post_rebalance(&self, _consumer: &Consumer_, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
                    return;
                };
                let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                for e in tpl.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    let Some(queue) = consumer.split_partition_queue(&key.0, key.1) else {
                        tracing::error!(binding.name = %self.shared.name, topic = %key.0, partition = key.1, "cannot split the partition queue");
                        continue;
                    };
                    let cancel = CancellationToken::new();
                    let fenced = Arc::new(AtomicBool::new(false));
                    let (done_tx, done) = mpsc::sync_channel(1);
                    let span = tracing::info_span!("partition", binding.name = %self.shared.name, kafka.topic = %key.0, kafka.partition = key.1);
                    let worker = PartitionWorker {
                        queue,
                        consumer: consumer.clone(),
                        ctx: Arc::new(PartitionCtx {
                            topic: key.0.clone(),
                            topic_name: Arc::from(key.0.as_str()),
                            partition: key.1,
                            shared: self.shared.clone(),
                            cancel: cancel.clone(),
                        }),
                        fenced: fenced.clone(),
                        _done: done_tx,
                    };
                    let what = format!("the worker of partition {}[{}]", key.0, key.1);
                    if self.shared.meta.key_ordered() {
                        self.supervise(what, key_order::run_partition(worker), span);
                    } else {
                        self.supervise(what, run_partition(worker), span);
                    }
                    workers.insert(
                        key,
                        Worker {
                            cancel,
                            done,
                            fenced,
                        },
                    );
                }
                let assigned = workers.len();
                drop(workers);
                tracing::info!(binding.name = %self.shared.name, partitions = tpl.count(), "partitions assigned");
                self.shared.status.set(
                    InputState::Subscribed,
                    format!("{assigned} partition(s) assigned"),
                );
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(binding.name = %self.shared.name, "rebalance error: {e}");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result
            && e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset)
        {
            tracing::warn!(binding.name = %self.shared.name, "offset commit failed: {e}");
        }
    }
}

impl InputContext {
    /// Spawns a partition worker, owned by this binding: a panic stops the binding.
    fn supervise(
        &self,
        what: String,
        worker: impl std::future::Future<Output = ()> + Send + 'static,
        span: tracing::Span,
    ) {
        let shared = self.shared.clone();
        self.shared.runtime.spawn(
            async move {
                if let Err(why) = crate::tasks::catch_panic(worker).await {
                    shared.task_failed(&what, &why);
                }
            }
            .instrument(span),
        );
    }

    /// Cancels the workers of `keys` (all when `None`) and waits, within the drain
    /// bound, until each has finished the delivery it had in flight.
    fn stop_workers(&self, keys: Option<&[(String, i32)]>) {
        let stopped: Vec<Worker> = {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            match keys {
                Some(keys) => keys.iter().filter_map(|k| workers.remove(k)).collect(),
                None => workers.drain().map(|(_, w)| w).collect(),
            }
        };
        for w in &stopped {
            w.cancel.cancel();
        }
        let deadline = Instant::now() + self.shared.drain;
        for w in stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Timeout) = w.done.recv_timeout(left) {
                w.fenced.store(true, Ordering::Release);
                tracing::warn!(binding.name = %self.shared.name, "a delivery was still in flight after {:?}: it will be delivered again by the next owner", self.shared.drain);
            }
        }
    }
}

fn commit(consumer: &Consumer_, name: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::debug!(binding.name = %name, "offsets committed"),
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(e) => tracing::warn!(binding.name = %name, "offset commit failed: {e}"),
    }
}

struct PartitionWorker {
    queue: rdkafka::consumer::base_consumer::PartitionQueue<InputContext>,
    consumer: Arc<Consumer_>,
    ctx: Arc<PartitionCtx>,
    fenced: Arc<AtomicBool>,
    _done: mpsc::SyncSender<()>,
}

/// What delivering a record of one partition needs; shared with the
/// concurrent deliveries of `deliveryOrder: key`.
struct PartitionCtx {
    topic: String,
    /// The topic once more, shared by the origin of every event of this partition.
    topic_name: Arc<str>,
    partition: i32,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl PartitionWorker {
    /// Stores `offset` + 1 as the next offset to read (librdkafka adds the one).
    fn store_offset(&self, offset: i64) {
        if let Err(e) = self
            .consumer
            .store_offset(&self.ctx.topic, self.ctx.partition, offset)
        {
            tracing::debug!("offset {offset} not stored (partition no longer assigned?): {e}");
        }
    }
}

/// A message taken off the queue: the event for the app, plus what a
/// dead-letter copy needs.
struct Received {
    event: BindingEvent,
    offset: i64,
    key: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    /// The record had no value: a dead-letter copy keeps it so.
    tombstone: bool,
}

async fn run_partition(mut w: PartitionWorker) {
    let notify = Arc::new(Notify::new());
    let waker = notify.clone();
    w.queue.set_nonempty_callback(move || waker.notify_one());
    tracing::debug!("partition worker started");
    loop {
        if w.ctx.cancel.is_cancelled() {
            break;
        }
        let received = match w.queue.poll(Duration::ZERO) {
            Some(Ok(msg)) => received(&msg, &w.ctx.topic_name, &w.ctx.shared.meta),
            Some(Err(e)) => {
                tracing::warn!("consumer error on partition: {e}");
                continue;
            }
            None => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = w.ctx.cancel.cancelled() => break,
                    // The callback fires on empty → non-empty; a slow re-poll is a safety net.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        if !deliver_until_done(&w.ctx, &received).await {
            break;
        }
        if w.fenced.load(Ordering::Acquire) {
            break;
        }
        w.store_offset(received.offset);
    }
    tracing::debug!("partition worker stopped");
}

/// Span attribute names of a Kafka record's origin.
static KAFKA_ORIGIN: OriginAttributes = OriginAttributes {
    partition: "messaging.kafka.partition",
    offset: "messaging.kafka.offset",
};

/// `time.Time{}.UnixMilli()` in Go: what daprd reports for a record without a timestamp.
const GO_ZERO_TIME_MILLIS: i64 = -62_135_596_800_000;

fn received(msg: &BorrowedMessage<'_>, topic: &Arc<str>, meta: &KafkaMetadata) -> Received {
    let keep_raw = meta.dead_letter.is_some();
    let text = |v: &[u8]| {
        if meta.escape_headers {
            query_escape(v)
        } else {
            String::from_utf8_lossy(v).into_owned()
        }
    };
    let headers = msg.headers();
    let n = headers.map_or(0, |h| h.count());
    let mut metadata = HashMap::with_capacity(5 + n);
    let key = msg.key().map(Bytes::copy_from_slice);
    if let Some(k) = &key {
        metadata.insert("__key".to_string(), text(k));
    }
    metadata.insert("__offset".to_string(), msg.offset().to_string());
    metadata.insert("__topic".to_string(), topic.to_string());
    metadata.insert(
        "__timestamp".to_string(),
        msg.timestamp()
            .to_millis()
            .unwrap_or(GO_ZERO_TIME_MILLIS)
            .to_string(),
    );
    metadata.insert("__partition".to_string(), msg.partition().to_string());
    let mut raw = Vec::new();
    if let Some(h) = headers {
        // As daprd: a header of the same name overwrites the fields above.
        for header in h.iter() {
            if keep_raw {
                raw.push((
                    header.key.to_string(),
                    header.value.map(Bytes::copy_from_slice),
                ));
            }
            if meta
                .exclude_header_meta
                .as_ref()
                .is_some_and(|f| f.excludes(header.key))
            {
                continue;
            }
            metadata.insert(
                header.key.to_string(),
                text(header.value.unwrap_or_default()),
            );
        }
    }
    Received {
        event: BindingEvent {
            // As daprd: a record without a value (a tombstone) reaches the app as `null`.
            data: msg
                .payload()
                .map_or_else(|| Bytes::from_static(b"null"), Bytes::copy_from_slice),
            metadata,
            origin: Some(EventOrigin {
                system: "kafka",
                destination: topic.clone(),
                partition: msg.partition(),
                offset: msg.offset(),
                attributes: &KAFKA_ORIGIN,
            }),
        },
        offset: msg.offset(),
        key,
        headers: raw,
        tombstone: msg.payload().is_none(),
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn query_escape(v: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(v.len());
    for &b in v {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// Delivers one message until the app accepts it (or, when configured, until it
/// is moved to the dead-letter topic). Returns false when cancelled first: the
/// offset must then not be stored.
async fn deliver_until_done(w: &PartitionCtx, r: &Received) -> bool {
    let meta = &w.shared.meta;
    let status = &w.shared.status;
    let mut backoff = meta.consume_retry_interval;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        // An in-flight delivery is allowed to finish: revocation and shutdown wait for it.
        let Some(sink) = w.shared.sink.get() else {
            return false;
        };
        let result = sink.deliver(&r.event).await;
        let error = match result {
            Ok(()) => {
                status.delivered.fetch_add(1, Ordering::Relaxed);
                if attempt > 1 {
                    tracing::info!(offset = r.offset, attempt, "delivered after retrying");
                    status.recovered();
                }
                // A message from the prefetch queue proves nothing about the
                // brokers: leave `error` only once they are known to be back.
                if !w.shared.health.is_down() {
                    status.backend_recovered();
                }
                return true;
            }
            Err(e) => e,
        };
        status.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if let Some(dl) = &meta.dead_letter
            && attempt >= dl.max_attempts
        {
            return dead_letter(w, r, attempt, &error).await;
        }
        tracing::warn!(offset = r.offset, attempt, retry_in = ?backoff, "delivery failed: {error}");
        status.set(
            InputState::Retrying,
            format!(
                "{}[{}]@{}: attempt {attempt} failed: {error}",
                w.topic, w.partition, r.offset
            ),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = w.cancel.cancelled() => return false,
        }
        backoff = (backoff * 2).min(meta.consume_retry_max_interval);
    }
}

/// Writes a poison message to the dead-letter topic, retrying until the broker
/// acknowledges it; only then may the source offset move on.
async fn dead_letter(w: &PartitionCtx, r: &Received, attempts: u32, error: &DeliveryError) -> bool {
    let (Some(dl), Some(producer)) = (&w.shared.meta.dead_letter, &w.shared.dead_letter) else {
        return false;
    };
    let reason = error.to_string();
    let mut backoff = w.shared.meta.consume_retry_interval;
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 5);
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let attempts_text = attempts.to_string();
        let partition_text = w.partition.to_string();
        let offset_text = r.offset.to_string();
        headers = headers
            .insert(Header {
                key: "outrigger-dead-letter-reason",
                value: Some(reason.as_bytes()),
            })
            .insert(Header {
                key: "outrigger-source-topic",
                value: Some(w.topic.as_bytes()),
            })
            .insert(Header {
                key: "outrigger-source-partition",
                value: Some(partition_text.as_bytes()),
            })
            .insert(Header {
                key: "outrigger-source-offset",
                value: Some(offset_text.as_bytes()),
            })
            .insert(Header {
                key: "outrigger-delivery-attempts",
                value: Some(attempts_text.as_bytes()),
            });
        let mut record =
            rdkafka::producer::BaseRecord::<[u8], [u8]>::to(&dl.topic).headers(headers);
        if !r.tombstone {
            record = record.payload(&r.event.data[..]);
        }
        if let Some(k) = &r.key {
            record = record.key(&k[..]);
        }
        match producer.send(record, w.shared.meta.produce_timeout).await {
            Ok(_) => {
                w.shared
                    .status
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                w.shared.status.recovered();
                tracing::warn!(offset = r.offset, attempts, dead_letter_topic = %dl.topic, "message moved to the dead-letter topic: {reason}");
                return true;
            }
            Err(e) => {
                tracing::warn!(offset = r.offset, retry_in = ?backoff, "writing to the dead-letter topic failed: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = w.cancel.cancelled() => return false,
        }
        backoff = (backoff * 2).min(w.shared.meta.consume_retry_max_interval);
    }
}

fn consumer_config(name: &str, meta: &KafkaMetadata, drain: Duration) -> ClientConfig {
    let mut c = client_config(name, meta);
    c.set(
        "group.id",
        meta.consumer_group.as_deref().unwrap_or_default(),
    )
    .set("enable.auto.commit", "true")
    .set("auto.commit.interval.ms", "1000")
    // Offsets are stored by hand, after the app said OK.
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "false")
    .set("allow.auto.create.topics", "true")
    .set(
        "auto.offset.reset",
        match meta.initial_offset {
            InitialOffset::Oldest => "earliest",
            InitialOffset::Newest => "latest",
        },
    )
    .set(
        "session.timeout.ms",
        meta.session_timeout.as_millis().to_string(),
    )
    .set(
        "heartbeat.interval.ms",
        meta.heartbeat_interval.as_millis().to_string(),
    )
    // The main queue is polled continuously on its own thread; it pauses only
    // while a revocation waits for in-flight deliveries, bounded by `drain`.
    // Brokers also use this as the rebalance timeout, so keep it short.
    .set(
        "max.poll.interval.ms",
        (meta.session_timeout.max(drain) + Duration::from_secs(5))
            .as_millis()
            .to_string(),
    )
    // Bound the prefetch held in memory per consumer.
    .set("queued.max.messages.kbytes", "16384")
    .set("queued.min.messages", "10000")
    // For the consumer-lag metric.
    .set("statistics.interval.ms", "5000");
    if let Some(strategy) = meta.assignment_strategy {
        c.set("partition.assignment.strategy", strategy);
    }
    c
}

impl InputBinding for KafkaInput {
    fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let consumer = self.consumer.clone();
        // `self` is dropped now: `consumer` is the last handle but the context's.
        drop(self);
        Box::pin(async move {
            let shared = consumer.context().shared.clone();
            let (name, meta, status) = (
                shared.name.clone(),
                shared.meta.clone(),
                shared.status.clone(),
            );
            let _ = shared.sink.set(sink);
            let topics: Vec<&str> = meta.topics.iter().map(String::as_str).collect();
            if let Err(e) = consumer.subscribe(&topics) {
                tracing::error!(binding.name = %name, "cannot subscribe to {topics:?}: {e}");
                status.set(InputState::Error, format!("cannot subscribe: {e}"));
                return;
            }
            status.set(InputState::Subscribed, "joining the consumer group");
            tracing::info!(binding.name = %name, topics = ?meta.topics, group = meta.consumer_group.as_deref().unwrap_or_default(), "consuming");

            // The main queue (rebalances, errors) is served by a thread of its own:
            // a revocation may block it while deliveries drain.
            let (finished_tx, finished_rx) = tokio::sync::oneshot::channel();
            let thread_name = format!("kafka-{name}");
            let thread_status = status.clone();
            let spawned = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || {
                    let status = thread_status;
                    poll_main_queue(&consumer, &shutdown, &status);
                    consumer.context().stop_workers(None);
                    commit(&consumer, &consumer.context().shared.name);
                    consumer.unsubscribe();
                    // A failed binding keeps showing why it stopped.
                    if !consumer.context().shared.failed.is_cancelled() {
                        status.set(InputState::Stopped, "");
                    }
                    // Dropping the last handle closes the consumer: it leaves the group.
                    drop(consumer);
                    let _ = finished_tx.send(());
                });
            match spawned {
                Ok(_) => {
                    let _ = finished_rx.await;
                    tracing::info!(binding.name = %name, "consumer closed");
                    // Every dead-letter write was awaited before its offset was
                    // stored; this ends the producer's delivery task.
                    if let Some(dl) = &shared.dead_letter
                        && let Err(e) = dl.close(shared.drain).await
                    {
                        tracing::warn!(binding.name = %name, "dead-letter producer flush incomplete: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!(binding.name = %name, "cannot start the consumer thread: {e}");
                    status.set(
                        InputState::Error,
                        format!("cannot start the consumer thread: {e}"),
                    );
                }
            }
        })
    }
}

fn poll_main_queue(consumer: &Arc<Consumer_>, shutdown: &CancellationToken, status: &InputStatus) {
    let name = &consumer.context().shared.name;
    let mut last_error: Option<(String, Instant)> = None;
    let mut last_probe = Instant::now();
    let failed = &consumer.context().shared.failed;
    while !shutdown.is_cancelled() && !failed.is_cancelled() {
        if consumer.context().shared.health.is_down() && last_probe.elapsed() >= PROBE_INTERVAL {
            probe_brokers(consumer, status);
            last_probe = Instant::now();
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => {
                // A message fetched before its partition queue was split: rewind so
                // that the partition's worker gets it, in order.
                tracing::debug!(binding.name = %name, partition = msg.partition(), offset = msg.offset(), "message on the main queue: rewinding");
                let (topic, partition, offset) =
                    (msg.topic().to_string(), msg.partition(), msg.offset());
                drop(msg);
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                ) {
                    tracing::warn!(binding.name = %name, "rewind failed: {e}");
                }
            }
            Some(Err(e)) => {
                let text = e.to_string();
                let repeat = last_error
                    .as_ref()
                    .is_some_and(|(t, at)| *t == text && at.elapsed() < Duration::from_secs(30));
                if !repeat {
                    tracing::warn!(binding.name = %name, "consumer error: {text}");
                    last_error = Some((text.clone(), Instant::now()));
                }
                status.set(InputState::Error, text);
            }
        }
    }
}

/// How often the brokers are probed while they are known to be down.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Clears "brokers down" once they answer a metadata request again, so that
/// `/v1.0/metadata` and the status leave `error`. Fetching itself needs no help:
/// librdkafka resumes it when the brokers are back.
fn probe_brokers(consumer: &Arc<Consumer_>, status: &InputStatus) {
    let context = consumer.context();
    let name = &context.shared.name;
    // All topics: asking for named ones could auto-create them.
    match consumer.fetch_metadata(None, Duration::from_secs(2)) {
        Ok(_) => {
            if context.shared.health.mark_up() {
                tracing::info!(binding.name = %name, "Kafka brokers reachable again");
            }
            status.backend_recovered();
        }
        Err(e) => tracing::debug!(binding.name = %name, "brokers still unreachable: {e}"),
    }
}
