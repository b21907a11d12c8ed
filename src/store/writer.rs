//! The batched writer: the engine pushes records without ever waiting on the database; one
//! task writes them in transactions of up to `max_batch` records or `max_delay`, retrying with
//! backoff until the database takes them.
//!
//! With surveys on (`survey_groups`), a call's `CallEnded` and the survey records the engine
//! emits right after it (`FollowUpOpened`, then always `SurveyScheduled` or `SurveySkipped`
//! last) are one group, and a batch never ends inside a group: a crash then leaves either
//! the ended call with its survey row, or neither. The batch grows past `max_batch` by the
//! rest of the group instead.

use super::Store;
use crate::engine::record::Record;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How the writer batches and retries. `Default` is what the switch runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// Records per transaction at most.
    pub max_batch: usize,
    /// How long a batch waits to fill once its first record is in.
    pub max_delay: Duration,
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// After shutdown is asked for, a batch the database keeps failing is given up (loudly)
    /// after this many attempts, so shutdown cannot hang forever on a dead database.
    pub attempts_after_shutdown: u32,
    /// A batch refused this many times while the database answers pings is split to find the
    /// record it cannot take, so one bad record cannot wedge the writer (and grow the queue).
    pub refusals_before_isolating: u32,
    /// Surveys are on: every `CallEnded` is followed by its call's survey decision, kept in
    /// the same batch (see the module doc).
    pub survey_groups: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 500,
            max_delay: Duration::from_millis(50),
            backoff_start: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            attempts_after_shutdown: 8,
            refusals_before_isolating: 5,
            survey_groups: false,
        }
    }
}

const QUEUE_DEPTH: &str = "ccswitch_store_queue_depth";
const WRITE_ERRORS: &str = "ccswitch_store_write_errors_total";
const RECORDS_LOST: &str = "ccswitch_store_records_lost_total";
const RECORDS_WRITTEN: &str = "ccswitch_store_records_written_total";
const GROUP_CUT: &str = "ccswitch_store_survey_group_cut_total";

/// How long a batch waits for the rest of a survey group. The engine pushes a group in one
/// go, so this is only reached when the engine broke its promise (logged and counted).
const GROUP_GRACE: Duration = Duration::from_secs(1);

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
                call_id = r.call_id().unwrap_or(""),
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
    spawn_writer_with(store, WriterConfig::default())
}

/// `spawn_writer` with explicit batching and retry settings.
pub fn spawn_writer_with(store: Store, cfg: WriterConfig) -> (RecordSink, WriterHandle) {
    let cfg = WriterConfig {
        max_batch: cfg.max_batch.max(1),
        ..cfg
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let depth = Arc::new(AtomicI64::new(0));
    let sink = RecordSink {
        tx,
        depth: depth.clone(),
    };
    let stats = Arc::new(SharedStats::default());
    let task = tokio::spawn(run(store, rx, shutdown_rx, depth, stats.clone(), cfg));
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
    /// A batch was given up during shutdown.
    gave_up: bool,
    cfg: WriterConfig,
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
    cfg: WriterConfig,
) {
    let mut inbox = Inbox {
        rx,
        shutdown,
        signal_done: false,
        closing: false,
        gave_up: false,
        cfg,
    };
    let mut batch: Vec<Record> = Vec::with_capacity(inbox.cfg.max_batch);
    loop {
        // Wait for the first record of a batch (or the shutdown signal).
        tokio::select! {
            n = inbox.rx.recv_many(&mut batch, inbox.cfg.max_batch) => {
                if n == 0 {
                    break; // closed and drained: nothing more can arrive
                }
            }
            res = &mut inbox.shutdown, if !inbox.signal_done => {
                inbox.on_signal(res.is_ok());
                continue;
            }
        }
        // Fill the batch for at most max_delay, so a quiet system still writes promptly.
        if !inbox.closing {
            let deadline = tokio::time::sleep(inbox.cfg.max_delay);
            tokio::pin!(deadline);
            while batch.len() < inbox.cfg.max_batch {
                let room = inbox.cfg.max_batch - batch.len();
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
        if inbox.cfg.survey_groups {
            complete_survey_group(&mut batch, &mut inbox).await;
        }
        let taken = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let left = depth.fetch_sub(taken, Ordering::Relaxed) - taken;
        metrics::gauge!(QUEUE_DEPTH).set(left.max(0) as f64);
        write_with_retry(&store, &batch, &stats, &mut inbox).await;
        batch.clear();
    }
}

/// Whether `batch` ends inside a survey group: after a `CallEnded` (and maybe its call's
/// `FollowUpOpened`) whose `SurveyScheduled`/`SurveySkipped` has not come yet.
fn ends_inside_survey_group(batch: &[Record]) -> bool {
    let mut follow_up_of: Option<&str> = None;
    for r in batch.iter().rev() {
        match r {
            Record::FollowUpOpened { call_id, .. } => {
                if *follow_up_of.get_or_insert(call_id) != call_id.as_str() {
                    return false;
                }
            }
            Record::CallEnded { call_id, .. } => {
                return follow_up_of.is_none_or(|c| c == call_id);
            }
            _ => return false,
        }
    }
    false
}

/// Takes records until the batch no longer ends inside a survey group. The rest of a group
/// is pushed together with its start, so this waits microseconds; after `GROUP_GRACE` the
/// batch is cut anyway (nothing is lost: the rest goes in the next batch).
async fn complete_survey_group(batch: &mut Vec<Record>, inbox: &mut Inbox) {
    let grace = tokio::time::sleep(GROUP_GRACE);
    tokio::pin!(grace);
    while ends_inside_survey_group(batch) {
        tokio::select! {
            r = inbox.rx.recv() => match r {
                Some(r) => batch.push(r),
                None => return, // closed and drained: nothing more can arrive
            },
            _ = &mut grace => {
                metrics::counter!(GROUP_CUT).increment(1);
                tracing::warn!(
                    call_id = batch.last().and_then(Record::call_id).unwrap_or(""),
                    "a call's survey records did not follow its end; writing them separately"
                );
                return;
            }
            res = &mut inbox.shutdown, if !inbox.signal_done => {
                inbox.on_signal(res.is_ok());
            }
        }
    }
}

/// Writes a batch, retrying until it is in. If the database stays up but keeps refusing the
/// batch, some record in it cannot be stored (a poison record): the batch is then written one
/// record at a time and only the refused records are dropped, loudly.
async fn write_with_retry(store: &Store, batch: &[Record], stats: &SharedStats, inbox: &mut Inbox) {
    if try_write(store, batch, stats, inbox).await != Outcome::Refused {
        return;
    }
    for r in batch {
        if try_write(store, std::slice::from_ref(r), stats, inbox).await == Outcome::Refused {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(RECORDS_LOST).increment(1);
            tracing::error!(
                call_id = r.call_id().unwrap_or(""),
                record = r.kind(),
                "the database keeps refusing this record while accepting others; dropped"
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Written,
    /// Refused `refusals_before_isolating` times while the database answered pings.
    Refused,
    /// Shutdown was asked for and the database kept failing: given up (counted as lost).
    GaveUp,
}

async fn try_write(
    store: &Store,
    batch: &[Record],
    stats: &SharedStats,
    inbox: &mut Inbox,
) -> Outcome {
    let mut backoff = inbox.cfg.backoff_start;
    let mut attempts_since_close = 0u32;
    let mut refusals = 0u32;
    loop {
        let e = match store.write_batch(batch).await {
            Ok(()) => {
                let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                stats.written.fetch_add(n, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(RECORDS_WRITTEN).increment(n);
                return Outcome::Written;
            }
            Err(e) => e,
        };
        stats.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(WRITE_ERRORS).increment(1);
        if store.ping().await {
            refusals += 1;
            if refusals >= inbox.cfg.refusals_before_isolating {
                tracing::error!(error = %e, records = batch.len(), "database refuses the batch");
                return Outcome::Refused;
            }
        }
        if inbox.closing {
            attempts_since_close += 1;
            // Once one batch was given up the database is gone: one attempt each for the rest.
            let limit = if inbox.gave_up {
                1
            } else {
                inbox.cfg.attempts_after_shutdown
            };
            if attempts_since_close >= limit {
                let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                stats.lost.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(RECORDS_LOST).increment(n);
                inbox.gave_up = true;
                tracing::error!(error = %e, records = n,
                    "store write failed at shutdown; giving up on this batch");
                return Outcome::GaveUp;
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
        backoff = (backoff * 2).min(inbox.cfg.backoff_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::EndedBy;
    use crate::engine::time::Millis;

    fn ended(call: &str) -> Record {
        Record::CallEnded {
            call_id: call.into(),
            ended_at: Millis(2_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        }
    }

    fn started(call: &str) -> Record {
        Record::CallStarted {
            call_id: call.into(),
            sip_call_id: format!("sip-{call}"),
            caller: "+8613812345678".into(),
            dialled: "8000".into(),
            transport: "udp".into(),
            arrived_at: Millis(1_000),
            ring_cycle_ms: 6_000,
        }
    }

    fn skipped(call: &str, survey_id: u64) -> Record {
        Record::SurveySkipped {
            call_id: call.into(),
            survey_id,
            at: Millis(2_000),
            reason: "not_served".into(),
            agent: None,
            queue: None,
        }
    }

    fn follow_up(call: &str) -> Record {
        Record::FollowUpOpened {
            call_id: call.into(),
            at: Millis(2_000),
            agent: Some("1002".into()),
            queue: Some("complaints".into()),
            reason: "complaint_queue".into(),
            due_at: Millis(2_000 + 86_400_000),
        }
    }

    #[test]
    fn where_a_survey_group_is_open() {
        assert!(!ends_inside_survey_group(&[]));
        assert!(!ends_inside_survey_group(&[started("a")]));
        assert!(ends_inside_survey_group(&[started("a"), ended("a")]));
        assert!(ends_inside_survey_group(&[ended("a"), follow_up("a")]));
        assert!(!ends_inside_survey_group(&[ended("a"), skipped("a", 1)]));
        assert!(!ends_inside_survey_group(&[
            ended("a"),
            follow_up("a"),
            skipped("a", 1)
        ]));
        // A disposition's task (after the group) does not open one.
        let disposition = Record::DispositionSet {
            call_id: "a".into(),
            agent: "1002".into(),
            at: Millis(3_000),
            code: 2,
            name: "follow_up".into(),
            resolved: false,
            queue: None,
            note: None,
        };
        assert!(!ends_inside_survey_group(&[
            ended("a"),
            skipped("a", 1),
            disposition,
            follow_up("a")
        ]));
        // A follow-up of another call does not belong to this end.
        assert!(!ends_inside_survey_group(&[ended("a"), follow_up("b")]));
        assert!(!ends_inside_survey_group(&[follow_up("b")]));
    }

    /// Records queued before the writer runs are cut at `max_batch` exactly, except that a
    /// cut right after a `CallEnded` takes the call's survey records along.
    async fn batches_for(survey_groups: bool) -> WriterStats {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("w.db").display());
        let store = Store::open(&url).await.unwrap();
        let cfg = WriterConfig {
            max_batch: 2,
            survey_groups,
            ..WriterConfig::default()
        };
        let (sink, handle) = spawn_writer_with(store.clone(), cfg);
        // max_batch 2 would cut after each CallEnded (records 2 and 6).
        for r in [
            started("a"),
            ended("a"),
            follow_up("a"),
            skipped("a", 1),
            started("b"),
            ended("b"),
            skipped("b", 2),
        ] {
            sink.push(r);
        }
        let stats = handle.shutdown().await;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM surveys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, 2);
        stats
    }

    #[tokio::test]
    async fn a_batch_cut_at_max_batch_never_separates_a_call_end_from_its_survey() {
        let grouped = batches_for(true).await;
        assert_eq!(grouped.written, 7);
        // [a start, a end, a follow-up, a skipped] [b start, b end, b skipped]
        assert_eq!(grouped.batches, 2, "{grouped:?}");
        let plain = batches_for(false).await;
        assert_eq!(plain.written, 7);
        // [a start, a end] [a follow-up, a skipped] [b start, b end] [b skipped]
        assert_eq!(plain.batches, 4, "{plain:?}");
    }
}
