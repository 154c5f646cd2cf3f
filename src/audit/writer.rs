//! The broker's audit writer: one thread that appends the share's events
//! in the order they were recorded, as many as are waiting under one lock
//! and one flush to disk, then copies the lines to syslog.
//!
//! The broker runs on one thread: a flush there (a fraction of a
//! millisecond on an SSD, far more on a busy or slow disk) held up every
//! guest's screen for each line, and a share's end with hundreds of
//! guests waited for hundreds of flushes before the last goodbye went out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::event::Event;
use super::{AuditError, Sink};

/// Events waiting for the thread, at most: past that they are counted,
/// not queued, and one `unrecorded` event stands for them (the broker
/// never waits for the disk, not even when it stalls for good).
const QUEUE: usize = 1024;

/// Events kept for a later write, at most; past that the newest are lost,
/// counted in one event that stands where they were.
const MAX_UNWRITTEN: usize = 256;

/// How long the share's end waits for the last events to be written.
/// (`stop` waits 10 s for the whole end, guests' goodbyes included.)
const FINISH: std::time::Duration = std::time::Duration::from_secs(5);

/// Told whether an event reached the disk.
pub type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

struct Job {
    event: Event,
    ack: Option<Ack>,
}

pub struct Writer {
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Told when the thread has written its last event.
    done: Mutex<Receiver<()>>,
    /// Events that found the queue full, not yet counted in the log.
    lost: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the thread. `report` gets each failure (the share's log).
    pub fn start(
        sink: Sink,
        syslog: Option<super::syslog::Copier>,
        report: impl Fn(String) + Send + 'static,
    ) -> Result<Writer, AuditError> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let path = sink.path.clone();
        let lost = Arc::new(AtomicU64::new(0));
        let counted = lost.clone();
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                run(&sink, syslog, &rx, &counted, &report);
                let _ = done_tx.send(());
            })
            .map_err(|e| AuditError::Io(path, e))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            done: Mutex::new(done),
            lost,
        })
    }

    /// Queues `event`, never waiting; `ack`, if given, is told once it is
    /// on disk or could not be written.
    pub fn record(&self, event: Event, ack: Option<Ack>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let job = Job { event, ack };
        let Some(tx) = tx.as_ref() else {
            // The thread is gone (finished): said, not lost silently.
            if let Some(ack) = job.ack {
                let _ = ack.send(Err("the audit writer has stopped".into()));
            }
            return;
        };
        let refused = match tx.try_send(job) {
            Ok(()) => return,
            Err(TrySendError::Full(job)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                (job, "the audit log is not keeping up (its disk stalls?)")
            }
            Err(TrySendError::Disconnected(job)) => {
                super::syslog::say(
                    "pairjail: the audit writer has stopped: an audit event is lost",
                );
                (job, "the audit writer has stopped")
            }
        };
        if let (Job { ack: Some(ack), .. }, why) = refused {
            let _ = ack.send(Err(why.into()));
        }
    }

    /// Writes everything queued, then ends the thread (the share's end),
    /// waiting at most [`FINISH`]: a log that cannot be written must not
    /// keep the share's jail and tmux server from ending. False: the
    /// thread was still writing.
    pub fn finish(&self) -> bool {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return true;
        };
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        match done.recv_timeout(FINISH) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            _ => {
                let _ = thread.join();
                true
            }
        }
    }
}

/// However the broker ends, what was queued is written (within [`FINISH`]).
impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn run(
    sink: &Sink,
    syslog: Option<super::syslog::Copier>,
    rx: &Receiver<Job>,
    lost: &AtomicU64,
    report: &dyn Fn(String),
) {
    let append = |batch: &[Event]| {
        let (lines, done) = super::chain::append_all(&sink.path, &sink.origin, batch);
        (lines, done.map_err(|e| e.to_string()))
    };
    let copy = |line: String| {
        if let Some(c) = &syslog {
            c.copy(line);
        }
    };
    let mut unwritten: Vec<Event> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < QUEUE {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Those that found the queue full came after every event queued
        // then: the ones still queued go first, then the count.
        let count = lost.swap(0, Ordering::Relaxed);
        if count > 0 {
            jobs.extend(std::iter::from_fn(|| rx.try_recv().ok()));
        }
        let (mut events, acks): (Vec<Event>, Vec<Option<Ack>>) =
            jobs.into_iter().map(|j| (j.event, j.ack)).unzip();
        if count > 0 {
            report(format!(
                "{count} audit event(s) found the audit log's queue full: one `unrecorded` event counts them"
            ));
            events.push(Event::Unrecorded { count });
        }
        let result = write_in_order(&mut unwritten, events, append, copy);
        if let Err(e) = &result {
            report(format!(
                "{e} (kept to write later: {} event(s))",
                unwritten.len()
            ));
        }
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(result.clone());
        }
    }
    // The last chance for what is still waiting, and for the count of
    // those that found the queue full.
    let count = lost.swap(0, Ordering::Relaxed);
    let last = if count > 0 {
        vec![Event::Unrecorded { count }]
    } else {
        Vec::new()
    };
    if (count > 0 || !unwritten.is_empty())
        && let Err(e) = write_in_order(&mut unwritten, last, append, copy)
    {
        report(format!(
            "{} audit event(s) are lost with the share's end: {e}",
            unwritten.len()
        ));
    }
    if let Some(c) = &syslog {
        c.finish();
    }
}

/// Appends `events` after those the log could not take before, in order;
/// what was not written stays in `unwritten` (the newest dropped past
/// [`MAX_UNWRITTEN`]). `written` gets each line that went in. Err: some
/// did not go in, or the flush to disk failed.
fn write_in_order(
    unwritten: &mut Vec<Event>,
    events: Vec<Event>,
    mut append: impl FnMut(&[Event]) -> (Vec<String>, Result<(), String>),
    mut written: impl FnMut(String),
) -> Result<(), String> {
    unwritten.extend(events);
    let (lines, done) = append(unwritten);
    // A line that went in is not written again, even if the flush
    // failed: the file has it, and a second copy would be a second event.
    unwritten.drain(..lines.len().min(unwritten.len()));
    for line in lines {
        written(line);
    }
    if unwritten.len() > MAX_UNWRITTEN {
        // The first that failed says most (the recording stopped): past
        // the bound, the newest go, counted in one event that stands
        // where they were.
        let count = unwritten
            .split_off(MAX_UNWRITTEN - 1)
            .iter()
            .map(|e| match e {
                Event::Unrecorded { count } => *count,
                _ => 1,
            })
            .sum();
        unwritten.push(Event::Unrecorded { count });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(r: &str) -> Event {
        Event::RecordingStopped { reason: r.into() }
    }

    /// A full disk: the recording's end is not lost with the line that
    /// said so, but written first once the log takes lines again.
    #[test]
    fn events_the_log_could_not_take_go_in_first_once_it_can() {
        let mut unwritten = Vec::new();
        let mut log = Vec::new();
        let full = |_: &[Event]| (Vec::new(), Err("No space left on device".to_string()));
        assert!(write_in_order(&mut unwritten, vec![stop("disk full")], full, |_| ()).is_err());
        assert!(write_in_order(&mut unwritten, vec![stop("second")], full, |_| ()).is_err());
        assert_eq!(unwritten.len(), 2);
        let ok = |b: &[Event]| (b.iter().map(|e| format!("{e:?}")).collect(), Ok(()));
        write_in_order(&mut unwritten, vec![stop("third")], ok, |l| log.push(l)).unwrap();
        assert!(unwritten.is_empty());
        assert_eq!(log.len(), 3);
        assert!(
            log[0].contains("disk full") && log[2].contains("third"),
            "{log:?}"
        );
        // Bounded: a log that never comes back keeps the first ones, and
        // counts the rest where they were.
        for i in 0..MAX_UNWRITTEN + 10 {
            let _ = write_in_order(&mut unwritten, vec![stop(&i.to_string())], full, |_| ());
        }
        assert_eq!(unwritten.len(), MAX_UNWRITTEN);
        assert_eq!(unwritten[0], stop("0"));
        assert_eq!(
            unwritten[MAX_UNWRITTEN - 1],
            Event::Unrecorded { count: 11 }
        );
        let mut log = Vec::new();
        write_in_order(&mut unwritten, vec![stop("back")], ok, |l| log.push(l)).unwrap();
        assert!(
            log[MAX_UNWRITTEN - 1].contains("Unrecorded { count: 11 }"),
            "{log:?}"
        );
        assert!(log[MAX_UNWRITTEN].contains("back"));
    }

    /// A write that stops part way (the disk filled): what went in is not
    /// written twice, what did not is kept, in order.
    #[test]
    fn a_batch_cut_short_keeps_only_what_did_not_go_in() {
        let mut unwritten = Vec::new();
        let two = |b: &[Event]| {
            let lines = b.iter().take(2).map(|e| format!("{e:?}")).collect();
            (lines, Err("No space left on device".to_string()))
        };
        let mut log = Vec::new();
        let events = ["a", "b", "c", "d"].map(stop).to_vec();
        assert!(write_in_order(&mut unwritten, events, two, |l| log.push(l)).is_err());
        assert_eq!(log.len(), 2);
        assert_eq!(unwritten, vec![stop("c"), stop("d")]);
    }

    /// A log that cannot be written for good (its lock held; a disk that
    /// hangs): recording never waits, what does not fit the queue is
    /// counted, and once the log comes back one `unrecorded` event stands
    /// for it.
    #[test]
    fn a_log_that_hangs_never_holds_up_the_recorder_and_the_gap_is_counted() {
        let d = tempfile::tempdir().unwrap();
        let sink = sink_in(d.path());
        std::fs::write(&sink.path, "").unwrap();
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(&sink.path).unwrap(),
            nix::fcntl::FlockArg::LockExclusive,
        )
        .unwrap();
        let w = Writer::start(sink.clone(), None, |_| ()).unwrap();
        // One batch at most is taken (and waits on the lock), one queue
        // full waits behind it: within 2 × QUEUE + 1 events, one finds the
        // queue full and is told at once (when depends on when the writer
        // took its batch). Nothing is written while the lock is held, so
        // an answer now can only be that one.
        let mut n = 0;
        let told = loop {
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            w.record(stop(&n.to_string()), Some(tx));
            n += 1;
            if let Ok(told) = rx.try_recv() {
                break told;
            }
            assert!(n <= 2 * QUEUE + 1, "{n} events, and the queue never filled");
        };
        assert!(told.unwrap_err().contains("not keeping up"));
        drop(held);
        w.finish();
        let text = std::fs::read_to_string(&sink.path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let written = lines
            .iter()
            .filter(|l| l["event"] == "recording-stopped")
            .count();
        let counted: u64 = lines
            .iter()
            .filter(|l| l["event"] == "unrecorded")
            .map(|l| l["count"].as_u64().unwrap())
            .sum();
        assert!(counted > 0, "nothing was counted");
        assert_eq!(written as u64 + counted, n as u64);
        assert_eq!(lines.last().unwrap()["event"], "unrecorded");
    }

    fn sink_in(dir: &std::path::Path) -> Sink {
        Sink {
            path: dir.join("audit.jsonl"),
            syslog: None,
            origin: super::super::Origin {
                machine: "m".into(),
                host: "h".into(),
                session: "s".into(),
            },
        }
    }

    /// A burst goes to the file as one batch, chained in order, and every
    /// waiter hears that it is on disk.
    #[test]
    fn a_burst_is_written_in_order_and_acknowledged() {
        let d = tempfile::tempdir().unwrap();
        let sink = sink_in(d.path());
        let w = Writer::start(sink.clone(), None, |e| panic!("{e}")).unwrap();
        let mut acks = Vec::new();
        for i in 0..500 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            w.record(stop(&i.to_string()), Some(tx));
            acks.push(rx);
        }
        w.finish();
        for rx in acks {
            assert_eq!(rx.blocking_recv(), Ok(Ok(())));
        }
        let text = std::fs::read_to_string(&sink.path).unwrap();
        let report = super::super::verify(text.as_bytes(), None).unwrap();
        assert_eq!((report.lines, report.problem), (500, None));
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["reason"], "499", "{last}");
        // Finished: a late event is refused out loud, not dropped.
        let (tx, rx) = tokio::sync::oneshot::channel();
        w.record(stop("late"), Some(tx));
        assert!(rx.blocking_recv().unwrap().is_err());
    }
}
