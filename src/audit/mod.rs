//! The audit log: who was in, when, and what the host decided, one JSON
//! object per line, each chained to the one before by its SHA-256
//! (tamper-evident), optionally copied to syslog/journald.
//!
//! One file per host user (`$XDG_STATE_HOME/pairjail/audit.jsonl`), which
//! the broker of every share and the invite commands append to under a
//! file lock.

pub mod chain;
pub mod event;
pub mod syslog;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use chain::{Origin, Report, verify};
pub use event::{Decider, Event, Line, Transport};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(
        "audit log {0} is not a regular file of yours (a symlink, or another user's): move it away or choose another with --audit-log"
    )]
    NotYours(PathBuf),
    #[error("cannot encode an audit line: {0}")]
    Encode(serde_json::Error),
    #[error("cannot send to syslog at {0}: {1}")]
    Syslog(PathBuf, std::io::Error),
    #[error("no place for the audit log: set XDG_STATE_HOME or HOME, or give --audit-log FILE")]
    NoHome,
    #[error("--since {0:?}: give an RFC 3339 time (2026-11-21T09:00:00Z) or a duration ago (2h)")]
    Since(String),
}

/// The host's audit log: `$PAIRJAIL_AUDIT_LOG`, else
/// `$XDG_STATE_HOME/pairjail/audit.jsonl`, else
/// `~/.local/state/pairjail/audit.jsonl`.
pub fn default_path() -> Result<PathBuf, AuditError> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("PAIRJAIL_AUDIT_LOG") {
        return Ok(p);
    }
    let state = env("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| h.join(".local/state")))
        .ok_or(AuditError::NoHome)?;
    Ok(state.join("pairjail/audit.jsonl"))
}

/// This machine's name, for the `machine` field.
pub fn machine() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Where a process's events go.
#[derive(Debug, Clone)]
pub struct Sink {
    pub path: PathBuf,
    /// The syslog socket each line is also sent to.
    pub syslog: Option<PathBuf>,
    pub origin: Origin,
}

impl Sink {
    /// Appends the event to the file, then copies it to syslog. The file
    /// is the record: a syslog failure is reported on stderr (the share's
    /// log) and the line stays written.
    pub fn record(&self, event: Event) -> Result<String, AuditError> {
        let line = self.append(event)?;
        if let Some(socket) = &self.syslog
            && let Err(e) = syslog::send(socket, &line)
        {
            syslog::say(&format!("pairjail: audit line not copied to syslog: {e}"));
        }
        Ok(line)
    }

    /// Appends the event to the file only; the broker copies the line to
    /// syslog through its [`syslog::Copier`].
    pub fn append(&self, event: Event) -> Result<String, AuditError> {
        chain::append(&self.path, &self.origin, event)
    }
}

/// The JSON Schema of one line.
pub fn schema() -> serde_json::Value {
    let s = schemars::schema_for!(Line);
    serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
}

/// `--since`: an RFC 3339 time, or a duration before now.
pub fn parse_since(s: &str) -> Result<SystemTime, AuditError> {
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| AuditError::Since(s.to_string()));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| AuditError::Since(s.to_string()))
}

/// One line of `audit show`: a line of the file, or why it is not one.
pub enum Shown {
    Line(Box<Line>),
    Bad { line: u64, why: String },
}

/// The lines of a log, filtered for people.
pub fn read(
    path: &Path,
    session: Option<&str>,
    since: Option<SystemTime>,
) -> Result<Vec<Shown>, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
    let mut out = vec![];
    for (i, raw) in text.lines().enumerate() {
        match serde_json::from_str::<Line>(raw) {
            Err(e) => out.push(Shown::Bad {
                line: i as u64 + 1,
                why: e.to_string(),
            }),
            Ok(l) => {
                if session.is_some_and(|s| s != l.session) {
                    continue;
                }
                if let Some(t) = since {
                    match humantime::parse_rfc3339_weak(&l.time) {
                        Ok(at) if at < t => continue,
                        _ => {}
                    }
                }
                out.push(Shown::Line(Box::new(l)));
            }
        }
    }
    Ok(out)
}

impl Sink {
    /// The calling host's own log (`default_path`), and syslog if
    /// `$PAIRJAIL_AUDIT_SYSLOG` names its socket.
    pub fn host(host: &str, session: &str) -> Result<Sink, AuditError> {
        Ok(Sink {
            path: default_path()?,
            syslog: std::env::var_os("PAIRJAIL_AUDIT_SYSLOG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            origin: Origin {
                machine: machine(),
                host: host.to_string(),
                session: session.to_string(),
            },
        })
    }
}

/// An invite's events, written by the command that changed the store.
/// The change is already made: a log that cannot be written is a warning
/// on stderr, not a failure that would hide it.
pub fn invites(host: &str, changes: impl IntoIterator<Item = (String, Event)>) {
    for (session, event) in changes {
        let done = Sink::host(host, &session).and_then(|s| s.record(event));
        if let Err(e) = done {
            syslog::say(&format!("pairjail: warning: not in the audit log: {e}"));
        }
    }
}

/// `invite-added` for an invite.
pub fn invite_added(i: &crate::keys::invites::Invite) -> (String, Event) {
    (
        i.session.clone(),
        Event::InviteAdded {
            guest: i.name.clone(),
            mode: i.mode,
            keys: i.fingerprints.clone(),
            expires: crate::clock::rfc3339(i.expires),
            approve: i.approve,
            direct: i.direct,
        },
    )
}

/// `invite-expired` or `invite-revoked` (with why) for a removed invite.
pub fn invite_removed(i: &crate::keys::invites::Invite, reason: &str) -> (String, Event) {
    let event = if i.expires <= crate::clock::now() {
        Event::InviteExpired {
            guest: i.name.clone(),
        }
    } else {
        Event::InviteRevoked {
            guest: i.name.clone(),
            reason: reason.to_string(),
        }
    };
    (i.session.clone(), event)
}
