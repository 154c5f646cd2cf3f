//! `pairjail invite add/list/revoke/clean` and `pairjail authorized-keys`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use super::{Failure, Outcome};
use crate::broker::paths::{self, check_host_dir, check_name};
use crate::keys::block;
use crate::keys::fetch::{self, Forge};
use crate::keys::invites::{self, Invite, Store, Via};
use crate::keys::key::{self, GuestKey};
use crate::keys::line::{self, Forced};
use crate::profile::Mode;

/// Default lifetime of an invite (a session also ends it).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(12 * 3600);
/// Where `pairjail setup` puts sshd's configuration; its presence means
/// pair-user mode.
pub const SSHD_CONF: &str = "/etc/ssh/sshd_config.d/pairjail.conf";

#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub key: Option<String>,
    pub key_file: Option<PathBuf>,
    pub github: Option<String>,
    pub gitlab: Option<String>,
}

pub struct AddArgs {
    pub name: String,
    pub source: KeySource,
    pub mode: Mode,
    pub session: String,
    pub expires: Option<String>,
    pub from: Vec<String>,
    pub via: Option<Via>,
    pub runtime_dir: Option<PathBuf>,
    pub direct: bool,
}

pub fn keys_from(src: &KeySource) -> Result<Vec<GuestKey>, Failure> {
    let given = [
        src.key.is_some(),
        src.key_file.is_some(),
        src.github.is_some(),
        src.gitlab.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(Failure::invalid(
            "give exactly one of --key, --key-file, --github, --gitlab",
        ));
    }
    if let Some(k) = &src.key {
        return key::parse(k)
            .map(|k| vec![k])
            .map_err(|e| Failure::invalid(format!("--key: {e}")));
    }
    if let Some(p) = &src.key_file {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Failure::invalid(format!("--key-file {}: {e}", p.display())))?;
        let keys = key::parse_many(&text)
            .map_err(|e| Failure::invalid(format!("--key-file {}: {e}", p.display())))?;
        if keys.is_empty() {
            return Err(Failure::invalid(format!(
                "--key-file {}: no key in it",
                p.display()
            )));
        }
        return Ok(keys);
    }
    let (forge, user) = match (&src.github, &src.gitlab) {
        (Some(u), _) => (Forge::GitHub, u),
        (_, Some(u)) => (Forge::GitLab, u),
        _ => unreachable!("exactly one source was checked above"),
    };
    fetch::keys_of(forge, user).map_err(Failure::failed)
}

/// `2h`, `90m`, `1h 30m`, or a UTC time `2026-12-01T18:00[:00]`.
pub fn parse_expiry(s: &str) -> Result<u64, Failure> {
    let bad = || {
        Failure::invalid(format!(
            "--expires '{}': expected a duration (2h, 90m) or a UTC time (2026-12-01T18:00)",
            s.escape_debug()
        ))
    };
    let now = invites::now();
    let at = if let Ok(d) = humantime::parse_duration(s) {
        now + d.as_secs()
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
        return Err(Failure::invalid(format!(
            "--expires '{s}' is not in the future"
        )));
    }
    Ok(at)
}

fn authorized_keys_path() -> Result<PathBuf, Failure> {
    let home = crate::users::by_uid(nix::unistd::Uid::effective().as_raw())
        .map(|u| u.home)
        .ok_or_else(|| Failure::failed("cannot find your home directory"))?;
    Ok(home.join(".ssh/authorized_keys"))
}

fn binary() -> Result<PathBuf, Failure> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Failure::failed(format!("cannot find my own binary: {e}")))
}

fn forced(inv: &Invite, host: &str, runtime: &Path) -> Result<Forced, Failure> {
    Ok(Forced {
        binary: binary()?,
        host: host.to_string(),
        session: inv.session.clone(),
        guest: inv.name.clone(),
        mode: inv.mode,
        runtime_dir: runtime.to_path_buf(),
        direct: inv.direct,
    })
}

/// Rewrites the managed block from the store: the lines of every
/// authorized-keys invite, nothing else.
fn sync_block(book: &invites::Book, host: &str, runtime: &Path) -> Result<(), Failure> {
    let mut lines = Vec::new();
    for inv in book.invites.iter().filter(|i| i.via == Via::AuthorizedKeys) {
        let f = forced(inv, host, runtime)?;
        for k in &inv.keys {
            let gk = key::parse(k).map_err(Failure::failed)?;
            lines.push(line::render(
                &f,
                &gk,
                UNIX_EPOCH + Duration::from_secs(inv.expires),
                &inv.from,
            ));
        }
    }
    let path = authorized_keys_path()?;
    // Nothing to write and no block to remove: leave the file alone.
    if lines.is_empty() && block::read_lines(&path).map_or(true, |l| l.is_empty()) {
        return Ok(());
    }
    block::update(&path, |_| lines).map_err(Failure::failed)
}

pub fn pair_user_mode() -> bool {
    Path::new(SSHD_CONF).exists()
}

fn prepare_host_dir(runtime: &Path, host: &str) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = runtime.join(host);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
    }
    check_host_dir(runtime, host).map_err(Failure::failed)
}

pub fn add(a: AddArgs) -> Outcome {
    check_name("guest", &a.name).map_err(Failure::invalid)?;
    check_name("session", &a.session).map_err(Failure::invalid)?;
    for f in &a.from {
        line::check_cidr(f).map_err(Failure::invalid)?;
    }
    let expires = match &a.expires {
        Some(e) => parse_expiry(e)?,
        None => invites::now() + DEFAULT_EXPIRY.as_secs(),
    };
    let keys = keys_from(&a.source)?;
    let via = a.via.unwrap_or(if pair_user_mode() {
        Via::PairUser
    } else {
        Via::AuthorizedKeys
    });
    if a.direct && via == Via::AuthorizedKeys {
        return Err(Failure::invalid(
            "--transport direct needs pair-user mode: in your own account the guest would run as you, and tmux trusts its owner",
        ));
    }
    let runtime = paths::runtime_dir(a.runtime_dir.as_deref()).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    prepare_host_dir(&runtime, &host)?;
    let invite = Invite {
        name: a.name.clone(),
        session: a.session.clone(),
        mode: a.mode,
        via,
        keys: keys.iter().map(|k| k.openssh.clone()).collect(),
        fingerprints: keys.iter().map(|k| k.fingerprint.clone()).collect(),
        expires,
        created: invites::now(),
        from: a.from.clone(),
        bound_to: invites::live_broker(&runtime, &host, &a.session),
        direct: a.direct,
    };
    let store = Store::new(&runtime, &host);
    store
        .update(|b| {
            b.invites
                .retain(|i| !(i.name == a.name && i.session == a.session));
            b.invites.push(invite.clone());
            // Under the store's lock, so concurrent adds cannot lose lines.
            sync_block(b, &host, &runtime).map_err(|f| f.message)
        })
        .map_err(Failure::failed)?;
    for k in &keys {
        println!(
            "invited {} ({}, session {}) {} {} until {}",
            a.name,
            a.mode,
            a.session,
            k.algorithm,
            k.fingerprint,
            when(expires)
        );
    }
    match via {
        Via::PairUser => println!(
            "they join with: ssh -t <the pair user>@<this host> (the user `pairjail setup` created)"
        ),
        Via::AuthorizedKeys => println!(
            "they join with: ssh -t {host}@<this host> (a managed block in ~/.ssh/authorized_keys)"
        ),
    }
    if !invites::is_live(&runtime, &host, &a.session) {
        println!(
            "note: session {} is not running; the invite works once `pairjail start --session {0}` runs",
            a.session
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn when(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

pub fn list(runtime_dir: Option<&Path>, json: bool) -> Outcome {
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let book = Store::new(&runtime, &host)
        .load()
        .map_err(Failure::failed)?;
    let rows: Vec<_> = book
        .invites
        .iter()
        .flat_map(|i| {
            let live = invites::is_live(&runtime, &host, &i.session);
            i.keys.iter().zip(&i.fingerprints).map(move |(k, fp)| {
                json!({
                    "name": i.name, "mode": i.mode, "session": i.session, "via": i.via,
                    "key_type": k.split_whitespace().next().unwrap_or(""), "fingerprint": fp,
                    "expires": when(i.expires), "session_live": live, "from": i.from,
                })
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(Failure::failed)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no invites");
    }
    for r in rows {
        println!(
            "{:<12} {:<7} session {:<10}{} {} {} expires {}",
            r["name"].as_str().unwrap_or(""),
            r["mode"].as_str().unwrap_or(""),
            r["session"].as_str().unwrap_or(""),
            if r["session_live"] == true {
                " (live)"
            } else {
                ""
            },
            r["key_type"].as_str().unwrap_or(""),
            r["fingerprint"].as_str().unwrap_or(""),
            r["expires"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(name: &str, session: Option<&str>, runtime_dir: Option<&Path>) -> Outcome {
    check_name("guest", name).map_err(Failure::invalid)?;
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let store = Store::new(&runtime, &host);
    let removed = store
        .update(|b| {
            let before = b.invites.len();
            b.invites
                .retain(|i| !(i.name == name && session.is_none_or(|s| s == i.session)));
            sync_block(b, &host, &runtime).map_err(|f| f.message)?;
            Ok(before - b.invites.len())
        })
        .map_err(Failure::failed)?;
    if removed == 0 {
        return Err(Failure::invalid(format!("no invite named {name}")));
    }
    println!("revoked {name}");
    Ok(ExitCode::SUCCESS)
}

/// Drops invites that expired or whose session is not running (`keep` is a
/// session about to start), and rewrites the managed block to match.
pub fn clean_for(runtime: &Path, host: &str, keep: Option<&str>) -> Result<usize, Failure> {
    let store = Store::new(runtime, host);
    if !store.path.exists() && !authorized_keys_path()?.exists() {
        return Ok(0);
    }
    let now = invites::now();
    store
        .update(|b| {
            let before = b.invites.len();
            b.invites.retain(|i| {
                i.expires > now
                    && (i.usable(runtime, host)
                        || (keep == Some(i.session.as_str()) && i.bound_to.is_none()))
            });
            sync_block(b, host, runtime).map_err(|f| f.message)?;
            Ok(before - b.invites.len())
        })
        .map_err(Failure::failed)
}

/// What the broker does when its session ends: the session's invites go.
pub fn end_session(runtime: &Path, host: &str, session: &str) -> Result<(), Failure> {
    let store = Store::new(runtime, host);
    if !store.path.exists() {
        return Ok(());
    }
    store
        .update(|b| {
            b.invites.retain(|i| i.session != session);
            sync_block(b, host, runtime).map_err(|f| f.message)
        })
        .map_err(Failure::failed)
}

pub fn clean(runtime_dir: Option<&Path>) -> Outcome {
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let n = clean_for(&runtime, &host, None)?;
    println!("removed {n} invite(s) of sessions that are not running or expired");
    Ok(ExitCode::SUCCESS)
}

/// sshd's AuthorizedKeysCommand (`%u %k %t`): prints a line for the key
/// only if it is invited to a session that is live right now. Reads a few
/// small files and /proc; never the network, never a lock.
pub fn authorized_keys(
    user: &str,
    key_b64: &str,
    key_type: &str,
    runtime_dir: Option<&Path>,
) -> Outcome {
    let Ok(offered) = key::parse(&format!("{key_type} {key_b64}")) else {
        return Ok(ExitCode::SUCCESS);
    };
    if paths::check_user(user).is_err() {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let Ok(hosts) = std::fs::read_dir(&runtime) else {
        return Ok(ExitCode::SUCCESS);
    };
    let bin = binary()?;
    for entry in hosts.flatten() {
        let host = entry.file_name().to_string_lossy().into_owned();
        if paths::check_user(&host).is_err() || check_host_dir(&runtime, &host).is_err() {
            continue;
        }
        let Ok(book) = Store::new(&runtime, &host).load() else {
            continue;
        };
        for inv in book.invites.iter().filter(|i| i.via == Via::PairUser) {
            if !inv.keys.contains(&offered.openssh) || !inv.usable(&runtime, &host) {
                continue;
            }
            let f = Forced {
                binary: bin.clone(),
                host: host.clone(),
                session: inv.session.clone(),
                guest: inv.name.clone(),
                mode: inv.mode,
                runtime_dir: runtime.clone(),
                direct: inv.direct,
            };
            println!(
                "{}",
                line::render(
                    &f,
                    &offered,
                    UNIX_EPOCH + Duration::from_secs(inv.expires),
                    &inv.from
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A regular partner in `~/.config/pairjail/guests.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookEntry {
    key: Option<String>,
    key_file: Option<PathBuf>,
    github: Option<String>,
    gitlab: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    from: Vec<String>,
}

/// `start --invite NAME`: invites from the guest book for this session.
pub fn invite_from_book(
    names: &[String],
    session: &str,
    runtime: &Path,
    default_mode: Mode,
) -> Result<(), Failure> {
    if names.is_empty() {
        return Ok(());
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = home.join(".config/pairjail/guests.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::invalid(format!(
            "--invite needs the guest book {}: {e}",
            path.display()
        ))
    })?;
    let book: std::collections::BTreeMap<String, BookEntry> = toml::from_str(&text)
        .map_err(|e| Failure::invalid(format!("{}: {}", path.display(), e.message())))?;
    for name in names {
        let e = book.get(name).ok_or_else(|| {
            Failure::invalid(format!("--invite {name}: not in {}", path.display()))
        })?;
        let mode = match &e.mode {
            Some(m) => m
                .parse()
                .map_err(|m| Failure::invalid(format!("{}: {name}: {m}", path.display())))?,
            None => default_mode,
        };
        add(AddArgs {
            name: name.clone(),
            source: KeySource {
                key: e.key.clone(),
                key_file: e.key_file.clone(),
                github: e.github.clone(),
                gitlab: e.gitlab.clone(),
            },
            mode,
            session: session.to_string(),
            expires: None,
            from: e.from.clone(),
            via: None,
            runtime_dir: Some(runtime.to_path_buf()),
            direct: false,
        })?;
    }
    Ok(())
}
