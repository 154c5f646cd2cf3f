//! Invites of one host: `<runtime>/<host>/invites.toml`, written atomically
//! under a lock. Mode 0600, or 0640 when the host directory carries the
//! setgid group `pairjail setup` gave the runtime directory (the group of
//! the user sshd runs `pairjail authorized-keys` as): readable only by the
//! host and that user.
//!
//! The file is the host's, but readers that are not the host (sshd's
//! `authorized-keys`) must treat it as hostile: [`read_untrusted`] opens it
//! without following links or blocking, checks owner, mode and size, and
//! [`Invite::validate`] re-checks every field with the validators
//! `invite add` uses.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::broker::liveness::{self, Run};
use crate::broker::paths::{check_name, check_session};
use crate::keys::key;
use crate::keys::line::check_cidr;
use crate::profile::Mode;

/// Largest invites file a reader accepts (hundreds of invites fit).
pub const MAX_FILE: u64 = 256 * 1024;
/// Most keys one invite may carry (a GitHub account rarely has ten).
pub const MAX_KEYS: usize = 32;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// sshd asks `pairjail authorized-keys` (pair-user mode, after setup).
    PairUser,
    /// A managed block in the host's own ~/.ssh/authorized_keys (no root).
    AuthorizedKeys,
}

/// The longest an invite may last: longer is a standing key, not an
/// invitation (and `100y` is a typo or a mistake).
pub const MAX_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The broker run this invite belongs to. None until its session
    /// starts: the broker binds the waiting invites of its session when it
    /// starts, and an unbound invite never lets anyone in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// The guest runs its own tmux client (`join --transport direct`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// The guest waits at the door until the host lets it in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InvitesError {
    #[error("{path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Invite {
    /// Every field checked as `invite add` checks it; the first problem.
    pub fn validate(&self) -> Result<(), String> {
        check_name("guest", &self.name)?;
        check_session(&self.session)?;
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS {
            return Err(format!(
                "invite {}: {} keys (1 to {MAX_KEYS} allowed)",
                self.name,
                self.keys.len()
            ));
        }
        for k in &self.keys {
            let parsed = key::parse(k).map_err(|e| format!("invite {}: {e}", self.name))?;
            if &parsed.openssh != k {
                return Err(format!(
                    "invite {}: a key must be stored as `TYPE BASE64`",
                    self.name
                ));
            }
        }
        for f in &self.from {
            check_cidr(f)?;
        }
        // `invite add` gives at most 30 days; a day more for clock changes.
        // (A year past 9999 cannot even be written as a date.)
        let latest = now().saturating_add(MAX_EXPIRY.as_secs() + 86400);
        if self.expires > latest {
            return Err(format!(
                "invite {}: expires more than 30 days from now",
                self.name
            ));
        }
        if self.direct && self.mode == Mode::Rogue {
            return Err(format!(
                "invite {}: rogue needs the relay transport",
                self.name
            ));
        }
        Ok(())
    }

    /// Valid right now: not expired, and bound to the run of its session
    /// that is alive now (pid, start time and owner all match).
    pub fn usable(&self, host_dir: &Path, host_uid: u32) -> bool {
        self.expires > now()
            && self.run.is_some_and(|r| {
                liveness::live_run(&host_dir.join(&self.session), host_uid) == Some(r)
            })
    }

    /// Its run is over (it will never become usable again).
    pub fn is_dead(&self, host_dir: &Path, host_uid: u32) -> bool {
        self.expires <= now()
            || self.run.is_some_and(|r| {
                liveness::live_run(&host_dir.join(&self.session), host_uid) != Some(r)
            })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Book {
    #[serde(default, rename = "invite")]
    pub invites: Vec<Invite>,
}

impl Book {
    pub fn parse(text: &[u8], path: &Path) -> Result<Book, InvitesError> {
        let text = std::str::from_utf8(text).map_err(|_| InvitesError::Syntax {
            path: path.into(),
            message: "not UTF-8".into(),
        })?;
        toml::from_str(text).map_err(|e| InvitesError::Syntax {
            path: path.into(),
            message: e.message().to_string(),
        })
    }
}

use crate::clock::now;

/// Reads an invites file someone else may control: no symlink, no FIFO or
/// device (opened non-blocking, then it must be a regular file), owned by
/// `owner`, not writable by group or others, at most [`MAX_FILE`] bytes.
pub fn read_untrusted(path: &Path, owner: u32) -> Result<Vec<u8>, InvitesError> {
    let refused = |message: String| InvitesError::Refused {
        path: path.into(),
        message,
    };
    // Not through a mount on it either: a local user's FUSE mount on
    // their own invites file held sshd's keys command for good (a
    // read-only attack hunt, by reading).
    let mut f = crate::files::open_in_dir(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
    )
    .map(std::fs::File::from)
    .map_err(|e| InvitesError::Read {
        path: path.into(),
        source: e.into(),
    })?;
    let meta = f.metadata().map_err(|source| InvitesError::Read {
        path: path.into(),
        source,
    })?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    if meta.uid() != owner {
        return Err(refused(format!(
            "owned by uid {}, not by the host (uid {owner})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused("writable by group or others".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(refused(format!("larger than {MAX_FILE} bytes")));
    }
    let mut buf = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| InvitesError::Read {
            path: path.into(),
            source,
        })?;
    if buf.len() as u64 > MAX_FILE {
        return Err(refused(format!("larger than {MAX_FILE} bytes")));
    }
    Ok(buf)
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

    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// The host's own file (the caller is the host): the same checks as
    /// for a stranger's, so a file someone swapped in is never trusted.
    pub fn load(&self) -> Result<Book, String> {
        let me = nix::unistd::Uid::effective().as_raw();
        match read_untrusted(&self.path, me) {
            Ok(bytes) => Book::parse(&bytes, &self.path).map_err(|e| e.to_string()),
            Err(InvitesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Book::default())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Applies `f` under the lock and writes the result atomically.
    pub fn update<R>(&self, f: impl FnOnce(&mut Book) -> Result<R, String>) -> Result<R, String> {
        let dir = self.dir();
        own_dir(dir)?;
        // Not blocking: a FIFO in the lock's place (the directory's
        // owner's doing) must not hang the command.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(dir.join(".invites.lock"))
            .map_err(|e| format!("cannot open the invites lock in {}: {e}", dir.display()))?;
        if !lock.metadata().is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "{}: not a regular file; remove it and run the command again",
                dir.join(".invites.lock").display()
            ));
        }
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("cannot lock invites: {e}"))?;
        let mut book = self.load()?;
        let r = f(&mut book)?;
        let text = encode(&book)?;
        crate::files::write_atomic(&self.path, text.as_bytes(), file_mode(dir)).map_err(|e| {
            format!(
                "cannot write {}: {e} (the file was left unchanged)",
                self.path.display()
            )
        })?;
        Ok(r)
    }
}

/// Invites are changed only in the caller's own directory: `kick`,
/// `invite revoke` and `invite clean` wrote a lock and a book into a
/// directory another local user had made in a shared runtime directory
/// (theirs to swap or read; a FIFO there hung each command).
fn own_dir(dir: &Path) -> Result<(), String> {
    // Before any look at it (see `mountinfo::refuse`).
    crate::mountinfo::refuse(dir).map_err(|e| e.to_string())?;
    let me = nix::unistd::Uid::effective().as_raw();
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() == me => Ok(()),
        Ok(m) => Err(format!(
            "{} is not a directory of yours (a {} of uid {}): another user made it; ask root to remove it, then run the command again",
            dir.display(),
            if m.file_type().is_symlink() {
                "link"
            } else if m.is_dir() {
                "directory"
            } else {
                "file"
            },
            m.uid()
        )),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// The invites file's text for `book`, if every reader would take it
/// (sshd's authorized-keys, the broker, the next invite refuse a larger
/// file: writing one would lock out all of the host's invites at once).
/// Checked before anything else is written for the change, too (the
/// managed block of authorized_keys).
pub fn encode(book: &Book) -> Result<String, String> {
    let text = toml::to_string_pretty(book).map_err(|e| format!("cannot encode invites: {e}"))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "the invites would take {} bytes, over the {MAX_FILE} that every reader takes; nothing was changed: revoke invites that are over (`pairjail invite clean`), or give fewer keys",
            text.len()
        ));
    }
    Ok(text)
}

/// 0640 where the directory is setgid (its group is the authorized-keys
/// user's, given by `pairjail setup`); 0600 everywhere else, where no one
/// but the host needs to read invites.
fn file_mode(dir: &Path) -> u32 {
    match fs::metadata(dir) {
        Ok(m) if m.mode() & 0o2000 != 0 => 0o640,
        _ => 0o600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn invites_are_changed_only_in_a_directory_of_the_callers_own() {
        let tmp = tempfile::tempdir().unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        // A directory someone else made, and a link to one of ours.
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        let ours = tmp.path().join("ours");
        fs::create_dir(&ours).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        let mut refused = vec![&link];
        // (Giving a directory away takes root.)
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::chown(&theirs, Some(me + 4242), None).unwrap();
            refused.push(&theirs);
        }
        for dir in refused {
            let store = Store {
                path: dir.join("invites.toml"),
            };
            let e = store.update(|_| Ok(())).unwrap_err();
            assert!(e.contains("not a directory of yours"), "{e}");
            assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "{}", dir.display());
        }
        // A FIFO in the lock's place: refused, not waited on.
        nix::unistd::mkfifo(&ours.join(".invites.lock"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = ours.join("invites.toml");
        std::thread::spawn(move || {
            let _ = tx.send(Store { path }.update(|_| Ok(())));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("still waiting on a FIFO after 30 s");
        // (No reader: the open itself fails, ENXIO; with one, the check.)
        let e = r.unwrap_err();
        assert!(
            e.contains("invites lock") || e.contains("not a regular file"),
            "{e}"
        );
        assert!(!ours.join("invites.toml").exists());
    }

    fn invite() -> Invite {
        let k = key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        Invite {
            name: "bob".into(),
            session: "pair".into(),
            mode: Mode::Mirror,
            via: Via::PairUser,
            keys: vec![k.openssh],
            fingerprints: vec![k.fingerprint],
            expires: now() + 60,
            created: now(),
            from: vec![],
            run: None,
            direct: false,
            approve: false,
        }
    }

    #[test]
    fn every_field_is_revalidated() {
        assert!(invite().validate().is_ok());
        let mut bad = Vec::new();
        for name in ["bob\nssh-ed25519 AAAA", "bob\r", "bo\0b", ""] {
            bad.push(Invite {
                name: name.into(),
                ..invite()
            });
            bad.push(Invite {
                session: name.into(),
                ..invite()
            });
        }
        let key = invite().keys[0].clone();
        bad.push(Invite {
            keys: vec![format!("{key} comment\nssh-ed25519 AAAA")],
            ..invite()
        });
        bad.push(Invite {
            keys: vec![format!("{key} a comment")],
            ..invite()
        });
        bad.push(Invite {
            keys: vec![],
            ..invite()
        });
        bad.push(Invite {
            from: vec!["10.0.0.1\" ssh-ed25519".into()],
            ..invite()
        });
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }

    #[test]
    fn invites_that_no_reader_would_take_are_never_written() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "alice");
        fs::create_dir(store.dir()).unwrap();
        store
            .update(|b| {
                b.invites.push(invite());
                Ok(())
            })
            .unwrap();
        let before = fs::read(&store.path).unwrap();
        // Keys as long as a forge would serve (each within its own limit).
        let long = format!("ssh-rsa {}", "A".repeat(key::MAX_KEY_LEN - 8));
        let e = store
            .update(|b| {
                for _ in 0..3 {
                    b.invites.push(Invite {
                        keys: vec![long.clone(); MAX_KEYS],
                        ..invite()
                    });
                }
                Ok(())
            })
            .unwrap_err();
        assert!(e.contains("nothing was changed"), "{e}");
        assert_eq!(fs::read(&store.path).unwrap(), before);
        assert_eq!(store.load().unwrap().invites.len(), 1);
    }

    #[test]
    fn untrusted_reads_refuse_fifos_links_big_and_writable_files() {
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_untrusted(&fifo, me).is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_untrusted(&link, me).is_err());
        let big = d.path().join("big");
        fs::write(&big, vec![b'#'; MAX_FILE as usize + 1]).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_untrusted(&big, me).is_err());
        let open = d.path().join("open");
        fs::write(&open, "").unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_untrusted(&open, me).is_err());
        fs::set_permissions(&open, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_untrusted(&open, me).is_ok());
        assert!(read_untrusted(&open, me + 1).is_err());
        assert!(read_untrusted(d.path(), me).is_err());
    }
}
