//! sshd's AuthorizedKeysCommand (`pairjail authorized-keys %u %k %t`): the
//! line for an offered key, if exactly one live invite of one host names
//! it. Every host directory under the runtime directory belongs to a local
//! user who may be an attacker, so everything read here is hostile:
//!
//! * the host is the owner of the directory (which must be named after
//!   that owner), never a field of a file;
//! * invite files are read with [`invites::read_untrusted`] (no links, no
//!   FIFOs, owner, mode, size) and every field is re-validated;
//! * every line comes from the one renderer and is checked to be a single
//!   line starting with `restrict,`;
//! * a whole-call deadline: no host can delay another host's guests.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use crate::broker::paths::check_user;
use crate::keys::invites::{self, Book, Invite, Via};
use crate::keys::key::GuestKey;
use crate::keys::line;
use crate::keys::registry;

/// The whole call gives up after this long (sshd waits for us).
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Host directories looked at, at most.
pub const MAX_HOSTS: usize = 4096;

/// One match: the host, the invite, its line, and whether its share runs
/// now (else it waits for its share's start).
#[derive(Debug, Clone)]
pub struct Found {
    pub host: String,
    pub invite: Invite,
    pub line: String,
    pub live: bool,
}

/// Where an invite stands: its share runs, it waits for its share's
/// start, or it is over (expired, or its run ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Live,
    Waiting,
    Over,
}

/// The lines one invites file yields for `offered` (pure: the caller says
/// where each invite stands). Invalid invites are skipped, never rendered.
pub fn lines_from(
    text: &[u8],
    host: &str,
    offered: &GuestKey,
    runtime: &Path,
    bin: &Path,
    standing: impl Fn(&Invite) -> Standing,
) -> Vec<Found> {
    let Ok(book) = Book::parse(text, Path::new("invites.toml")) else {
        return vec![];
    };
    let mut out = Vec::new();
    for inv in book.invites {
        // Checked before its fields name a file to look at.
        if inv.via != Via::PairUser
            || inv.validate().is_err()
            || !inv.keys.contains(&offered.openssh)
        {
            continue;
        }
        let now = standing(&inv);
        if now == Standing::Over {
            continue;
        }
        let f = registry::forced(&inv, host, runtime, bin);
        let Some(expires) = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(inv.expires))
        else {
            continue;
        };
        let Ok(line) = line::render(&f, offered, expires, &inv.from) else {
            continue;
        };
        out.push(Found {
            host: host.to_string(),
            invite: inv,
            line,
            live: now == Standing::Live,
        });
    }
    out
}

/// What to print for `offered`: the one matching line, or nothing. Two or
/// more matches (another host invited the same public key) print nothing:
/// sshd would pick the first, and a local user could steer a guest into a
/// session they did not mean to join. Warnings go to stderr (sshd's log).
pub fn answer(
    runtime: &Path,
    offered: &GuestKey,
    bin: &Path,
    may_host: impl Fn(&str) -> bool,
) -> (Option<String>, Vec<String>) {
    let started = Instant::now();
    let mut warnings = Vec::new();
    let users: HashMap<u32, String> = crate::users::all()
        .into_iter()
        .map(|u| (u.uid, u.name))
        .collect();
    // Host directories are looked up by the users' names, in one order:
    // the runtime directory is never listed. It is open to every local
    // user, whose junk there (millions of files) would otherwise be read
    // past the deadline, and then no guest would get a line.
    let mut names: Vec<&str> = users.values().map(String::as_str).collect();
    names.sort_unstable();
    // A filesystem mounted on a host's directory (FUSE, by a local user
    // who made the directory first) says whatever owner it likes, and can
    // leave every look at it hanging past the deadline: such a directory
    // is skipped before anything touches it.
    // The table holds real paths.
    let Ok(real_runtime) = runtime.canonicalize() else {
        return (None, warnings);
    };
    let mounts: Vec<PathBuf> = match crate::mountinfo::points() {
        Ok(m) => m
            .into_iter()
            .filter(|m| m.starts_with(&real_runtime))
            .collect(),
        Err(e) => {
            warnings.push(format!("{e}; refusing to guess"));
            return (None, warnings);
        }
    };
    // One the table does not show (another mount namespace's) is on
    // another device than the runtime directory.
    let Ok(runtime_dev) = std::fs::metadata(runtime).map(|m| m.dev()) else {
        return (None, warnings);
    };
    // The runtime directory's mount: a host directory on another one was
    // mounted on after the table was read (see below).
    let Some(runtime_mount) = nix::fcntl::open(
        runtime,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
    .map(std::fs::File::from)
    .and_then(|f| crate::mountinfo::mount_id(f.as_fd())) else {
        warnings.push("cannot tell the runtime directory's mount; refusing to guess".into());
        return (None, warnings);
    };
    let mut found = Vec::new();
    // Only host directories count towards the limit: the runtime directory
    // is open to every local user, who could otherwise fill it with files
    // until no guest gets a line.
    let mut hosts = 0;
    for name in names {
        if hosts >= MAX_HOSTS || started.elapsed() > DEADLINE {
            warnings.push(format!(
                "stopped after {hosts} host directories ({:?}); refusing to guess",
                started.elapsed()
            ));
            return (None, warnings);
        }
        // A user name no host directory can have (a slash, `..`).
        if check_user(name).is_err() {
            continue;
        }
        let path = runtime.join(name);
        if mounts
            .iter()
            .any(|m| m.starts_with(real_runtime.join(name)))
        {
            warnings.push(format!(
                "skipped {}: a filesystem is mounted on it, whose owners are its own say",
                path.display()
            ));
            continue;
        }
        // Opened once, never through a link, and read through that
        // descriptor from here on: the host owns its entry in the sticky
        // runtime directory and could swap in a link after the checks
        // below (to a filesystem that never answers, holding every login).
        // O_PATH: a host's directory is searchable by others, not readable.
        let Ok(held) = nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) else {
            continue;
        };
        let held = std::fs::File::from(held);
        // A mount that appeared on it after the table was read (a local
        // user's FUSE, mounted and unmounted in a loop): a stat of it
        // could wait for good. What the descriptor is on is learnt from
        // /proc without touching it.
        if crate::mountinfo::mount_id(held.as_fd()) != Some(runtime_mount) {
            warnings.push(format!(
                "skipped {}: a filesystem is mounted on it, whose owners are its own say",
                path.display()
            ));
            continue;
        }
        let Ok(meta) = held.metadata() else {
            continue;
        };
        // The descriptor's own path: what is looked up beneath it is
        // looked up in the directory checked, whatever its name leads to
        // by then.
        let dir = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
        // The directory's owner is the host, and it must be named after
        // that owner: nobody can share in another user's name.
        if !meta.is_dir()
            || meta.mode() & 0o022 != 0
            || meta.dev() != runtime_dev
            || users.get(&meta.uid()).map(String::as_str) != Some(name)
        {
            continue;
        }
        hosts += 1;
        // The machine's config names who may host (`setup --host`).
        if !may_host(name) {
            continue;
        }
        let uid = meta.uid();
        let text = match invites::read_untrusted(&dir.join("invites.toml"), uid) {
            Ok(t) => t,
            Err(invites::InvitesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => {
                // Named by the path an admin knows, not the descriptor's.
                let said = e.to_string();
                let said = said.replace(&dir.display().to_string(), &path.display().to_string());
                warnings.push(format!("skipped: {said}"));
                continue;
            }
        };
        found.extend(lines_from(&text, name, offered, runtime, bin, |inv| {
            if inv.usable(&dir, uid) {
                Standing::Live
            } else if inv.is_dead(&dir, uid) {
                Standing::Over
            } else {
                Standing::Waiting
            }
        }));
    }
    let (line, warning) = choose(found, &offered.fingerprint);
    warnings.extend(warning);
    (line, warnings)
}

/// The one line to print, if there is exactly one. A key invited to two
/// running shares gets none: sshd would take the first, and a local user
/// could steer a guest into a session it did not mean to join. Nor does a
/// key another host has invited to a share not started yet: the one
/// running would take that host's guest meanwhile.
fn choose(found: Vec<Found>, fingerprint: &str) -> (Option<String>, Option<String>) {
    let who = |f: &Found| format!("{}/{}/{}", f.host, f.invite.session, f.invite.name);
    let (mut live, waiting): (Vec<Found>, Vec<Found>) = found.into_iter().partition(|f| f.live);
    match live.len() {
        0 => (None, None),
        1 => {
            let host = live[0].host.clone();
            let others: Vec<String> = waiting.iter().filter(|f| f.host != host).map(who).collect();
            if others.is_empty() {
                return (live.pop().map(|f| f.line), None);
            }
            (
                None,
                Some(format!(
                    "key {fingerprint} is invited by {host} ({}) and, for a share not running now, by {}; letting it in nowhere",
                    who(&live[0]),
                    others.join(", ")
                )),
            )
        }
        n => (
            None,
            Some(format!(
                "key {fingerprint} is invited {n} times ({}); letting it in nowhere",
                live.iter().map(who).collect::<Vec<_>>().join(", ")
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host's own file names an expiry no clock can reach: the invite is
    /// skipped, and the call (which serves every host's guests) goes on.
    #[test]
    fn an_expiry_past_any_date_is_skipped_not_a_crash() {
        let key =
            crate::keys::key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let served = |expires: u64| {
            let text = format!(
                "[[invite]]\nname = \"bob\"\nsession = \"pair\"\nmode = \"mirror\"\nvia = \"pair-user\"\nkeys = [\"{}\"]\nfingerprints = [\"{}\"]\nexpires = {expires}\ncreated = 1\nrun = {{ pid = 1, start = 1 }}\n",
                key.openssh, key.fingerprint
            );
            let found = lines_from(
                text.as_bytes(),
                "alice",
                &key,
                Path::new("/run/pairjail"),
                Path::new("/usr/bin/pairjail"),
                |_| Standing::Live,
            );
            found.len()
        };
        let now = crate::clock::now();
        for expires in [u64::MAX, 253_402_300_800, now + 40 * 86400] {
            assert_eq!(served(expires), 0, "{expires}");
        }
        // The same invite a week ahead is served (the check can fail).
        assert_eq!(served(now + 7 * 86400), 1);
    }

    /// A local user who may host invites a guest's public key (GitHub
    /// publishes it) while the guest's real host has invited it to a share
    /// not started yet: the guest, logging in meanwhile, must not land in
    /// the local user's session.
    #[test]
    fn a_key_another_host_waits_to_use_is_let_in_nowhere() {
        let key =
            crate::keys::key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let text = format!(
            "[[invite]]\nname = \"bob\"\nsession = \"pair\"\nmode = \"pair\"\nvia = \"pair-user\"\nkeys = [\"{}\"]\nfingerprints = [\"{}\"]\nexpires = {}\ncreated = 1\n",
            key.openssh,
            key.fingerprint,
            crate::clock::now() + 3600
        );
        let found = |host: &str, standing: Standing| {
            lines_from(
                text.as_bytes(),
                host,
                &key,
                Path::new("/run/pairjail"),
                Path::new("/usr/bin/pairjail"),
                |_| standing,
            )
        };
        let mallory = found("mallory", Standing::Live);
        let alice_waits = found("alice", Standing::Waiting);
        assert_eq!(mallory.len(), 1);
        assert_eq!(alice_waits.len(), 1);
        assert!(found("alice", Standing::Over).is_empty());
        let both = [mallory.clone(), alice_waits].concat();
        let (line, warning) = choose(both, &key.fingerprint);
        assert_eq!(line, None, "the guest was let into mallory's session");
        assert!(warning.is_some_and(|w| w.contains("alice/pair/bob")));
        // Alone, or beside the same host's waiting invite, it is let in.
        assert!(choose(mallory.clone(), &key.fingerprint).0.is_some());
        let own = found("mallory", Standing::Waiting);
        assert!(
            choose([mallory, own].concat(), &key.fingerprint)
                .0
                .is_some()
        );
    }
}
