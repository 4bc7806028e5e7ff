//! A Kafka producer whose delivery reports are served on the tokio runtime.
//!
//! rdkafka's `FutureProducer` keeps a thread that polls librdkafka's main
//! queue and completes each caller's future from there, so every delivery
//! crosses two threads before it reaches its caller: librdkafka's broker
//! thread wakes the polling thread, which wakes a tokio worker. Here
//! librdkafka calls back when its main queue turns non-empty; the callback
//! only wakes a tokio task, and that task serves the reports on the worker
//! where the callers wait: one hand-off fewer per delivery (or per batch of
//! deliveries), and no polling thread.

use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::KafkaContext;

/// Where a delivery report is sent: the caller waiting for its record. One
/// lives inside librdkafka per record it holds (dropped when the report is
/// served or the record purged), which is what [`Pending`] counts.
pub(crate) struct Reply {
    tx: oneshot::Sender<Result<(), KafkaError>>,
    _pending: Pending,
}

/// Counts a record librdkafka holds, until dropped. librdkafka's own count
/// (`rd_kafka_outq_len`, what `flush` waits on) also counts its requests
/// and events, which do not drain while the broker is unreachable: a producer
/// holding no record would wait in `flush` until they time out (about 3 s
/// after a start, measured) or the shutdown grace ends.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = Box<Reply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Box<Reply>) {
        // The caller may have gone (its request was cancelled): nothing to tell.
        let _ = reply
            .tx
            .send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// The producer and librdkafka's main queue, whose wake-ups go to `wake`.
struct Shared {
    base: BaseProducer<KafkaContext>,
    /// A reference to the producer's main queue (delivery reports, errors).
    queue: *mut rdsys::rd_kafka_queue_t,
    /// The `Arc<Notify>` handed to librdkafka as the callback's opaque.
    wake: *const Notify,
    /// Ends the serving task when the producer goes.
    stop: CancellationToken,
    /// Records handed to librdkafka and not yet reported on.
    pending: Arc<AtomicUsize>,
}

// SAFETY: librdkafka's queue handles may be used from any thread (every queue
// operation takes the queue's lock); `wake` points at a `Notify`, which is Sync.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn queued(&self) -> usize {
        // SAFETY: `queue` is a live reference until `drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
        // SAFETY: disabling takes the queue's lock, which librdkafka also holds
        // while it runs the callback, so once this returns no callback runs or
        // will run, and the opaque can be freed.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue);
            drop(Arc::from_raw(self.wake));
        }
        // `base` drops next: rdkafka purges what is still queued and serves
        // those reports itself (callers learn their records were not sent).
    }
}

/// Runs in a librdkafka thread, with the queue's lock held: only wake the task.
unsafe extern "C" fn queue_non_empty(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` kept alive by `Shared` until the
    // callback is disabled.
    let wake = unsafe { &*(opaque as *const Notify) };
    wake.notify_one();
}

/// A cloneable handle of one producer; its serving task ends with [`AsyncProducer::close`]
/// or when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct AsyncProducer {
    shared: Arc<Shared>,
    server: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl AsyncProducer {
    /// Creates the producer and its serving task on the current tokio runtime.
    pub fn new(config: &ClientConfig, context: KafkaContext) -> Result<Self, KafkaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            KafkaError::ClientCreation("no tokio runtime to serve deliveries".into())
        })?;
        let binding = context.binding.clone();
        let base = BaseProducer::from_config_and_context(config, context)?;
        let wake = Arc::new(Notify::new());
        let opaque = Arc::into_raw(wake.clone());
        // SAFETY: the producer is live; the queue reference and the opaque are
        // released by `Shared::drop`, after the callback is disabled.
        let queue = unsafe {
            let q = rdsys::rd_kafka_queue_get_main(base.client().native_ptr());
            rdsys::rd_kafka_queue_cb_event_enable(q, Some(queue_non_empty), opaque as *mut c_void);
            q
        };
        let shared = Arc::new(Shared {
            base,
            queue,
            wake: opaque,
            stop: CancellationToken::new(),
            pending: Arc::new(AtomicUsize::new(0)),
        });
        let span = tracing::debug_span!("kafka.deliveries", binding.name = %binding);
        let server = runtime
            .spawn(serve(Arc::downgrade(&shared), wake, shared.stop.clone()).instrument(span));
        Ok(AsyncProducer {
            shared,
            server: Arc::new(Mutex::new(Some(server))),
        })
    }

    pub fn client(&self) -> &Client<KafkaContext> {
        self.shared.base.client()
    }

    /// Enqueues `record` and waits for the broker's answer (or librdkafka's
    /// verdict at `message.timeout.ms`). A full queue is retried until
    /// `queue_timeout`, as rdkafka's `FutureProducer` does.
    pub async fn send<K, P>(
        &self,
        record: BaseRecord<'_, K, P, ()>,
        queue_timeout: Duration,
    ) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        if self.shared.stop.is_cancelled() {
            return Err(KafkaError::Canceled);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let reply = Box::new(Reply {
            tx,
            _pending: Pending(self.shared.pending.clone()),
        });
        let mut record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: reply,
        };
        let deadline = Instant::now() + queue_timeout;
        loop {
            match self.shared.base.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
        // A dropped reply means librdkafka destroyed the record unanswered.
        rx.await.unwrap_or(Err(KafkaError::Canceled))
    }

    /// Records handed to librdkafka and not yet reported on.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Delivers what is queued (or gives up at `timeout`), then ends the serving task.
    pub async fn close(&self, timeout: Duration) -> Result<(), KafkaError> {
        let shared = self.shared.clone();
        // `flush` serves the delivery reports itself while it waits. With no
        // record held there is nothing to deliver (see `Pending`).
        let flushed = if self.pending() == 0 {
            Ok(())
        } else {
            match tokio::task::spawn_blocking(move || shared.base.flush(timeout)).await {
                Ok(flushed) => flushed,
                Err(e) => {
                    tracing::error!("the producer flush {}", crate::tasks::join_error_message(e));
                    Err(KafkaError::Flush(RDKafkaErrorCode::Fail))
                }
            }
        };
        self.shared.stop.cancel();
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server
            && let Err(e) = server.await
        {
            tracing::error!(
                "the Kafka delivery task {}",
                crate::tasks::join_error_message(e)
            );
        }
        flushed
    }
}

/// Most reports served per wake-up before the task yields to other tasks.
const BATCH: usize = 256;

/// Serves the main queue whenever librdkafka says it holds something. The
/// interval is a safety net only: every enqueue on an empty queue wakes the task.
async fn serve(shared: Weak<Shared>, wake: Arc<Notify>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tick.tick() => {}
        }
        loop {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut served = 0;
            while served < BATCH && shared.queued() > 0 {
                // A panic in a report's handling must not strand every later caller.
                if let Err(p) =
                    std::panic::catch_unwind(AssertUnwindSafe(|| shared.base.poll(Duration::ZERO)))
                {
                    tracing::error!(
                        "serving a Kafka delivery report panicked: {}",
                        crate::tasks::panic_message(&*p)
                    );
                }
                served += 1;
            }
            if served < BATCH {
                break;
            }
            drop(shared);
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count `close` relies on: one per record handed over, until its
    /// report is served, and none left behind by a record that failed.
    #[tokio::test]
    async fn pending_counts_each_record_until_its_report() {
        let mut config = ClientConfig::new();
        // Nothing listens there: the record times out unanswered.
        config
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.timeout.ms", "300");
        let producer = AsyncProducer::new(
            &config,
            KafkaContext {
                binding: "p".into(),
                brokers: "127.0.0.1:9".into(),
                health: Default::default(),
            },
        )
        .unwrap();
        assert_eq!(producer.pending(), 0);
        let sending = {
            let p = producer.clone();
            tokio::spawn(async move {
                p.send(
                    BaseRecord::<(), [u8], ()>::to("t").payload(b"x".as_slice()),
                    Duration::from_secs(1),
                )
                .await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while producer.pending() == 0 && !sending.is_finished() {
            assert!(Instant::now() < deadline, "the record is never counted");
            tokio::task::yield_now().await;
        }
        assert_eq!(producer.pending(), 1, "one record held");
        let result = sending.await.unwrap();
        assert!(
            matches!(result, Err(ref e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut)),
            "{result:?}"
        );
        assert_eq!(producer.pending(), 0, "the report served, nothing held");
        producer.close(Duration::from_secs(5)).await.unwrap();
    }
}
