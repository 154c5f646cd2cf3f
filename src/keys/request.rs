//! An invite as the host asks for it (`invite add`, the guest book): where
//! the keys come from, when it expires, how the guest gets in. Checked
//! here, turned into a stored [`Invite`] by [`Request::into_invite`].

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crate::broker::paths::{check_name, check_session};
use crate::keys::fetch::{self, Forge};
use crate::keys::invites::{Invite, Via};
use crate::keys::key::{self, GuestKey};
use crate::keys::line;
use crate::profile::Mode;

/// Default lifetime of an invite (a session also ends it).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("give exactly one of --key, --key-file, --github, --gitlab")]
    KeySources,
    #[error("--key: {0}")]
    Key(String),
    #[error("--key-file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("--expires '{0}': expected a duration (2h, 90m) or a UTC time (2026-12-01T18:00)")]
    Expiry(String),
    #[error("--expires '{0}' is not in the future")]
    Past(String),
    #[error("{0}")]
    Name(String),
    #[error("{0}")]
    From(String),
    #[error(
        "--transport direct needs pair-user mode: in your own account the guest would run as you, and tmux trusts its owner"
    )]
    DirectInOwnAccount,
}

impl RequestError {
    /// A network fetch failing is not the host's input being wrong.
    pub fn is_invalid(&self) -> bool {
        !matches!(self, RequestError::Fetch(_))
    }
}

/// Exactly one of these names the guest's keys.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub key: Option<String>,
    pub key_file: Option<PathBuf>,
    pub github: Option<String>,
    pub gitlab: Option<String>,
}

impl KeySource {
    pub fn keys(&self) -> Result<Vec<GuestKey>, RequestError> {
        let given = [
            self.key.is_some(),
            self.key_file.is_some(),
            self.github.is_some(),
            self.gitlab.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(RequestError::KeySources);
        }
        if let Some(k) = &self.key {
            // One pasted line is one key (no "line 1:"); more is a file's text.
            return if k.trim().lines().count() == 1 {
                key::parse(k).map(|k| vec![k])
            } else {
                key::parse_text(k)
            }
            .map_err(RequestError::Key);
        }
        if let Some(p) = &self.key_file {
            let bad = |message: String| RequestError::KeyFile {
                path: p.clone(),
                message,
            };
            let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
            let keys = key::parse_text(&text).map_err(bad)?;
            if keys.is_empty() {
                return Err(bad("no key in it".into()));
            }
            return Ok(keys);
        }
        let (forge, user) = match (&self.github, &self.gitlab) {
            (Some(u), _) => (Forge::GitHub, u),
            (_, Some(u)) => (Forge::GitLab, u),
            _ => return Err(RequestError::KeySources),
        };
        Ok(fetch::keys_of(forge, user)?)
    }
}

/// `2h`, `90m`, `1h 30m`, or a UTC time `2026-12-01T18:00[:00]`, as
/// seconds since the epoch; it must be later than `now`.
pub fn parse_expiry(s: &str, now: u64) -> Result<u64, RequestError> {
    let bad = || RequestError::Expiry(s.escape_debug().to_string());
    let at = if let Ok(d) = humantime::parse_duration(s) {
        now.checked_add(d.as_secs()).ok_or_else(bad)?
    } else {
        let full = if s.len() == 16 {
            format!("{s}:00Z")
        } else if s.ends_with('Z') {
            s.to_string()
        } else {
            format!("{s}Z")
        };
        let t = humantime::parse_rfc3339(&full).map_err(|_| bad())?;
        t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_secs()
    };
    if at <= now {
        return Err(RequestError::Past(s.to_string()));
    }
    Ok(at)
}

/// What the host asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub source: KeySource,
    pub mode: Mode,
    pub session: String,
    pub expires: Option<String>,
    pub from: Vec<String>,
    /// None: pair-user mode if `pairjail setup` ran, else authorized-keys.
    pub via: Option<Via>,
    pub direct: bool,
    /// The guest waits at the door until the host lets it in.
    pub approve: bool,
}

impl Request {
    /// Checks every field, fetches the keys, and makes the invite (not yet
    /// bound to a run). `pair_user_mode` decides the default `via`.
    pub fn into_invite(
        self,
        now: u64,
        pair_user_mode: bool,
    ) -> Result<(Invite, Vec<GuestKey>), RequestError> {
        check_name("guest", &self.name).map_err(RequestError::Name)?;
        check_session(&self.session).map_err(RequestError::Name)?;
        for f in &self.from {
            line::check_cidr(f).map_err(RequestError::From)?;
        }
        let expires = match &self.expires {
            Some(e) => parse_expiry(e, now)?,
            None => now + DEFAULT_EXPIRY.as_secs(),
        };
        let via = self.via.unwrap_or(if pair_user_mode {
            Via::PairUser
        } else {
            Via::AuthorizedKeys
        });
        if self.direct && via == Via::AuthorizedKeys {
            return Err(RequestError::DirectInOwnAccount);
        }
        let keys = self.source.keys()?;
        let invite = Invite {
            name: self.name,
            session: self.session,
            mode: self.mode,
            via,
            keys: keys.iter().map(|k| k.openssh.clone()).collect(),
            fingerprints: keys.iter().map(|k| k.fingerprint.clone()).collect(),
            expires,
            created: now,
            from: self.from,
            run: None,
            direct: self.direct,
            approve: self.approve,
        };
        Ok((invite, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_durations_and_utc_times_in_the_future() {
        let now = 1_800_000_000;
        assert_eq!(parse_expiry("2h", now).unwrap(), now + 7200);
        assert!(parse_expiry("2099-12-01T18:00", now).is_ok());
        assert!(matches!(
            parse_expiry("2001-01-01T00:00", now),
            Err(RequestError::Past(_))
        ));
        assert!(matches!(
            parse_expiry("soon", now),
            Err(RequestError::Expiry(_))
        ));
    }

    #[test]
    fn exactly_one_key_source() {
        assert!(matches!(
            KeySource::default().keys(),
            Err(RequestError::KeySources)
        ));
        let two = KeySource {
            key: Some("x".into()),
            github: Some("y".into()),
            ..Default::default()
        };
        assert!(matches!(two.keys(), Err(RequestError::KeySources)));
    }
}
