//! The batched writer: the engine pushes records without ever waiting on the database; one
//! task writes them in transactions of up to `MAX_BATCH` records or `MAX_DELAY`, retrying with
//! backoff until the database takes them.

use super::Store;
use crate::engine::record::Record;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const MAX_BATCH: usize = 500;
const MAX_DELAY: Duration = Duration::from_millis(50);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After shutdown is asked for, a batch the database keeps refusing is given up (loudly)
/// after this many attempts, so shutdown cannot hang forever on a dead database.
const ATTEMPTS_AFTER_SHUTDOWN: u32 = 8;

const QUEUE_DEPTH: &str = "ccswitch_store_queue_depth";
const WRITE_ERRORS: &str = "ccswitch_store_write_errors_total";
const RECORDS_LOST: &str = "ccswitch_store_records_lost_total";
const RECORDS_WRITTEN: &str = "ccswitch_store_records_written_total";

/// Where the engine's records go. Cloneable; `push` never blocks.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::UnboundedSender<Record>,
    depth: Arc<AtomicI64>,
}

impl RecordSink {
    /// Queues a record for writing. The queue is unbounded so the control loop never waits on
    /// the database; its depth is the gauge `ccswitch_store_queue_depth`. A record pushed
    /// after the writer has shut down cannot be written: that is logged and counted.
    pub fn push(&self, r: Record) {
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
        if let Err(mpsc::error::SendError(r)) = self.tx.send(r) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!(RECORDS_LOST).increment(1);
            tracing::error!(
                call_id = r.call_id(),
                "record pushed after the store writer stopped; not written"
            );
        }
    }

    /// Records queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> u64 {
        u64::try_from(self.depth.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

/// What the writer did over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records committed.
    pub written: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Failed write attempts (each retried).
    pub errors: u64,
    /// Records given up after shutdown because the database kept refusing them (logged).
    pub lost: u64,
}

/// The totals, shared so they can be read while the writer runs.
#[derive(Default)]
struct SharedStats {
    written: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
}

impl SharedStats {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            written: self.written.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

pub struct WriterHandle {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stats: Arc<SharedStats>,
}

impl WriterHandle {
    /// Stops accepting records, writes everything already queued, and returns the totals.
    pub async fn shutdown(self) -> WriterStats {
        // The writer may have stopped already (every sink dropped): then it has flushed.
        let _ = self.shutdown.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "store writer task failed");
        }
        self.stats.snapshot()
    }

    /// The totals so far.
    pub fn stats(&self) -> WriterStats {
        self.stats.snapshot()
    }
}

/// Starts the writer task on the current tokio runtime.
pub fn spawn_writer(store: Store) -> (RecordSink, WriterHandle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let depth = Arc::new(AtomicI64::new(0));
    let sink = RecordSink {
        tx,
        depth: depth.clone(),
    };
    let stats = Arc::new(SharedStats::default());
    let task = tokio::spawn(run(store, rx, shutdown_rx, depth, stats.clone()));
    let handle = WriterHandle {
        shutdown: shutdown_tx,
        task,
        stats,
    };
    (sink, handle)
}

/// The writer's end of the channels. `closing` once shutdown was asked for; `signal_done`
/// once the shutdown channel resolved (asked, or the handle was dropped without asking, in
/// which case the writer runs until every sink is gone).
struct Inbox {
    rx: mpsc::UnboundedReceiver<Record>,
    shutdown: oneshot::Receiver<()>,
    signal_done: bool,
    closing: bool,
}

impl Inbox {
    fn on_signal(&mut self, asked: bool) {
        self.signal_done = true;
        if asked {
            self.closing = true;
            // No new records; recv keeps returning what is queued, then None.
            self.rx.close();
        }
    }
}

async fn run(
    store: Store,
    rx: mpsc::UnboundedReceiver<Record>,
    shutdown: oneshot::Receiver<()>,
    depth: Arc<AtomicI64>,
    stats: Arc<SharedStats>,
) {
    let mut inbox = Inbox {
        rx,
        shutdown,
        signal_done: false,
        closing: false,
    };
    let mut batch: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for the first record of a batch (or the shutdown signal).
        tokio::select! {
            n = inbox.rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break; // closed and drained: nothing more can arrive
                }
            }
            res = &mut inbox.shutdown, if !inbox.signal_done => {
                inbox.on_signal(res.is_ok());
                continue;
            }
        }
        // Fill the batch for at most MAX_DELAY, so a quiet system still writes promptly.
        if !inbox.closing {
            let deadline = tokio::time::sleep(MAX_DELAY);
            tokio::pin!(deadline);
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    n = inbox.rx.recv_many(&mut batch, room) => {
                        if n == 0 { break; }
                    }
                    _ = &mut deadline => break,
                    res = &mut inbox.shutdown, if !inbox.signal_done => {
                        inbox.on_signal(res.is_ok());
                    }
                }
            }
        }
        let taken = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let left = depth.fetch_sub(taken, Ordering::Relaxed) - taken;
        metrics::gauge!(QUEUE_DEPTH).set(left.max(0) as f64);
        write_with_retry(&store, &batch, &stats, &mut inbox).await;
        batch.clear();
    }
}

async fn write_with_retry(store: &Store, batch: &[Record], stats: &SharedStats, inbox: &mut Inbox) {
    let mut backoff = BACKOFF_START;
    let mut attempts_since_close = 0u32;
    loop {
        match store.write_batch(batch).await {
            Ok(()) => {
                let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                stats.written.fetch_add(n, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(RECORDS_WRITTEN).increment(n);
                return;
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(WRITE_ERRORS).increment(1);
                if inbox.closing {
                    attempts_since_close += 1;
                    if attempts_since_close >= ATTEMPTS_AFTER_SHUTDOWN {
                        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                        stats.lost.fetch_add(n, Ordering::Relaxed);
                        metrics::counter!(RECORDS_LOST).increment(n);
                        tracing::error!(error = %e, records = n,
                            "store write failed at shutdown; giving up on this batch");
                        return;
                    }
                }
                tracing::error!(error = %e, records = batch.len(),
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "store write failed; retrying");
                // Sleep, but notice shutdown so the bounded-attempts rule starts counting.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    res = &mut inbox.shutdown, if !inbox.signal_done => {
                        inbox.on_signal(res.is_ok());
                    }
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
