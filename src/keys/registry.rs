//! The invite domain of one host: add, revoke, clean, bind to a run, end
//! with the session, and the managed block that mirrors the store in
//! no-root mode. Commands parse and print; the decisions are here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::broker::liveness::{self, Run};
use crate::broker::paths::{self, check_host_dir};
use crate::keys::block;
use crate::keys::invites::{Book, Invite, Store, Via};
use crate::keys::key::{self, GuestKey};
use crate::keys::line::{self, Forced};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request itself is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

use RegistryError::{Failed, Invalid};

/// The machine's config (`pairjail setup` wrote it): pair-user mode is
/// on exactly when there is one.
pub fn system_config() -> Result<Option<crate::config::SystemConfig>, RegistryError> {
    crate::config::load().map_err(|e| Failed(e.to_string()))
}

fn me() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

pub fn authorized_keys_path() -> Result<PathBuf, RegistryError> {
    let home = crate::users::by_uid(me())
        .map(|u| u.home)
        .ok_or_else(|| Failed("cannot find your home directory".into()))?;
    Ok(home.join(".ssh/authorized_keys"))
}

pub fn binary() -> Result<PathBuf, RegistryError> {
    crate::exe::own().map_err(|e| Failed(e.to_string()))
}

/// Is a run of this host's session alive now?
pub fn is_live(runtime: &Path, host: &str, session: &str) -> bool {
    liveness::live_run(&runtime.join(host).join(session), me()).is_some()
}

pub fn forced(inv: &Invite, host: &str, runtime: &Path, bin: &Path) -> Forced {
    Forced {
        binary: bin.to_path_buf(),
        host: host.to_string(),
        session: inv.session.clone(),
        guest: inv.name.clone(),
        mode: inv.mode,
        runtime_dir: runtime.to_path_buf(),
        direct: inv.direct,
        run: inv.run,
    }
}

/// The lines of one invite, each checked by the one renderer.
pub fn lines_of(inv: &Invite, f: &Forced) -> Result<Vec<String>, String> {
    inv.validate()?;
    inv.keys
        .iter()
        .map(|k| {
            let gk = key::parse(k)?;
            line::render(
                f,
                &gk,
                UNIX_EPOCH + Duration::from_secs(inv.expires),
                &inv.from,
            )
        })
        .collect()
}

/// Rewrites this runtime directory's lines of the managed block from its
/// store: the lines of every authorized-keys invite. Lines another runtime
/// directory's store wrote stay (that store rewrites them); anything else
/// in the block goes.
fn sync_block(book: &Book, host: &str, runtime: &Path) -> Result<(), String> {
    // The store is written after this: one it could not write (too large)
    // must not leave its lines in authorized_keys first.
    crate::keys::invites::encode(book)?;
    let bin = binary().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for inv in book.invites.iter().filter(|i| i.via == Via::AuthorizedKeys) {
        lines.extend(lines_of(inv, &forced(inv, host, runtime, &bin))?);
    }
    let path = authorized_keys_path().map_err(|e| e.to_string())?;
    // Nothing to write and no block to remove: leave the file alone.
    if lines.is_empty() && block::read_lines(&path).map_or(true, |l| l.is_empty()) {
        return Ok(());
    }
    let now = SystemTime::now();
    // This store's lines first: sshd takes the first line with a key, so a
    // stale line of a store that is gone (which no revoke can reach, and
    // which `join` refuses) does not shadow an invite made here since. (A
    // store only this process cannot see writes its own first again when
    // it next rewrites; both lines are the host's invites.)
    block::update(&path, |old| {
        lines.extend(others_lines(old, runtime, now));
        lines
    })
}

/// A live block line of another runtime directory's store for key `k`:
/// that directory and the line's `pairjail:SESSION:GUEST` comment.
fn invited_elsewhere(
    path: &Path,
    k: &GuestKey,
    runtime: &Path,
    host: &str,
) -> Result<Option<(PathBuf, String)>, RegistryError> {
    let wanted = ssh_key::PublicKey::from_openssh(&k.openssh)
        .map_err(|e| Failed(format!("cannot decode key: {e}")))?;
    // Unreadable to its owner: the block update that follows refuses the
    // file with the reason (foreign owner, symlink).
    let Ok(lines) = block::read_lines(path) else {
        return Ok(None);
    };
    Ok(others_lines(lines, runtime, SystemTime::now())
        .into_iter()
        .find_map(|l| {
            let found = ssh_key::PublicKey::from_openssh(line::key_of(&l)?).ok()?;
            if found.key_data() != wanted.key_data() {
                return None;
            }
            // A store that is gone (a /tmp cleared at reboot, maybe made
            // again by someone else) cannot revoke its line, and `join`
            // refuses it; this store's line goes first. Lines name settled
            // paths: one that now leads through a link is not that store.
            let dir = line::runtime_of(&l)?;
            let store = dir.join(line::host_of(&l).unwrap_or_else(|| host.to_string()));
            let settled = std::fs::canonicalize(&store).is_ok_and(|c| c == store);
            (settled
                && std::fs::symlink_metadata(&store).is_ok_and(|m| m.is_dir() && m.uid() == me()))
            .then(|| (dir, found.comment().to_string()))
        }))
}

/// The block lines another runtime directory's store wrote, and that are
/// still valid: this store's own are written again from its invites, and
/// lines typed by hand or past their expiry go. (A line of a store that
/// looks gone stays until it expires: this process may not see a store
/// another login's mount namespace does, a private /tmp say.)
fn others_lines(old: Vec<String>, runtime: &Path, now: SystemTime) -> Vec<String> {
    old.into_iter()
        .filter(|l| {
            line::is_invite_line(l)
                && !line::runtime_of(l).is_some_and(|d| paths::same_dir(&d, runtime))
                && !line::has_expired(l, now)
        })
        .collect()
}

/// `<runtime>/<host>`: 0711, the host's. Inside a setgid runtime directory
/// (pair-user mode) it inherits the group and the setgid bit from it.
pub fn prepare_host_dir(runtime: &Path, host: &str) -> Result<PathBuf, RegistryError> {
    let dir = runtime.join(host);
    let uid = nix::unistd::geteuid().as_raw();
    paths::check_guest_runtime(runtime, uid).map_err(Failed)?;
    // Before any look at it (see `mountinfo::refuse`).
    crate::mountinfo::refuse(&dir).map_err(|e| Failed(e.to_string()))?;
    if !dir.exists() {
        crate::files::dir_711(&dir)
            .map_err(|e| Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    check_host_dir(runtime, host).map_err(Failed)?;
    Ok(dir)
}

/// Lines of the host's own authorized_keys, outside pairjail's block,
/// that authorize `k`: sshd uses the first line that matches, so such a
/// line would let the guest in without the jail. 1-based line numbers.
pub fn unrestricted_lines(path: &Path, k: &GuestKey) -> Result<Vec<usize>, RegistryError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        // Unreadable to its owner: the block update that follows refuses
        // the file with the reason (foreign owner, symlink).
        Err(_) => return Ok(vec![]),
    };
    let wanted = ssh_key::PublicKey::from_openssh(&k.openssh)
        .map_err(|e| Failed(format!("cannot decode key: {e}")))?;
    let mut found = Vec::new();
    // The block as `block::split` finds it: the first line that is exactly
    // its start, to the first exact end. A second copy, an indented marker
    // or a stray start is one of the host's own lines, which sshd reads.
    #[derive(PartialEq)]
    enum At {
        Before,
        In,
        After,
    }
    let mut at = At::Before;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let exact = line.strip_suffix('\r').unwrap_or(&line);
        match at {
            At::Before if exact == block::BEGIN || exact == block::BEGIN_NL => {
                at = At::In;
                continue;
            }
            At::In if exact == block::END => {
                at = At::After;
                continue;
            }
            At::In => continue,
            _ => {}
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if names_key(t, &wanted) {
            found.push(i + 1);
        }
    }
    Ok(found)
}

/// Does an authorized_keys line let `wanted` in? Read as sshd reads it: the
/// key first, or after the options (quoted values may hold spaces), its
/// type and base64 apart by any run of spaces or tabs.
fn names_key(line: &str, wanted: &ssh_key::PublicKey) -> bool {
    [Some(line), line::key_of(line)]
        .into_iter()
        .flatten()
        .any(|k| {
            // sshd ends the type and the base64 at a space or tab only,
            // and its decoder skips any other white space in the base64
            // (a vertical tab in it is still the key).
            let mut words = k.split([' ', '\t']).filter(|w| !w.is_empty());
            match (words.next(), words.next()) {
                (Some(kind), Some(blob)) => {
                    let blob: String = blob
                        .chars()
                        .filter(|c| !c.is_ascii_whitespace() && *c != '\x0b')
                        .collect();
                    // sshd also takes an RSA key under its signature names.
                    let kind = match kind {
                        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
                        k => k,
                    };
                    ssh_key::PublicKey::from_openssh(&format!("{kind} {blob}"))
                        .is_ok_and(|k| k.key_data() == wanted.key_data())
                }
                _ => false,
            }
        })
}

/// Lines of the host's authorized_keys (outside the block) that let one
/// of the host's invited keys in without the jail: `line N (guest NAME)`.
pub fn invited_keys_without_jail(runtime: &Path, host: &str, path: &Path) -> Vec<String> {
    let Ok(book) = Store::new(runtime, host).load() else {
        return vec![];
    };
    let mut out = Vec::new();
    for inv in &book.invites {
        for k in inv.keys.iter().filter_map(|k| key::parse(k).ok()) {
            for n in unrestricted_lines(path, &k).unwrap_or_default() {
                out.push(format!("line {n} (guest {})", inv.name));
            }
        }
    }
    out
}

/// Adds (or replaces, same name and session) an invite. Refused: a key
/// that another line of the host's authorized_keys already lets in, and a
/// key already invited under another name or to another session (sshd
/// would always pick the first).
/// Adds an invite. One of the same name for the same session is replaced
/// only when `replace` says so (`--replace`; the guest book at `start`).
pub fn add(
    runtime: &Path,
    host: &str,
    mut invite: Invite,
    replace: bool,
) -> Result<(), RegistryError> {
    invite.validate().map_err(Invalid)?;
    let dir = prepare_host_dir(runtime, host)?;
    if invite.via == Via::AuthorizedKeys {
        let path = authorized_keys_path()?;
        for k in &invite.keys {
            let gk = key::parse(k).map_err(Invalid)?;
            // sshd's default reads authorized_keys2 too, where a line is
            // used when the block's is not (its `from=` does not match).
            for file in [path.clone(), path.with_file_name("authorized_keys2")] {
                if let Some(n) = unrestricted_lines(&file, &gk)?.first() {
                    return Err(Invalid(format!(
                        "{} line {n} already lets key {} in without a forced command or jail; sshd would use that line: remove it first",
                        file.display(),
                        gk.fingerprint
                    )));
                }
            }
            if let Some((dir, comment)) = invited_elsewhere(&path, &gk, runtime, host)? {
                let dir = paths::flag(Some(&dir));
                let revoke = match comment.split(':').collect::<Vec<_>>()[..] {
                    ["pairjail", session, guest] => {
                        format!("pairjail invite revoke {guest} --session {session}{dir}")
                    }
                    _ => format!("pairjail invite revoke GUEST{dir}"),
                };
                return Err(Invalid(format!(
                    "key {} is already invited from another runtime directory ({comment}), and sshd would use that line: revoke it first ({revoke})",
                    gk.fingerprint,
                )));
            }
        }
    }
    let store = Store::new(runtime, host);
    let uid = me();
    // The outer error is a failed update; the inner one a refused request.
    store
        .update(|b| {
            for other in &b.invites {
                let same = other.name == invite.name && other.session == invite.session;
                if same && !replace && !other.is_dead(&dir, uid) {
                    return Ok(Err(Invalid(format!(
                        "{} already has an invite for session {} (until {}): add --replace to replace it, or revoke it first",
                        other.name,
                        other.session,
                        crate::clock::rfc3339(other.expires)
                    ))));
                }
                if same || other.is_dead(&dir, uid) {
                    continue;
                }
                if let Some(k) = invite.keys.iter().find(|k| other.keys.contains(k)) {
                    let fp = key::parse(k).map(|g| g.fingerprint).unwrap_or_default();
                    return Ok(Err(Invalid(format!(
                        "key {fp} is already invited as {} to session {}: revoke it first (pairjail invite revoke {} --session {})",
                        other.name, other.session, other.name, other.session
                    ))));
                }
            }
            // Under the store's lock, so a broker starting now either sees
            // this invite when it binds, or is seen here.
            invite.run = liveness::live_run(&dir.join(&invite.session), uid);
            b.invites
                .retain(|i| !(i.name == invite.name && i.session == invite.session));
            b.invites.push(invite.clone());
            sync_block(b, host, runtime).map(Ok)
        })
        .map_err(Failed)?
}

pub fn revoke(
    runtime: &Path,
    host: &str,
    name: &str,
    session: Option<&str>,
) -> Result<Vec<Invite>, RegistryError> {
    let store = Store::new(runtime, host);
    store
        .update(|b| {
            let (gone, kept) = std::mem::take(&mut b.invites)
                .into_iter()
                .partition(|i| i.name == name && session.is_none_or(|s| s == i.session));
            b.invites = kept;
            sync_block(b, host, runtime)?;
            Ok(gone)
        })
        .map_err(Failed)
}

/// Drops invites that expired or whose run is over (a crash leaves them
/// behind). Invites waiting for their session to start stay unless
/// `waiting` is false (`invite clean`: everything not usable now goes).
/// Returns the invites removed.
pub fn clean(runtime: &Path, host: &str, waiting: bool) -> Result<Vec<Invite>, RegistryError> {
    let store = Store::new(runtime, host);
    if !store.path.exists() && !authorized_keys_path()?.exists() {
        return Ok(vec![]);
    }
    let dir = runtime.join(host);
    let uid = me();
    store
        .update(|b| {
            let (kept, gone) = std::mem::take(&mut b.invites).into_iter().partition(|i| {
                if waiting {
                    !i.is_dead(&dir, uid)
                } else {
                    i.usable(&dir, uid)
                }
            });
            b.invites = kept;
            sync_block(b, host, runtime)?;
            Ok(gone)
        })
        .map_err(Failed)
}

/// The broker, once its pid file is written: the invites waiting for this
/// session belong to this run from now on (and to no later one).
pub fn bind_run(runtime: &Path, host: &str, session: &str, run: Run) -> Result<(), RegistryError> {
    let store = Store::new(runtime, host);
    store
        .update(|b| {
            for i in b
                .invites
                .iter_mut()
                .filter(|i| i.session == session && i.run.is_none())
            {
                i.run = Some(run);
            }
            sync_block(b, host, runtime)
        })
        .map_err(Failed)
}

/// What the broker does when its run ends. First its pid file goes (only
/// if it still names this run), so an `invite add` from then on sees no
/// live run and waits for the next start; had the file outlived this
/// step, an add in between would be bound to a run about to die, and the
/// invite lost. Then, under the store's lock, the invites of this run go,
/// and any of the session's whose run is over; invites still waiting for
/// a start stay. Returns the invites removed.
pub fn end_run(
    runtime: &Path,
    host: &str,
    session: &str,
    run: Run,
) -> Result<Vec<Invite>, RegistryError> {
    let dir = runtime.join(host);
    let pid_file = dir.join(session).join("broker.pid");
    // The invites go whatever happens to the file (it is ours, in our
    // directory: failing to remove it is not expected, but is reported).
    let mut unremoved = None;
    if std::fs::read_to_string(&pid_file).is_ok_and(|t| t == liveness::pid_file_text(&run)) {
        match std::fs::remove_file(&pid_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                unremoved = Some(format!("cannot remove {}: {e}", pid_file.display()));
            }
            _ => {}
        }
    }
    let store = Store::new(runtime, host);
    let gone = if store.path.exists() {
        let uid = me();
        store
            .update(|b| {
                let (gone, kept) = std::mem::take(&mut b.invites).into_iter().partition(|i| {
                    i.session == session && (i.run == Some(run) || i.is_dead(&dir, uid))
                });
                b.invites = kept;
                sync_block(b, host, runtime)?;
                Ok(gone)
            })
            .map_err(Failed)?
    } else {
        vec![]
    };
    match unremoved {
        Some(e) => Err(Failed(e)),
        None => Ok(gone),
    }
}

/// The live invite of this run for `guest`, read from the host's own
/// store: what the broker admits a connection against.
pub fn admission(
    runtime: &Path,
    host: &str,
    session: &str,
    guest: &str,
    run: Run,
) -> Result<Invite, String> {
    let book = Store::new(runtime, host).load()?;
    let now = crate::clock::now();
    book.invites
        .into_iter()
        .find(|i| {
            i.name == guest
                && i.session == session
                && i.run == Some(run)
                && i.expires > now
                && i.validate().is_ok()
        })
        .ok_or_else(|| format!("{guest} has no live invite to this session"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sshd takes a key after a tab, after two spaces, or after options
    /// whose quoted values hold spaces: each is a way in without the jail.
    #[test]
    fn every_line_sshd_would_use_for_the_key_is_found() {
        let k = key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let (kind, blob) = k.openssh.split_once(' ').unwrap();
        let other = key::parse(include_str!("../../tests/data/keys/rsa3072.pub")).unwrap();
        let lines = [
            format!("# {kind} {blob}"),
            format!("{kind}\t{blob} bob@laptop"),
            format!("{kind}  {blob}"),
            format!("rsa-sha2-512 {}", other.openssh.split_once(' ').unwrap().1),
            format!("environment=\"A=b c\",no-pty {kind} {blob} bob"),
            other.openssh.clone(),
            format!("{kind} {blob}"),
        ];
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("authorized_keys");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(unrestricted_lines(&path, &k).unwrap(), [2, 3, 5, 7]);
        assert_eq!(unrestricted_lines(&path, &other).unwrap(), [4, 6]);
        // White space sshd's base64 decoder skips (it splits words only
        // at spaces and tabs), and block markers that are not the block
        // sshd's lines still count in: an indented one, a stray start, a
        // second copy after the block.
        let (head, tail) = blob.split_at(20);
        let lines = [
            format!("{kind} {head}\x0b{tail} bob"),
            format!("{kind} {head}\x0c{tail}"),
            format!("  {}", block::BEGIN),
            format!("{kind} {blob} indented-marker"),
            block::BEGIN.to_string(),
            "restrict,command=\"x\" ssh-ed25519 AAAA-in-the-block".into(),
            block::END.to_string(),
            block::BEGIN.to_string(),
            format!("{kind} {blob} second-copy"),
            block::END.to_string(),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(unrestricted_lines(&path, &k).unwrap(), [1, 2, 4, 9]);
    }

    #[test]
    fn a_rewrite_keeps_only_other_stores_lines_still_valid() {
        let key = key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let hour = Duration::from_secs(3600);
        let d = tempfile::tempdir().unwrap();
        let (mine_dir, other_dir, gone_dir) = (
            d.path().join("mine"),
            d.path().join("other"),
            d.path().join("gone"),
        );
        // The sample invite's host is "h": a store is `<runtime>/h`.
        std::fs::create_dir_all(mine_dir.join("h")).unwrap();
        std::fs::create_dir_all(other_dir.join("h")).unwrap();
        let line = |runtime: &Path, expires| {
            let rt = runtime.to_str().unwrap();
            line::render(&line::tests::forced_in(rt), &key, expires, &[]).unwrap()
        };
        let mine = line(&mine_dir, now + hour);
        let mine_spelled_otherwise = line(&d.path().join("mine/../mine/"), now + hour);
        let other = line(&other_dir, now + hour);
        let other_expired = line(&other_dir, now - hour);
        let gone = line(&gone_dir, now + hour);
        let typed = "ssh-ed25519 AAAA typed-by-hand".to_string();
        // A store that looks gone keeps its line until it expires: another
        // mount namespace may see it.
        let kept = others_lines(
            vec![
                mine,
                mine_spelled_otherwise,
                other.clone(),
                other_expired,
                gone.clone(),
                typed,
            ],
            &mine_dir,
            now,
        );
        assert_eq!(kept, vec![other, gone]);
    }
}
