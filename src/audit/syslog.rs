//! The audit log's second copy: each line to the local syslog socket
//! (`/dev/log`, which journald also serves), where the host's own account
//! cannot rewrite it afterwards.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::AuditError;

/// Facility authpriv (10), severity info (6): security events, kept apart
/// from the world-readable logs.
const PRI: u32 = 10 * 8 + 6;

/// Sends one audit line, with its hash so the chain's head can be checked
/// against this copy.
pub fn send(socket: &Path, line: &str) -> Result<(), AuditError> {
    let s = UnixDatagram::unbound().map_err(|e| AuditError::Syslog(socket.to_path_buf(), e))?;
    let msg = format!(
        "<{PRI}>pairjail[{}]: sha256={} {line}",
        std::process::id(),
        super::chain::hash(line.as_bytes())
    );
    s.send_to(msg.as_bytes(), socket)
        .map(drop)
        .map_err(|e| AuditError::Syslog(socket.to_path_buf(), e))
}
