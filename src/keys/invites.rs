//! Invites of one host: `<runtime>/<host>/invites.toml` (0644: public keys
//! only; `pairjail authorized-keys`, run by sshd as an unprivileged user,
//! reads it). Written atomically under a lock.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::profile::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// sshd asks `pairjail authorized-keys` (pair-user mode, after setup).
    PairUser,
    /// A managed block in the host's own ~/.ssh/authorized_keys (no root).
    AuthorizedKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub name: String,
    pub session: String,
    pub mode: Mode,
    pub via: Via,
    /// `TYPE BASE64` lines.
    pub keys: Vec<String>,
    pub fingerprints: Vec<String>,
    /// Unix seconds.
    pub expires: u64,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// The broker pid of the session run this invite was made for; None for
    /// an invite made before its session started (it binds to the next run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<u32>,
    /// The guest runs its own tmux client (`join --transport direct`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
}

impl Invite {
    /// Valid right now: not expired, and its session running — the same run
    /// it was made for, so a crashed session's invites never carry over to
    /// a new session of the same name.
    pub fn usable(&self, runtime: &Path, host: &str) -> bool {
        self.expires > now()
            && live_broker(runtime, host, &self.session)
                .is_some_and(|pid| self.bound_to.is_none_or(|b| b == pid))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Book {
    #[serde(default, rename = "invite")]
    pub invites: Vec<Invite>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct Store {
    pub path: PathBuf,
}

impl Store {
    pub fn new(runtime: &Path, host: &str) -> Store {
        Store {
            path: runtime.join(host).join("invites.toml"),
        }
    }

    pub fn load(&self) -> Result<Book, String> {
        match fs::read_to_string(&self.path) {
            Ok(t) => {
                toml::from_str(&t).map_err(|e| format!("{}: {}", self.path.display(), e.message()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Applies `f` under the lock and writes the result atomically.
    pub fn update<R>(&self, f: impl FnOnce(&mut Book) -> Result<R, String>) -> Result<R, String> {
        crate::jail::pty::ignore_file_size_signal();
        let dir = self.path.parent().ok_or("invites path has no directory")?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(".invites.lock"))
            .map_err(|e| format!("cannot open the invites lock in {}: {e}", dir.display()))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("cannot lock invites: {e}"))?;
        let mut book = self.load()?;
        let r = f(&mut book)?;
        let text =
            toml::to_string_pretty(&book).map_err(|e| format!("cannot encode invites: {e}"))?;
        let tmp = dir.join(format!(".invites.toml.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        Ok(r)
    }
}

/// The pid of the broker of `<runtime>/<host>/<session>`, if it is running.
/// Read from its pid file and /proc, so it works for any uid, needs no
/// socket and cannot block.
pub fn live_broker(runtime: &Path, host: &str, session: &str) -> Option<u32> {
    let pid_file = runtime.join(host).join(session).join("broker.pid");
    let pid: u32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.contains(&b"__broker".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--session" && w[1] == session.as_bytes());
    ours.then_some(pid)
}

pub fn is_live(runtime: &Path, host: &str, session: &str) -> bool {
    live_broker(runtime, host, session).is_some()
}
