//! `start`, `attach`, `stop`, `status` and the hidden `__broker`.

use std::process::ExitCode;

use super::{Outcome, RuntimeDir, print_json};
use crate::broker::paths::DEFAULT_SESSION;
use crate::broker::share::{self, Start};
use std::path::PathBuf;

use super::Failure;
use crate::broker::protocol::GuestState;
use crate::broker::workspace;
use crate::profile::{Mode, SearchPath};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pairjail start                                      share this directory; guests watch (mirror)
  pairjail start --allow mirror,pair                  guests may type, in a jail around the session
  pairjail start --approve --record                   let each guest in by hand; record the session
  pairjail start --detach -- htop                     share one program, in the background
  pairjail start --tunnel me@relay.example.com        behind NAT: guests connect to the relay
  pairjail start --public-host dev.example.com        the name printed in the guests' ssh line

Started inside tmux, the share opens in a new window of that tmux.")]
pub struct StartArgs {
    /// Name of the shared session.
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    /// Modes guests may use (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mirror")]
    pub allow: Vec<Mode>,
    /// Mode of a guest whose forced command names none.
    #[arg(long, value_enum, default_value = "mirror")]
    pub default_mode: Mode,
    /// Leave the session running in the background instead of attaching.
    #[arg(long)]
    pub detach: bool,
    /// Also allow the direct transport: guests' own tmux clients, jailed
    /// (`server-access` for each --guest-user; read-only unless pair is allowed).
    #[arg(long)]
    pub direct: bool,
    /// Invite these regular partners from ~/.config/pairjail/guests.toml.
    #[arg(long, value_name = "NAME")]
    pub invite: Vec<String>,
    /// Unix users whose guests may connect (default: `pair`, if it exists).
    #[arg(long = "guest-user", value_name = "USER")]
    pub guest_users: Vec<String>,
    /// Run the session in a workspace jail with DIR as its writable
    /// workspace (the default, with the current directory, when --allow
    /// has pair or rogue).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The workspace jail's profile (name or file; default: workspace).
    #[arg(long, value_name = "NAME|FILE", add = clap_complete::engine::ArgValueCompleter::new(super::complete::profiles))]
    pub session_profile: Option<String>,
    /// Share without the workspace jail: pair and rogue guests can then
    /// do everything your account can.
    #[arg(long)]
    pub unconfined_session: bool,
    /// Every guest waits at the door until you let it in: a notice in your
    /// session says who knocks (your tmux prefix, then `a`, opens a menu to
    /// answer, in a session where no guest can type), or run
    /// `pairjail approve NAME` / `pairjail deny NAME`.
    #[arg(long)]
    pub approve: bool,
    /// How long a guest waits at the door before that is a denial.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub approve_timeout: std::time::Duration,
    /// Record the session as an asciicast v2 file in DIR (default:
    /// ~/.local/state/pairjail/recordings), with each guest's typing
    /// attributed in NAME.inputs.jsonl. Guests are told.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub record: Option<Option<PathBuf>>,
    /// The audit log to append this share's events to (default:
    /// $PAIRJAIL_AUDIT_LOG, else ~/.local/state/pairjail/audit.jsonl).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Keep no audit log for this share (refused if a guest profile
    /// requires one).
    #[arg(long, conflicts_with_all = ["audit_log", "audit_syslog"])]
    pub no_audit: bool,
    /// Also send each audit line to syslog/journald through SOCKET
    /// (default /dev/log; or set $PAIRJAIL_AUDIT_SYSLOG).
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "/dev/log", env = "PAIRJAIL_AUDIT_SYSLOG")]
    pub audit_syslog: Option<PathBuf>,
    /// The name guests connect to, in the printed connect line (default:
    /// `public_host` of /etc/pairjail/config.toml, else this machine's name).
    #[arg(long, value_name = "NAME")]
    pub public_host: Option<String>,
    /// This machine's sshd port, for the connect line and the tunnel
    /// (default: the config's, else the Port in /etc/ssh/sshd_config, else 22).
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// Behind NAT: keep a reverse tunnel (`ssh -N -R`) to a relay you have an
    /// account on, for exactly the life of the share; guests connect to the
    /// relay. An alias from ~/.ssh/config works.
    #[arg(long, value_name = "[USER@]RELAY[:PORT]")]
    pub tunnel: Option<String>,
    /// Where the relay listens for guests: [ADDR:]PORT (the relay's sshd needs
    /// `GatewayPorts yes`, or `clientspecified` with ADDR).
    #[arg(
        long,
        value_name = "[ADDR:]PORT",
        default_value = "2222",
        requires = "tunnel"
    )]
    pub tunnel_port: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
    /// Program to run in the shared session instead of your shell.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn start(a: StartArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    let home = std::env::var_os("HOME")
        .map(Into::into)
        .or_else(|| crate::users::by_uid(nix::unistd::Uid::effective().as_raw()).map(|u| u.home))
        .unwrap_or_else(|| "/".into());
    let confinement = workspace::decide(
        &workspace::Request {
            allow: a.allow.clone(),
            workspace: a.workspace,
            profile: a.session_profile,
            unconfined: a.unconfined_session,
            direct: a.direct,
            cwd: std::env::current_dir().map_err(|e| {
                Failure::failed(format!("start: cannot read the current directory: {e}"))
            })?,
            home: home.clone(),
            host_uid: nix::unistd::Uid::effective().as_raw(),
        },
        &SearchPath::from_env(),
    )
    .map_err(share::ShareError::from)?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::failed(format!("start: cannot read the current directory: {e}")))?;
    let record = match a.record {
        None => None,
        Some(None) => Some(crate::record::default_dir().ok_or_else(|| {
            Failure::invalid(
                "--record: no HOME or XDG_STATE_HOME to record into; give --record DIR",
            )
        })?),
        Some(Some(d)) => Some(cwd.join(d)),
    };
    let audit = if a.no_audit {
        None
    } else {
        let path = match a.audit_log {
            Some(p) => cwd.join(p),
            None => crate::audit::default_path().map_err(Failure::invalid)?,
        };
        Some(share::AuditTarget {
            path,
            // The broker runs from /: a relative socket is the caller's.
            syslog: a
                .audit_syslog
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| cwd.join(p)),
        })
    };
    let started = share::start(
        &at,
        &Start {
            session: a.session.clone(),
            allow: a.allow,
            default_mode: a.default_mode,
            direct: a.direct,
            invite: a.invite,
            guest_users: a.guest_users,
            command: a.command,
            home,
            confinement: confinement.clone(),
            approve: a.approve,
            approve_timeout: a.approve_timeout,
            audit: audit.clone(),
            record: record.clone(),
            public_host: a.public_host,
            ssh_port: a.ssh_port,
            tunnel: a.tunnel.clone().map(|t| (t, a.tunnel_port.clone())),
        },
    )?;
    let s = &a.session;
    let rt = crate::broker::paths::flag(a.runtime_dir.get());
    println!("pairjail: sharing session {s}");
    if let Some(reach) = share::sessions(a.runtime_dir.get(), Some(s))?
        .first()
        .and_then(|st| st.reach.clone())
    {
        for line in reach.describe() {
            println!("  {line}");
        }
    }
    match &confinement {
        Some(c) => {
            println!(
                "  jailed: profile {}, workspace {} (writable), network {}",
                c.profile,
                c.workspace.display(),
                c.network
            );
            for dir in crate::exe::path_dirs_within(&c.workspace) {
                eprintln!(
                    "pairjail: warning: {} is on your PATH and lies in the workspace (or leads there): your shells outside the jail run what pair guests put in it; take it off PATH while you share",
                    crate::terminal::printable(&dir.display().to_string())
                );
            }
        }
        None if a.unconfined_session => eprintln!(
            "pairjail: warning: --unconfined-session: pair and rogue guests can do everything your account can (read ~/.ssh, use your agent, sudo)"
        ),
        None => {}
    }
    for file in &started.unread_guest_profiles {
        let dirs: Vec<String> = started
            .join_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        eprintln!(
            "pairjail: warning: {} is not read for guests, so its limits apply to none: sshd runs `join` without your environment, and it reads guest profiles only from {}; move the file there (or into /etc/pairjail/profiles, as root)",
            file.display(),
            dirs.join(", ")
        );
    }
    if a.tunnel.is_some() {
        eprintln!(
            "pairjail: note: guests through the tunnel reach sshd from 127.0.0.1: an invite's --from cannot tell them apart, and sshd rules that trust localhost apply to them"
        );
    }
    if let Some(d) = &record {
        println!(
            "  recorded: into {} (guests are told; if the recording stops, a full disk or its 1 GiB limit, the share ends with it)",
            d.display()
        );
    }
    match &audit {
        Some(t) => println!("  audit log: {}", t.path.display()),
        None => println!("  audit log: none (--no-audit)"),
    }
    let inside_tmux = std::env::var_os("TMUX").is_some_and(|t| !t.is_empty());
    if inside_tmux && !a.detach {
        let window = share::open_in_current_tmux(&at, a.runtime_dir.get())?;
        println!(
            "pairjail: you are inside tmux: session {s} opened in a new window ({window}) of your tmux instead of nesting here; in it, press your prefix twice to reach the shared session's tmux"
        );
        println!("  stop: pairjail stop --session {s}{rt}");
        return Ok(ExitCode::SUCCESS);
    }
    if a.detach {
        println!("  invite: pairjail invite add NAME --github USER --session {s}{rt}");
        println!("  attach: pairjail attach --session {s}{rt}");
        println!("  stop:   pairjail stop --session {s}{rt}");
        return Ok(ExitCode::SUCCESS);
    }
    if share::attach(&at)? {
        println!(
            "pairjail: detached; session {s} is still shared (`pairjail attach --session {s}{rt}`, `pairjail stop --session {s}{rt}`)"
        );
    } else {
        println!("pairjail: session {s} ended; every guest was disconnected");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct SessionArgs {
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn attach(a: SessionArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    share::attach(&at)?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(a: SessionArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    match share::stop(&at)? {
        share::Stopped::Ended => println!("pairjail: session {} stopped", a.session),
        share::Stopped::Leftovers {
            pid,
            server,
            invites,
        } => println!(
            "pairjail: session {}: its broker{} had died (its log: {}); stopped what it left: {}{} invite{} removed",
            a.session,
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            at.paths.log.display(),
            if server {
                "its tmux server ended, "
            } else {
                ""
            },
            invites,
            if invites == 1 { "" } else { "s" },
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 2m, 1h)"))?;
    if d.is_zero() || d > std::time::Duration::from_secs(86400) {
        return Err("expected more than 0 s and at most 24h".into());
    }
    Ok(d)
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pairjail status                     every share, its guests, the line guests run
  pairjail status --session review    one share (exit 1 if it is not running)
  pairjail status --json | jq '.[].guests[].name'
  pairjail schema status              the JSON Schema of --json")]
pub struct StatusArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Only this session.
    #[arg(long, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: Option<String>,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn status(a: StatusArgs) -> Outcome {
    let share::Survey {
        answered: sessions,
        mut silent,
    } = share::survey(a.runtime_dir.get(), a.session.as_deref())?;
    // A share whose broker is alive but silent is not "not shared": its
    // guests may still be connected. Said on stderr, so --json stays a list.
    if let Some(s) = &a.session
        && sessions.is_empty()
    {
        return Err(match silent.pop() {
            Some(e) => e.into(),
            None => share::ShareError::NotShared(s.clone()).into(),
        });
    }
    for e in &silent {
        eprintln!("pairjail: {e}");
    }
    if a.json {
        print_json(&sessions)?;
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        println!("no shared sessions");
    }
    // Shares in another runtime directory (started before `setup`, or in
    // a login with another XDG_RUNTIME_DIR) are not lost: say where.
    if a.runtime_dir.get().is_none() {
        for (dir, names) in share::elsewhere() {
            println!(
                "note: also shared from {}: {} (add --runtime-dir {0})",
                dir.display(),
                names.join(", ")
            );
        }
    }
    for s in &sessions {
        let modes: Vec<String> = s.allowed_modes.iter().map(Mode::to_string).collect();
        println!(
            "session {} (allowed: {}, default: {}), {} guest(s)",
            s.session,
            modes.join(","),
            s.default_mode,
            s.guests.len()
        );
        match &s.confinement {
            Some(c) => println!(
                "  jailed: profile {}, workspace {}, network {}",
                c.profile,
                c.workspace.display(),
                c.network
            ),
            None => println!("  unconfined: what runs in the session runs as you"),
        }
        if let Some(r) = &s.reach {
            println!("  {}", r.describe().join("\n  "));
        }
        if let Some(t) = &s.tunnel {
            println!(
                "  tunnel: {} via {} port {} (reconnected {} time(s)){}",
                t.state,
                t.relay,
                t.listen_port,
                t.reconnects,
                t.last_error
                    .as_ref()
                    .map(|e| format!("; ssh said: {e}"))
                    .unwrap_or_default()
            );
        }
        if let Some(r) = &s.recording {
            println!("  recorded: {r}");
        }
        match &s.audit_log {
            Some(a) => println!("  audit log: {a}"),
            None => println!("  audit log: none"),
        }
        if s.approve {
            println!("  guests wait at the door: `pairjail approve NAME` or `pairjail deny NAME`");
        }
        for g in &s.guests {
            let mode = match g.state {
                GuestState::Connected => g.mode.to_string(),
                GuestState::Waiting => format!("{} (waiting at the door)", g.mode),
            };
            println!(
                "  {:<16} {:<7} since {}  idle {}  from {}  key {}",
                g.name,
                mode,
                crate::clock::rfc3339(g.since),
                humantime::format_duration(std::time::Duration::from_secs(g.idle)),
                g.source.as_deref().unwrap_or("local"),
                g.key.as_deref().unwrap_or("unknown")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `__broker`: its launch config arrives on stdin, which stays `start`'s
/// line to it while the share is set up.
pub fn broker() -> Outcome {
    share::serve(std::io::BufReader::new(std::io::stdin()))?;
    Ok(ExitCode::SUCCESS)
}
