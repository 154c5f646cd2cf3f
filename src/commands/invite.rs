//! `pairjail invite add/list/revoke/clean` and `pairjail authorized-keys`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::{Failure, Outcome, RuntimeDir, print_json};
use crate::broker::paths::{self, DEFAULT_SESSION, check_name};
use crate::broker::share;
use crate::guest::join::Transport;
use crate::keys::authorized;
use crate::keys::invites::{Store, Via};
use crate::keys::key;
use crate::keys::registry;
use crate::keys::request::{KeySource, Request};
use crate::profile::Mode;

#[derive(Debug, clap::Subcommand)]
pub enum InviteCommand {
    /// Invite a guest by key (--key, --key-file, --github or --gitlab).
    Add(AddArgs),
    /// List invites: name, mode, key type, SHA256 fingerprint, expiry, session.
    List {
        /// Print JSON for scripts (schema: `pairjail schema invite-list`).
        #[arg(long)]
        json: bool,
        /// Only invites for this session.
        #[arg(long, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
        session: Option<String>,
        #[command(flatten)]
        runtime_dir: RuntimeDir,
    },
    /// Revoke a guest's invites (all sessions, or --session); a guest who
    /// is connected is disconnected.
    Revoke {
        /// The guest's name.
        name: String,
        /// Only the invite for this session.
        #[arg(long, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
        session: Option<String>,
        #[command(flatten)]
        runtime_dir: RuntimeDir,
    },
    /// Remove invites of sessions that are not running, and expired ones.
    Clean {
        #[command(flatten)]
        runtime_dir: RuntimeDir,
    },
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pairjail invite add bob --github bob                     watch only, for 12 hours
  pairjail invite add bob --key-file bob.pub --mode pair   may type
  pairjail invite add bob --gitlab bob --expires '18:00'   until 18:00 today, local time
  pairjail invite add bob --github bob --replace --expires 2h
  pairjail invite add carol --github carol --approve       waits at the door for you

Keys: an OpenSSH .pub line or file; an RFC 4716 file (PuTTY's export) is
converted; a private key is refused.")]
pub struct AddArgs {
    /// The guest's name (letters, digits, '-', '_', '.').
    pub name: String,
    /// An OpenSSH public key line.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// A file of OpenSSH public keys.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Use the keys GitHub publishes for this account.
    #[arg(long, value_name = "USER")]
    pub github: Option<String>,
    /// Use the keys GitLab publishes for this account.
    #[arg(long, value_name = "USER")]
    pub gitlab: Option<String>,
    /// What the guest may do.
    #[arg(long, value_enum, default_value = "mirror")]
    pub mode: Mode,
    /// The session the invite is for.
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    /// When the invite ends (default 12h; at most 30 days): a duration (2h,
    /// 90m), a local time (18:00, '18:00 tomorrow', '2026-12-01 18:00'), a
    /// date (2026-12-01, to its end) or a time with an offset (…+02:00, …Z).
    #[arg(long)]
    pub expires: Option<String>,
    /// Addresses or CIDRs the guest may connect from.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub from: Vec<String>,
    /// How the guest's key reaches sshd (default: pair-user after `pairjail setup`).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    /// relay, or direct (the guest's own jailed tmux client; pair-user mode only).
    #[arg(long, value_enum, default_value = "relay")]
    pub transport: Transport,
    /// The guest waits at the door until you let it in (your tmux prefix,
    /// then `a`, for a menu in your session, or `pairjail approve NAME`).
    #[arg(long)]
    pub approve: bool,
    /// The name guests connect to, in the printed line (default: the
    /// config's `public_host`, else this machine's name).
    #[arg(long, value_name = "NAME")]
    pub public_host: Option<String>,
    /// Replace this guest's invite for the session if there is one.
    #[arg(long)]
    pub replace: bool,
    /// Print what was invited as JSON (schema: `pairjail schema invite-add`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn run(cmd: InviteCommand) -> Outcome {
    match cmd {
        InviteCommand::Add(a) => add(a),
        InviteCommand::List {
            json,
            session,
            runtime_dir,
        } => list(&runtime_dir, json, session.as_deref()),
        InviteCommand::Revoke {
            name,
            session,
            runtime_dir,
        } => revoke(&name, session.as_deref(), &runtime_dir),
        InviteCommand::Clean { runtime_dir } => clean(&runtime_dir),
    }
}

fn where_(runtime_dir: &RuntimeDir) -> Result<(PathBuf, String), Failure> {
    paths::mine(runtime_dir.get()).map_err(Failure::failed)
}

fn add(a: AddArgs) -> Outcome {
    let request = Request {
        name: a.name.clone(),
        source: KeySource {
            key: a.key,
            key_file: a.key_file,
            github: a.github,
            gitlab: a.gitlab,
        },
        mode: a.mode,
        session: a.session.clone(),
        expires: a.expires,
        from: a.from,
        via: a.via,
        direct: a.transport == Transport::Direct,
        approve: a.approve,
    };
    let config = registry::system_config()?;
    if config.is_none() && a.via.is_none() && crate::config::legacy_setup() {
        return Err(Failure::invalid(format!(
            "{} exists but {} does not: this machine was set up by an older pairjail; run `sudo pairjail setup` again (it writes the config), or give --via",
            crate::config::LEGACY_DROPIN,
            crate::config::DEFAULT_PATH
        )));
    }
    let (invite, keys) = request.into_invite(crate::clock::now(), config.is_some())?;
    let (runtime, host) = where_(&a.runtime_dir)?;
    if let Some(h) = &a.public_host {
        crate::config::check_host_name(h).map_err(Failure::invalid)?;
    }
    if let (Via::PairUser, Some(c)) = (invite.via, &config)
        && !c.may_host(&host)
    {
        return Err(Failure::invalid(format!(
            "{} does not let {host} host guests of {} (hosts/host_group); ask an admin to run `sudo pairjail setup --host {host}`, or invite into your own account with --via authorized-keys",
            crate::config::path().display(),
            c.pair_user
        )));
    }
    // A live session says which modes it allows: an invite it would turn
    // away at the door is refused now, with the fix.
    let live = share::sessions(a.runtime_dir.get(), Some(&a.session))
        .ok()
        .and_then(|s| s.into_iter().next());
    if let Some(s) = &live
        && !s.allowed_modes.contains(&a.mode)
    {
        let allowed: Vec<String> = s.allowed_modes.iter().map(Mode::to_string).collect();
        return Err(Failure::invalid(format!(
            "session {} allows only {}: invite with --mode {}, or stop it and start it again with --allow {},{}",
            a.session,
            allowed.join(","),
            allowed[0],
            allowed.join(","),
            a.mode
        )));
    }
    let (via, expires) = (invite.via, invite.expires);
    let added = crate::audit::invite_added(&invite);
    registry::add(&runtime, &host, invite, a.replace)?;
    crate::audit::invites(&host, [added]);
    // A guest connected under the invite this one replaces gets its
    // terms now, not at its next connection.
    let applied = if a.replace {
        // The invite is saved by now: a share that cannot be asked is
        // a warning, not a failure of the command.
        let told = share::reinvite(a.runtime_dir.get(), &a.name, &a.session)
            .map_err(|e| vec![(String::new(), e.to_string())])
            .and_then(|t| {
                if t.unsure.is_empty() {
                    Ok(t.gone)
                } else {
                    Err(t.unsure)
                }
            });
        match told {
            Ok(gone) => !gone.is_empty(),
            Err(unsure) => {
                for (_, why) in &unsure {
                    eprintln!(
                        "pairjail: warning: the new invite may not apply to {} until it connects again (`pairjail kick {0}` makes it): {why}",
                        a.name
                    );
                }
                false
            }
        }
    } else {
        false
    };
    // The live share's own line (it knows --public-host and a tunnel);
    // else this machine's.
    let live = live.and_then(|s| s.reach);
    let user = match via {
        Via::PairUser => config.as_ref().map(|c| c.pair_user.clone()),
        Via::AuthorizedKeys => Some(host.clone()),
    };
    let reach = user.map(|user| match live {
        Some(r) if r.user == user => r,
        _ => crate::reach::direct(&user, a.public_host.as_deref(), config.as_ref()),
    });
    let session_live = registry::is_live(&runtime, &host, &a.session);
    if a.json {
        print_json(&Added {
            name: &a.name,
            session: &a.session,
            mode: a.mode,
            via,
            expires: crate::clock::rfc3339(expires),
            keys: keys
                .iter()
                .map(|k| AddedKey {
                    key_type: &k.algorithm,
                    fingerprint: &k.fingerprint,
                })
                .collect(),
            session_live,
            reach: reach.as_ref(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    for k in &keys {
        println!(
            "invited {} ({}, session {}) {} {} until {}",
            a.name,
            a.mode,
            a.session,
            k.algorithm,
            k.fingerprint,
            crate::clock::rfc3339(expires)
        );
    }
    if applied {
        println!(
            "{} is connected to session {}: the new invite applies now",
            a.name, a.session
        );
    }
    if let Some(reach) = &reach {
        for line in reach.describe() {
            println!("{line}");
        }
    }
    if !session_live {
        let allow = if a.mode == Mode::Mirror {
            String::new()
        } else {
            format!(" --allow mirror,{}", a.mode)
        };
        println!(
            "note: session {} is not running; the invite works once `pairjail start --session {0}{allow}` runs",
            a.session
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `invite add --json`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Added<'a> {
    pub name: &'a str,
    pub session: &'a str,
    pub mode: Mode,
    pub via: Via,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub expires: String,
    pub keys: Vec<AddedKey<'a>>,
    /// The session runs now (else the invite waits for its start).
    pub session_live: bool,
    /// The line the guest runs and the host keys to read out.
    pub reach: Option<&'a crate::reach::Reach>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct AddedKey<'a> {
    pub key_type: &'a str,
    pub fingerprint: &'a str,
}

/// One line of `invite list --json`: one key of one invite.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Row<'a> {
    pub name: &'a str,
    pub mode: Mode,
    pub session: &'a str,
    pub via: Via,
    pub key_type: &'a str,
    pub fingerprint: &'a str,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub expires: String,
    pub session_live: bool,
    pub from: &'a [String],
}

fn list(runtime_dir: &RuntimeDir, json: bool, session: Option<&str>) -> Outcome {
    if let Some(s) = session {
        paths::check_session(s).map_err(Failure::invalid)?;
    }
    let (runtime, host) = where_(runtime_dir)?;
    let book = Store::new(&runtime, &host)
        .load()
        .map_err(Failure::failed)?;
    let rows: Vec<Row> = book
        .invites
        .iter()
        .filter(|i| session.is_none_or(|s| i.session == s))
        .flat_map(|i| {
            let live = registry::is_live(&runtime, &host, &i.session);
            i.keys.iter().zip(&i.fingerprints).map(move |(k, fp)| Row {
                name: &i.name,
                mode: i.mode,
                session: &i.session,
                via: i.via,
                key_type: k.split_whitespace().next().unwrap_or(""),
                fingerprint: fp,
                expires: crate::clock::rfc3339(i.expires),
                session_live: live,
                from: &i.from,
            })
        })
        .collect();
    if json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no invites");
    }
    for r in rows {
        println!(
            "{:<12} {:<7} session {:<10}{} {} {} expires {}",
            r.name,
            r.mode.to_string(),
            r.session,
            if r.session_live { " (live)" } else { "" },
            r.key_type,
            r.fingerprint,
            r.expires
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(name: &str, session: Option<&str>, runtime_dir: &RuntimeDir) -> Outcome {
    check_name("guest", name).map_err(Failure::invalid)?;
    let (runtime, host) = where_(runtime_dir)?;
    let removed = registry::revoke(&runtime, &host, name, session)?;
    crate::audit::invites(
        &host,
        removed
            .iter()
            .map(|i| crate::audit::invite_removed(i, "revoked by the host")),
    );
    // A connected guest goes too, whether or not an invite was left.
    let done = share::disconnect(
        runtime_dir.get(),
        name,
        session,
        "the host revoked your invite",
    )?;
    // A share whose broker does not answer cannot say whether the guest
    // is still there: said, and the revoke does not claim success.
    for (_, why) in &done.unsure {
        eprintln!("pairjail: warning: could not check whether {name} is connected: {why}");
    }
    if removed.is_empty() && done.gone.is_empty() {
        return Err(Failure::invalid(format!("no invite named {name}")));
    }
    println!("revoked {name}");
    for s in &done.gone {
        println!("disconnected {name} from session {s}");
    }
    if !done.unsure.is_empty() {
        let sessions: Vec<_> = done.unsure.iter().map(|(s, _)| s.as_str()).collect();
        return Err(Failure::failed(format!(
            "{name} may still be connected to session {}: once its broker answers, `pairjail kick {name}` disconnects it",
            sessions.join(", ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn clean(runtime_dir: &RuntimeDir) -> Outcome {
    let (runtime, host) = where_(runtime_dir)?;
    let gone = registry::clean(&runtime, &host, false)?;
    crate::audit::invites(
        &host,
        gone.iter()
            .map(|i| crate::audit::invite_removed(i, "its session run is over")),
    );
    println!(
        "removed {} invite(s) that expired or whose session run ended",
        gone.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct AuthorizedKeysArgs {
    /// The user sshd authenticates (%u).
    pub user: String,
    /// The offered key, base64 (%k).
    pub key: String,
    /// The offered key's type (%t).
    pub key_type: String,
    /// The machine's config (default: $PAIRJAIL_CONFIG, else
    /// /etc/pairjail/config.toml): its runtime directory, pair user and
    /// the hosts whose invites are served.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

/// sshd's AuthorizedKeysCommand (`%u %k %t`): prints the line for the key
/// only if exactly one live invite names it (see `keys::authorized`).
pub fn authorized_keys(a: AuthorizedKeysArgs) -> Outcome {
    let Ok(offered) = key::parse(&format!("{} {}", a.key_type, a.key)) else {
        return Ok(ExitCode::SUCCESS);
    };
    if paths::check_user(&a.user).is_err() {
        return Ok(ExitCode::SUCCESS);
    }
    let config_path = a.config.unwrap_or_else(crate::config::path);
    let config = crate::config::load_from(&config_path).map_err(Failure::failed)?;
    // Only the config's pair user gets lines, and only from allowed hosts.
    if config.as_ref().is_some_and(|c| c.pair_user != a.user) {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = match (a.runtime_dir.get(), &config) {
        (Some(p), _) => paths::settle(p.to_path_buf()).map_err(Failure::failed)?,
        (None, Some(c)) => paths::settle(c.runtime_dir.clone()).map_err(Failure::failed)?,
        (None, None) => paths::runtime_dir(None).map_err(Failure::failed)?,
    };
    let bin = crate::exe::own()?;
    let may_host = |host: &str| config.as_ref().is_none_or(|c| c.may_host(host));
    let (line, warnings) = authorized::answer(&runtime, &offered, &bin, may_host);
    for w in warnings {
        eprintln!("pairjail authorized-keys: {w}");
    }
    if let Some(line) = line {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
