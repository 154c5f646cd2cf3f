//! An invite as the host asks for it (`invite add`, the guest book): where
//! the keys come from, when it expires, how the guest gets in. Checked
//! here, turned into a stored [`Invite`] by [`Request::into_invite`].

use std::path::PathBuf;
use std::time::Duration;

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
    #[error(
        "--expires '{0}': expected a duration (2h, 90m), a local time (18:00, '18:00 tomorrow', '2026-12-01 18:00'), a date (2026-12-01: to the end of that day) or a time with an offset (2026-12-01T18:00+02:00, …Z)"
    )]
    Expiry(String),
    #[error("--expires '{0}' is not in the future (for a time tomorrow, say '18:00 tomorrow')")]
    Past(String),
    #[error("--expires '{0}' is more than 30 days away: invite for this week, and again later")]
    TooFar(String),
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
            // A key file is who gets in: never one a pair guest could
            // have rewritten, in the workspace of a jailed share.
            let shared = crate::workspaces::shared_of_caller().map_err(|e| bad(e.to_string()))?;
            if let Some(w) = crate::workspaces::holding(&shared, p) {
                return Err(bad(format!(
                    "inside {}, the workspace of a jailed share, where pair guests could have written their own keys into it: keep key files elsewhere",
                    w.display()
                )));
            }
            let text = read_key_file(p).map_err(bad)?;
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

pub use crate::keys::invites::MAX_EXPIRY;

/// A key file is public keys, a few hundred bytes each: more than this is
/// not one.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// The text of a key file the host named: a regular file, opened without
/// waiting (a FIFO someone put at the path hung `invite add`, and
/// `/dev/zero` filled its memory), or a pipe of the host's own shell
/// (`--key-file <(curl …)`, a `/dev/fd/N`), at most [`MAX_KEY_FILE`]
/// bytes.
fn read_key_file(p: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    let own_pipe =
        meta.file_type().is_fifo() && (p.starts_with("/dev/fd") || p.starts_with("/proc/self/fd"));
    if own_pipe {
        // Its writer is the host's own command: wait for it.
        nix::fcntl::fcntl(
            &f,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(|e| e.to_string())?;
    } else if !meta.is_file() {
        return Err("not a regular file: give a file of public keys".into());
    } else {
        // Whoever else can write it picks the key you invite (a shared
        // `/srv/team/keys/bob.pub`; a read-only hunt).
        crate::profile::only_caller_or_root_changes(
            &f,
            p,
            "a key file decides whose key is invited",
            true,
        )?;
    }
    let mut text = String::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "over {MAX_KEY_FILE} bytes: not a file of public keys"
        ));
    }
    Ok(text)
}

/// `--expires` as seconds since the epoch, in the host's time zone
/// (`TZ`, else /etc/localtime).
pub fn parse_expiry(s: &str, now: u64) -> Result<u64, RequestError> {
    parse_expiry_in(s, now, &jiff::tz::TimeZone::system())
}

/// `2h`, `90m`, `1h 30m`; a local time `18:00` (today), `18:00 tomorrow`,
/// `2026-12-01 18:00` or `2026-12-01T18:00`; a date `2026-12-01` (the end
/// of that day); or a time with an offset, `2026-12-01T18:00+02:00` or
/// `…Z`. It must be later than `now` and at most [`MAX_EXPIRY`] away.
pub fn parse_expiry_in(s: &str, now: u64, tz: &jiff::tz::TimeZone) -> Result<u64, RequestError> {
    use jiff::civil::{Date, DateTime, Time};
    let bad = || RequestError::Expiry(s.escape_debug().to_string());
    let t = s.trim();
    let local = |dt: DateTime| -> Result<i64, RequestError> {
        dt.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_second())
            .map_err(|_| bad())
    };
    let now_i = i64::try_from(now).map_err(|_| bad())?;
    let today = jiff::Timestamp::from_second(now_i)
        .map_err(|_| bad())?
        .to_zoned(tz.clone())
        .date();
    let at: i64 = if let Ok(d) = humantime::parse_duration(t) {
        now_i
            .checked_add(i64::try_from(d.as_secs()).map_err(|_| bad())?)
            .ok_or_else(bad)?
    } else if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        ts.as_second()
    } else if let (false, Ok(d)) = (t.contains(['T', ' ', ':']), t.parse::<Date>()) {
        local(d.at(23, 59, 59, 0))?
    } else if let Ok(dt) = t.parse::<DateTime>() {
        local(dt)?
    } else {
        let words: Vec<&str> = t.split_whitespace().collect();
        let (clock, day) = match words.as_slice() {
            [c] => (*c, today),
            [c, "today"] | ["today", c] => (*c, today),
            [c, "tomorrow"] | ["tomorrow", c] => (*c, today.tomorrow().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        let clock: Time = clock.parse().map_err(|_| bad())?;
        local(day.to_datetime(clock))?
    };
    let at = u64::try_from(at).map_err(|_| RequestError::Past(s.to_string()))?;
    if at <= now {
        return Err(RequestError::Past(s.to_string()));
    }
    if at - now > MAX_EXPIRY.as_secs() {
        return Err(RequestError::TooFar(s.to_string()));
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
    fn a_key_file_is_a_regular_file_of_bounded_size_read_without_waiting() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // With no writer, a plain open would wait for one for good.
        assert!(
            read_key_file(&fifo)
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            read_key_file(std::path::Path::new("/dev/zero"))
                .unwrap_err()
                .contains("not a regular file")
        );
        let big = d.path().join("big.pub");
        std::fs::write(&big, vec![b'a'; MAX_KEY_FILE as usize + 1]).unwrap();
        assert!(read_key_file(&big).unwrap_err().contains("over"));
        // The host's own pipe, as `<(cat keys.pub)` names it.
        let (rd, wr) = nix::unistd::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            nix::unistd::write(&wr, b"ssh-ed25519 AAAA piped\n").unwrap();
        });
        let path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&rd));
        let got = read_key_file(std::path::Path::new(&path));
        writer.join().unwrap();
        assert_eq!(got.unwrap(), "ssh-ed25519 AAAA piped\n");
        let ok = d.path().join("ok.pub");
        std::fs::write(&ok, "ssh-ed25519 AAAA x\n").unwrap();
        assert_eq!(read_key_file(&ok).unwrap(), "ssh-ed25519 AAAA x\n");
        // One others can write picks whose key is invited (a read-only
        // hunt: a team's shared keys directory, a file in /tmp).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_key_file(&ok).unwrap_err();
        assert!(e.contains("writable by others"), "{e}");
    }

    #[test]
    fn expiry_takes_local_times_offsets_and_dates_in_the_host_zone() {
        use jiff::tz::TimeZone;
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2030-01-10 12:00:00 UTC = 13:00 in Berlin (CET, +01:00).
        let now = 1_894_276_800;
        let at = |s: &str| parse_expiry_in(s, now, &berlin);
        assert_eq!(at("18:00").unwrap(), now + 5 * 3600);
        assert_eq!(at("18:00 tomorrow").unwrap(), now + 29 * 3600);
        assert_eq!(at("tomorrow 18:00").unwrap(), now + 29 * 3600);
        assert_eq!(at("2030-01-10 18:00").unwrap(), now + 5 * 3600);
        assert_eq!(at("2030-01-10T18:00").unwrap(), now + 5 * 3600);
        assert_eq!(at("2030-01-10T18:00+02:00").unwrap(), now + 4 * 3600);
        assert_eq!(at("2030-01-10T18:00Z").unwrap(), now + 6 * 3600);
        assert_eq!(at("2030-01-11").unwrap(), now + 35 * 3600 - 1);
        assert!(matches!(at("09:00"), Err(RequestError::Past(_))));
        assert!(matches!(at("100y"), Err(RequestError::TooFar(_))));
        assert!(matches!(at("2031-01-01"), Err(RequestError::TooFar(_))));
        assert!(matches!(at("25:00"), Err(RequestError::Expiry(_))));
        assert!(matches!(at("18:00 someday"), Err(RequestError::Expiry(_))));
    }

    #[test]
    fn expiry_accepts_durations_and_utc_times_in_the_future() {
        let now = 1_800_000_000;
        assert_eq!(parse_expiry("2h", now).unwrap(), now + 7200);
        assert!(parse_expiry("2027-01-20T18:00Z", now).is_ok());
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
