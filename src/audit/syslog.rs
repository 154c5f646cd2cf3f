//! The audit log's second copy: each line to the local syslog socket
//! (`/dev/log`, which journald also serves), where the host's own account
//! cannot rewrite it afterwards.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use super::AuditError;

/// Facility authpriv (10), severity info (6): security events, kept apart
/// from the world-readable logs.
const PRI: u32 = 10 * 8 + 6;

/// How long one line may wait for a full syslog queue.
const WAIT: Duration = Duration::from_millis(200);

/// Sends one audit line, with its hash so the chain's head can be checked
/// against this copy.
pub fn send(socket: &Path, line: &str) -> Result<(), AuditError> {
    let err = |e| AuditError::Syslog(socket.to_path_buf(), e);
    let s = UnixDatagram::unbound().map_err(err)?;
    let msg = format!(
        "<{PRI}>pairjail[{}]: sha256={} {line}",
        std::process::id(),
        super::chain::hash(line.as_bytes())
    );
    // A syslog daemon that stops reading fills the socket's queue; the
    // broker waits a moment for it, never longer (the file has the line).
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(err(std::io::ErrorKind::TimedOut.into()));
        }
        s.set_write_timeout(Some(left)).map_err(err)?;
        match s.send_to(msg.as_bytes(), socket) {
            Ok(_) => return Ok(()),
            // A send that waits with a timeout is not restarted after a
            // signal (the broker's SIGCHLD, say), even under SA_RESTART.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        }
    }
}

/// A line on stderr (the share's log) that is lost, not a panic, when
/// the log cannot take it.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Lines waiting for syslog in a [`Copier`]: more than the audit writer
/// hands over at once (its whole queue and the events it retries), so
/// that only a syslog that stops reading loses lines.
const QUEUE: usize = 4096;

/// Copies lines to syslog from a thread of its own, for the broker: a
/// syslog daemon that stops reading (a full `/dev/log` queue, which any
/// local user can fill) would otherwise hold a broker worker for `WAIT`
/// on every event, and guests can cause events. At most `QUEUE` lines
/// wait; more are dropped, and said so on stderr (the share's log). The
/// audit file has every line either way.
pub struct Copier {
    tx: Mutex<Option<SyncSender<String>>>,
    /// Told when the thread has sent its last line.
    done: Mutex<Receiver<()>>,
    dropped: AtomicU64,
}

/// How long the end of a share waits for the queued lines.
const FINISH: Duration = Duration::from_secs(2);

impl Copier {
    pub fn start(socket: &Path) -> Result<Copier, AuditError> {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let (done_tx, done) = channel();
        let socket = socket.to_path_buf();
        let at = socket.clone();
        std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || {
                for line in rx {
                    if let Err(e) = send(&socket, &line) {
                        say(&format!("pairjail: audit line not copied to syslog: {e}"));
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| AuditError::Syslog(at, e))?;
        Ok(Copier {
            tx: Mutex::new(Some(tx)),
            done: Mutex::new(done),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a line; never waits.
    pub fn copy(&self, line: String) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = tx.as_ref() else {
            return;
        };
        // Full, or the thread gone: either way the line is not copied.
        if tx.try_send(line).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Said once, then every thousand: the log must not fill instead.
            if n == 1 || n.is_multiple_of(1000) {
                say(&format!(
                    "pairjail: syslog does not keep up: {n} audit line(s) not copied to it (the audit file has them)"
                ));
            }
        }
    }

    /// Sends what is queued, for at most `FINISH` (at the end of a share:
    /// a stalled syslog must not hold up its end either).
    pub fn finish(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if done.recv_timeout(FINISH).is_err() {
            say(
                "pairjail: syslog did not take the share's last audit lines in time (the audit file has them)",
            );
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syslog that never reads (its queue fills, as any local user can
    /// make /dev/log's): copying never waits for it, what does not fit is
    /// counted, and the end does not wait for it for long.
    #[test]
    fn a_syslog_that_stops_reading_never_holds_the_broker() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("log");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let copier = Copier::start(&path).unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for i in 0..QUEUE + 2000 {
                copier.copy(format!("line {i}"));
            }
            let _ = tx.send(copier);
        });
        // Waiting `WAIT` for each line past the socket's queue would take
        // minutes; only a copy that waits misses this.
        let copier = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("copying waited for syslog");
        assert!(copier.dropped() > 0, "the lines cannot all fit the queue");
        drop(receiver);
        copier.finish();
    }
}
