//! `pairjail invite add/list/revoke/clean` and `pairjail authorized-keys`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use super::{Failure, Outcome};
use crate::broker::liveness;
use crate::broker::paths::{self, check_name};
use crate::keys::authorized;
use crate::keys::fetch::{self, Forge};
use crate::keys::invites::{self, Invite, Store, Via};
use crate::keys::key::{self, GuestKey};
use crate::keys::line;
use crate::keys::registry::{self, RegistryError};
use crate::profile::Mode;

/// Default lifetime of an invite (a session also ends it).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(12 * 3600);
pub use registry::SSHD_CONF;

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

fn reg(e: RegistryError) -> Failure {
    match e {
        RegistryError::Invalid(m) => Failure::invalid(m),
        RegistryError::Failed(m) => Failure::failed(m),
    }
}

pub fn pair_user_mode() -> bool {
    registry::pair_user_mode()
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
        run: None,
        direct: a.direct,
    };
    registry::add(&runtime, &host, invite).map_err(reg)?;
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
    if !is_live(&runtime, &host, &a.session) {
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
            let live = is_live(&runtime, &host, &i.session);
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
    let removed = registry::revoke(&runtime, &host, name, session).map_err(reg)?;
    if removed == 0 {
        return Err(Failure::invalid(format!("no invite named {name}")));
    }
    println!("revoked {name}");
    Ok(ExitCode::SUCCESS)
}

/// Invites and managed-block lines of runs that died (a crash) go.
pub fn clean_for(runtime: &Path, host: &str) -> Result<usize, Failure> {
    registry::clean(runtime, host, false).map_err(reg)
}

/// Is a run of this session alive now?
fn is_live(runtime: &Path, host: &str, session: &str) -> bool {
    liveness::live_run(
        &runtime.join(host).join(session),
        nix::unistd::Uid::effective().as_raw(),
    )
    .is_some()
}

pub fn clean(runtime_dir: Option<&Path>) -> Outcome {
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let n = clean_for(&runtime, &host)?;
    println!("removed {n} invite(s) that expired or whose session run ended");
    Ok(ExitCode::SUCCESS)
}

/// sshd's AuthorizedKeysCommand (`%u %k %t`): prints the line for the key
/// only if exactly one live invite names it (see `keys::authorized`).
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
    let bin = registry::binary().map_err(reg)?;
    let (line, warnings) = authorized::answer(&runtime, &offered, &bin);
    for w in warnings {
        eprintln!("pairjail authorized-keys: {w}");
    }
    if let Some(line) = line {
        println!("{line}");
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
