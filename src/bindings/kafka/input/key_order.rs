//! `deliveryOrder: key`: one partition's records reach the app in offset order
//! per key and concurrently across keys, at most `maxInFlightPerPartition` (N)
//! at once. Records without a key have no order among themselves: each is a
//! key of its own.
//!
//! Memory is bounded: at most N records are in flight and at most N more wait
//! behind a busy key; the partition queue is not polled while either is full
//! (librdkafka's prefetch bound then applies). So a key whose record keeps
//! failing holds back only its own records, until N of them wait; then the
//! partition pauses until it is delivered or dead-lettered.
//!
//! Offsets: the stored offset is always the oldest record taken and not yet
//! accepted (or dead-lettered), so a crash delivers again from there and never
//! skips one. Records accepted past it may then reach the app twice.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{PartitionCtx, PartitionWorker, Received, deliver_until_done, received};

/// How a delivery task ended.
struct Outcome {
    key: Option<Bytes>,
    offset: i64,
    /// Accepted or dead-lettered; false when cancelled first.
    done: bool,
}

pub(super) async fn run_partition(mut w: PartitionWorker) {
    let limit = w.ctx.shared.meta.max_in_flight_per_partition() as usize;
    let notify = Arc::new(Notify::new());
    let waker = notify.clone();
    w.queue.set_nonempty_callback(move || waker.notify_one());
    tracing::debug!(
        max_in_flight = limit,
        "partition worker started (in order per key)"
    );
    let mut window: Window<Received> = Window::new(limit);
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    'run: loop {
        if w.ctx.cancel.is_cancelled() {
            break;
        }
        while window.has_room() {
            let r = match w.queue.poll(Duration::ZERO) {
                Some(Ok(msg)) => received(&msg, &w.ctx.topic_name, &w.ctx.shared.meta),
                Some(Err(e)) => {
                    tracing::warn!("consumer error on partition: {e}");
                    continue;
                }
                None => break,
            };
            if let Some(r) = window.take(r.key.clone(), r.offset, r) {
                spawn(&mut tasks, &w.ctx, r);
            }
        }
        let room = window.has_room();
        tokio::select! {
            biased;
            _ = w.ctx.cancel.cancelled() => break,
            joined = tasks.join_next(), if !tasks.is_empty() => {
                let mut joined = joined;
                // Settle every delivery that has ended, then store once.
                while let Some(result) = joined {
                    let Some(next) = settle(&w, &mut window, result) else {
                        break 'run;
                    };
                    // Once cancelled, the key's next record stays unsettled (and unstored).
                    if let Some(r) = next.filter(|_| !w.ctx.cancel.is_cancelled()) {
                        spawn(&mut tasks, &w.ctx, r);
                    }
                    joined = tasks.try_join_next();
                }
                if w.fenced.load(Ordering::Acquire) {
                    break;
                }
                if let Some(offset) = window.advance() {
                    w.store_offset(offset);
                }
            }
            _ = notify.notified(), if room => {}
            // The callback fires on empty → non-empty; a slow re-poll is a safety net.
            _ = tokio::time::sleep(Duration::from_secs(1)), if room => {}
        }
    }
    // Revoked, shut down or fenced: no new delivery starts; those in flight
    // finish (or give up at their next back-off) and store what they settle.
    while !w.fenced.load(Ordering::Acquire) {
        let Some(result) = tasks.join_next().await else {
            break;
        };
        if settle(&w, &mut window, result).is_none() {
            break;
        }
        if let Some(offset) = window.advance() {
            w.store_offset(offset);
        }
    }
    // Given up on by the drain bound: the deliveries left run out on their own,
    // and what they settle is not stored (the next owner delivers it again).
    tasks.detach_all();
    tracing::debug!("partition worker stopped");
}

/// Books one ended delivery. `None` when the worker must stop (a delivery task
/// died); else the next record of the same key to deliver, if any.
fn settle(
    w: &PartitionWorker,
    window: &mut Window<Received>,
    result: Result<Outcome, tokio::task::JoinError>,
) -> Option<Option<Received>> {
    match result {
        Ok(o) if o.done => Some(window.done(o.key.as_ref(), o.offset)),
        // Cancelled during a back-off: not settled, so its offset stays unstored.
        Ok(_) => Some(None),
        Err(e) => {
            // Its key would wait forever: stop here, the offset stays below it.
            w.ctx.shared.task_failed(
                &format!(
                    "a delivery task of partition {}[{}]",
                    w.ctx.topic, w.ctx.partition
                ),
                &crate::tasks::join_error_message(e),
            );
            None
        }
    }
}

fn spawn(tasks: &mut JoinSet<Outcome>, ctx: &Arc<PartitionCtx>, r: Received) {
    let ctx = ctx.clone();
    tasks.spawn(
        async move {
            let done = deliver_until_done(&ctx, &r).await;
            Outcome {
                key: r.key,
                offset: r.offset,
                done,
            }
        }
        .in_current_span(),
    );
}

/// The records of one partition that were taken and are not yet settled: which
/// are in flight, which wait behind a busy key, and the offset that is safe to
/// store. Pure bookkeeping, generic over the record so that it can be tested alone.
struct Window<T> {
    limit: usize,
    in_flight: usize,
    waiting: usize,
    /// Keys with a delivery in flight, each with the records waiting behind it.
    lanes: HashMap<Bytes, VecDeque<(i64, T)>>,
    /// Offsets taken and not yet settled (in flight or waiting).
    open: BTreeSet<i64>,
    /// The highest offset taken.
    last_taken: Option<i64>,
    /// The next offset to read as last stored (or as found at the start).
    stored_next: Option<i64>,
}

impl<T> Window<T> {
    fn new(limit: usize) -> Self {
        Window {
            limit: limit.max(1),
            in_flight: 0,
            waiting: 0,
            lanes: HashMap::new(),
            open: BTreeSet::new(),
            last_taken: None,
            stored_next: None,
        }
    }

    /// Whether one more record may be taken, wherever it goes.
    fn has_room(&self) -> bool {
        self.in_flight < self.limit && self.waiting < self.limit
    }

    /// Takes a record (only when `has_room`): returns it when it is to be
    /// delivered now, keeps it when its key has a delivery in flight.
    fn take(&mut self, key: Option<Bytes>, offset: i64, record: T) -> Option<T> {
        debug_assert!(self.has_room());
        self.open.insert(offset);
        self.last_taken = Some(self.last_taken.map_or(offset, |l| l.max(offset)));
        self.stored_next.get_or_insert(offset);
        match key {
            None => {
                self.in_flight += 1;
                Some(record)
            }
            Some(k) => match self.lanes.get_mut(&k) {
                Some(lane) => {
                    lane.push_back((offset, record));
                    self.waiting += 1;
                    None
                }
                None => {
                    self.lanes.insert(k, VecDeque::new());
                    self.in_flight += 1;
                    Some(record)
                }
            },
        }
    }

    /// A delivery was settled (accepted or dead-lettered): returns the next
    /// record of its key, which is in flight from now on.
    fn done(&mut self, key: Option<&Bytes>, offset: i64) -> Option<T> {
        self.open.remove(&offset);
        let next = key.and_then(|k| {
            let lane = self.lanes.get_mut(k)?;
            let next = lane.pop_front();
            if next.is_none() {
                self.lanes.remove(k);
            }
            next
        });
        match next {
            Some((_, record)) => {
                self.waiting -= 1;
                Some(record)
            }
            None => {
                self.in_flight -= 1;
                None
            }
        }
    }

    /// When the next offset to read moved on since last asked: the offset to
    /// pass to `store_offset` (one below it: librdkafka stores that plus one).
    fn advance(&mut self) -> Option<i64> {
        let next = match self.open.first() {
            Some(&oldest) => oldest,
            None => self.last_taken? + 1,
        };
        if self.stored_next.is_some_and(|s| next <= s) {
            return None;
        }
        self.stored_next = Some(next);
        Some(next - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn same_key_waits_other_keys_go() {
        let mut w: Window<i64> = Window::new(4);
        assert_eq!(w.take(k("a"), 10, 10), Some(10));
        assert_eq!(w.take(k("a"), 11, 11), None, "a is busy");
        assert_eq!(w.take(k("b"), 12, 12), Some(12));
        assert_eq!(w.take(None, 13, 13), Some(13), "no key: no order");
        assert_eq!(w.take(None, 14, 14), Some(14));
        assert_eq!((w.in_flight, w.waiting), (4, 1));
        assert!(!w.has_room(), "four in flight");
        assert_eq!(w.done(k("a").as_ref(), 10), Some(11), "a's next goes");
        assert_eq!((w.in_flight, w.waiting), (4, 0));
        assert_eq!(w.done(k("a").as_ref(), 11), None);
        assert!(!w.lanes.contains_key(&k("a").unwrap()), "a is free again");
        assert!(w.has_room());
    }

    #[test]
    fn waiting_records_are_bounded() {
        let mut w: Window<()> = Window::new(2);
        assert!(w.take(k("p"), 0, ()).is_some());
        assert!(w.take(k("p"), 1, ()).is_none());
        assert!(w.has_room());
        assert!(w.take(k("p"), 2, ()).is_none());
        assert!(!w.has_room(), "two wait behind p: stop taking");
    }

    #[test]
    fn stored_offset_stays_below_the_oldest_unsettled() {
        let mut w: Window<()> = Window::new(8);
        for (key, o) in [("a", 5), ("b", 6), ("c", 7)] {
            w.take(k(key), o, ());
        }
        assert_eq!(w.advance(), None, "nothing settled: 5 is where we are");
        w.done(k("c").as_ref(), 7);
        w.done(k("b").as_ref(), 6);
        assert_eq!(w.advance(), None, "5 still in flight: stays at 5");
        w.done(k("a").as_ref(), 5);
        assert_eq!(w.advance(), Some(7), "all settled: next to read is 8");
        assert_eq!(w.advance(), None, "unchanged");
        w.take(k("a"), 9, ());
        w.take(k("b"), 10, ());
        w.done(k("b").as_ref(), 10);
        assert_eq!(
            w.advance(),
            Some(8),
            "next to read is 9, the oldest open (8 was a gap)"
        );
        w.done(k("a").as_ref(), 9);
        assert_eq!(w.advance(), Some(10));
    }

    #[test]
    fn gaps_in_offsets_move_the_store_to_the_oldest_open() {
        let mut w: Window<()> = Window::new(8);
        w.take(k("a"), 0, ());
        w.take(k("b"), 3, ());
        w.take(k("c"), 4, ());
        w.done(k("a").as_ref(), 0);
        assert_eq!(
            w.advance(),
            Some(2),
            "next to read is 3: 1 and 2 do not exist"
        );
    }
}
