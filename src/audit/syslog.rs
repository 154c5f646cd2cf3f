//! The audit log's second copy: each line to the local syslog socket
//! (`/dev/log`, which journald also serves), where the host's own account
//! cannot rewrite it afterwards.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
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
