//! What an audit line says: the fields every line has, and one variant
//! per event with its own fields. The field set is stable (schema version
//! `v`); `pairjail audit schema` prints it as JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::Mode;

/// The schema version every line carries.
pub const VERSION: u32 = 1;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Line {
    /// Schema version (1).
    pub v: u32,
    /// Position in the file, from 1: a gap or a step back is a removed or
    /// reordered line.
    pub seq: u64,
    /// When it happened: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The machine's host name.
    pub machine: String,
    /// The local user who hosts the session.
    pub host: String,
    /// The session's name.
    pub session: String,
    #[serde(flatten)]
    pub event: Event,
    /// Hex SHA-256 of the previous line's bytes (without its newline); 64
    /// zeros on the first line of a file (the anchor).
    pub prev: String,
}

/// How a guest reaches the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Relay,
    Direct,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    /// The host started sharing.
    SessionStart {
        allowed_modes: Vec<Mode>,
        default_mode: Mode,
        approve: bool,
        direct: bool,
        /// The session's tmux server runs in a jail.
        confined: bool,
        /// The recording's file, if the session is recorded.
        recording: Option<String>,
    },
    /// The share ended.
    SessionStop { reason: String },
    /// A guest presented an invite (before any decision).
    JoinAttempt {
        guest: String,
        /// SHA-256 fingerprint of the key sshd accepted.
        key: Option<String>,
        /// Address and port the guest connected from.
        source: Option<String>,
        mode: Mode,
        transport: Transport,
    },
    /// A guest was let in: by its invite alone, or by the host at the door.
    Admitted {
        guest: String,
        mode: Mode,
        by: Decider,
    },
    /// A guest was turned away at the door.
    Denied {
        guest: String,
        by: Decider,
        reason: String,
    },
    /// A connection was refused before the door, and why.
    Refused {
        guest: Option<String>,
        key: Option<String>,
        source: Option<String>,
        reason: String,
    },
    /// A guest's client is in the session.
    Joined {
        guest: String,
        mode: Mode,
        key: Option<String>,
        source: Option<String>,
    },
    /// The host changed a guest's mode.
    ModeChanged { guest: String, from: Mode, to: Mode },
    /// The host disconnected a guest.
    Kicked { guest: String, reason: String },
    /// A guest's connection ended.
    Left { guest: String, reason: String },
    /// The host invited a guest.
    InviteAdded {
        guest: String,
        mode: Mode,
        /// SHA-256 fingerprints of the invite's keys.
        keys: Vec<String>,
        /// RFC 3339, UTC.
        expires: String,
        approve: bool,
        direct: bool,
    },
    /// An invite was withdrawn (by the host, or with its session).
    InviteRevoked { guest: String, reason: String },
    /// An invite ran out and was removed.
    InviteExpired { guest: String },
    /// The recording stopped before the session did.
    RecordingStopped { reason: String },
    /// This many events happened here that the audit log could not take
    /// (a full disk) and that are lost: the gap is in the record.
    Unrecorded { count: u64 },
}

/// Who decided at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Decider {
    /// No door: the invite was enough.
    Invite,
    /// The host, from the menu or with `pairjail approve` / `deny`.
    Host,
    /// Nobody answered in time.
    Timeout,
}

impl Event {
    /// The event's name as it appears in the `event` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionStart { .. } => "session-start",
            Event::SessionStop { .. } => "session-stop",
            Event::JoinAttempt { .. } => "join-attempt",
            Event::Admitted { .. } => "admitted",
            Event::Denied { .. } => "denied",
            Event::Refused { .. } => "refused",
            Event::Joined { .. } => "joined",
            Event::ModeChanged { .. } => "mode-changed",
            Event::Kicked { .. } => "kicked",
            Event::Left { .. } => "left",
            Event::InviteAdded { .. } => "invite-added",
            Event::InviteRevoked { .. } => "invite-revoked",
            Event::InviteExpired { .. } => "invite-expired",
            Event::RecordingStopped { .. } => "recording-stopped",
            Event::Unrecorded { .. } => "unrecorded",
        }
    }

    /// One line for people (notices, recording markers, `audit show`).
    pub fn describe(&self) -> String {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".into());
        match self {
            Event::SessionStart {
                allowed_modes,
                recording,
                ..
            } => {
                let modes: Vec<String> = allowed_modes.iter().map(Mode::to_string).collect();
                format!(
                    "sharing started (modes {}){}",
                    modes.join(", "),
                    if recording.is_some() {
                        ", recorded"
                    } else {
                        ""
                    }
                )
            }
            Event::SessionStop { reason } => format!("sharing ended: {reason}"),
            Event::JoinAttempt {
                guest,
                key,
                source,
                mode,
                transport,
            } => format!(
                "{guest} tries to join as {mode} (key {}, from {}, {})",
                opt(key),
                opt(source),
                match transport {
                    Transport::Relay => "relay",
                    Transport::Direct => "direct",
                }
            ),
            Event::Admitted { guest, mode, by } => match by {
                Decider::Invite => format!("{guest} admitted as {mode} by invite"),
                _ => format!("{guest} let in as {mode} by the host"),
            },
            Event::Denied { guest, reason, .. } => format!("{guest} was not let in: {reason}"),
            Event::Refused { guest, reason, .. } => {
                format!("refused {}: {reason}", opt(guest))
            }
            Event::Joined { guest, mode, .. } => format!("{guest} joined as {mode}"),
            Event::ModeChanged { guest, from, to } => format!("{guest} is now {to} (was {from})"),
            Event::Kicked { guest, reason } => format!("{guest} was kicked: {reason}"),
            Event::Left { guest, reason } => format!("{guest} left ({reason})"),
            Event::InviteAdded {
                guest,
                mode,
                expires,
                ..
            } => format!("{guest} invited as {mode} until {expires}"),
            Event::InviteRevoked { guest, reason } => {
                format!("{guest}'s invite revoked ({reason})")
            }
            Event::InviteExpired { guest } => format!("{guest}'s invite expired"),
            Event::RecordingStopped { reason } => format!("recording stopped: {reason}"),
            Event::Unrecorded { count } => {
                format!("{count} event(s) here could not be recorded (the audit log was full)")
            }
        }
    }
}
