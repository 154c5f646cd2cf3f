//! A share's life from the host's side: start (directories, the dedicated
//! tmux server, the broker daemon, the guest book), attach, stop, list;
//! and the broker daemon's own start and end ([`serve`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::listener::{self, Listener};
use super::liveness::{self, Run};
use super::paths::{self, SessionPaths, check_session};
use super::protocol::{Frame, Msg, SessionStatus, Which, read_frame, write_frame};
use super::run_lock;
use super::server::{self, Config};
use super::tmux::{Tmux, TmuxError};
use super::workspace::{self, Confinement};
use crate::keys::book;
use crate::keys::registry::{self, RegistryError};
use crate::keys::request::RequestError;
use crate::profile::Mode;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("start: refusing to share a session as root; run it as the user whose session it is")]
    Root,
    #[error("{0}")]
    Name(String),
    #[error("{0}")]
    Runtime(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tunnel(#[from] super::tunnel::TunnelError),
    #[error(transparent)]
    HostClient(#[from] super::host_client::HostClientError),
    #[error(
        "pairjail's own binary {0} is inside the workspace {1}, where guests could rewrite it before the broker or a jail runs it again; install it elsewhere (`cargo install --path .` puts it in ~/.cargo/bin) or share another directory"
    )]
    OwnBinaryInWorkspace(PathBuf, PathBuf),
    #[error(
        "attaching to session {0} needs a terminal: run `pairjail attach --session {0}` from one (its standard input is not)"
    )]
    NoTerminal(String),
    #[error(
        "an earlier run of session {0} left its tmux server running (its broker died; what its guests started may still run); `pairjail stop --session {0}{1}` ends it"
    )]
    Leftover(String, String),
    #[error(
        "the tunnel to {relay} did not come up: {why}; check it by hand with `ssh -N -R {port}:127.0.0.1:22 {relay}` (the relay's host key must be known, your key accepted, and GatewayPorts set there for guests from outside); the share was stopped"
    )]
    TunnelDown {
        relay: String,
        port: u16,
        why: String,
    },
    #[error("--default-mode {0} is not in --allow")]
    DefaultMode(Mode),
    #[error(
        "session {0} is already shared: `pairjail attach --session {0}` or `pairjail stop --session {0}`"
    )]
    AlreadyShared(String),
    #[error("no session {0} is being shared")]
    NotShared(String),
    #[error(
        "session {0}'s last run is still ending (its broker is removing its invites and files): try again in a moment, or see its log {1}"
    )]
    StillEnding(String, PathBuf),
    #[error(
        "session {0} was told to stop, but its broker has not finished removing its invites and files after 10 s: see its log {1}; a `pairjail start --session {0}` waits for it"
    )]
    StopUnfinished(String, PathBuf),
    #[error(
        "session {0}'s broker (pid {1}) is running but does not answer: see its log {2}; `kill -9 {1}`, then `pairjail stop --session {0}` ends what it leaves"
    )]
    Unresponsive(String, u32, PathBuf),
    #[error("another `pairjail start --session {0}` is still starting it: see `pairjail status`")]
    Starting(String),
    #[error("{0}; and the share it started is not stopped: {1}")]
    NotUndone(Box<ShareError>, Box<ShareError>),
    #[error(transparent)]
    RunLock(#[from] super::run_lock::RunLockError),
    #[error("{0}")]
    Refused(String),
    #[error("--guest-user {0}: no such user")]
    NoSuchUser(String),
    #[error("--direct needs --guest-user with a user other than you: tmux trusts its owner's uid")]
    DirectNeedsGuestUser,
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tmux(#[from] TmuxError),
    #[error("the broker did not start: {0}")]
    Broker(String),
    #[error(transparent)]
    Exe(#[from] crate::exe::ExeError),
    #[error(transparent)]
    Book(#[from] book::BookError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Invites(#[from] RegistryError),
    #[error(transparent)]
    Liveness(#[from] liveness::LivenessError),
    #[error(transparent)]
    Workspace(#[from] workspace::WorkspaceError),
    #[error("cannot read the session's confinement: {0}")]
    Record(String),
    #[error("the session's jail did not start: {0}")]
    Jail(String),
    #[error(
        "the guest profile {profile} requires {what} ([session] {field} in {file}), so this share cannot start without it: {fix}"
    )]
    Required {
        profile: String,
        what: &'static str,
        field: &'static str,
        file: String,
        fix: &'static str,
    },
    #[error("the guest profile {0} cannot be read: {1}")]
    GuestProfile(String, String),
    #[error(
        "your tmux client was told to run a command (`detach-client -E` or `lock-client`, from inside session {0}) and the client jail stopped it; `pairjail attach --session {0}` to go back"
    )]
    ClientStopped(String),
}

impl ShareError {
    /// The host asked for something that cannot be (exit 2), rather than
    /// something failing on the way (exit 1).
    pub fn is_invalid(&self) -> bool {
        match self {
            ShareError::Root
            | ShareError::Name(_)
            | ShareError::DefaultMode(_)
            | ShareError::AlreadyShared(_)
            | ShareError::NoSuchUser(_)
            | ShareError::DirectNeedsGuestUser
            | ShareError::Required { .. }
            | ShareError::Tunnel(_)
            | ShareError::Book(_) => true,
            ShareError::Request(e) => e.is_invalid(),
            ShareError::Workspace(e) => e.is_invalid(),
            ShareError::Invites(e) => matches!(e, RegistryError::Invalid(_)),
            _ => false,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ShareError {
    let path = path.to_path_buf();
    move |source| ShareError::Io { what, path, source }
}

/// Where a session of the calling user lives.
pub fn locate(runtime_dir: Option<&Path>, session: &str) -> Result<Located, ShareError> {
    check_session(session).map_err(ShareError::Name)?;
    let (runtime, host) = paths::mine(runtime_dir).map_err(ShareError::Runtime)?;
    let paths = SessionPaths::new(&runtime, &host, session);
    Ok(Located {
        runtime,
        host,
        session: session.to_string(),
        paths,
    })
}

#[derive(Debug, Clone)]
pub struct Located {
    pub runtime: PathBuf,
    pub host: String,
    pub session: String,
    pub paths: SessionPaths,
}

impl Located {
    /// The session's tmux server, its clients jailed when the session is.
    pub fn tmux(&self) -> Result<Tmux, ShareError> {
        let confinement = workspace::read_record(&self.paths.dir).map_err(ShareError::Record)?;
        tmux_for(&self.paths, confinement.as_ref())
    }
}

fn tmux_for(p: &SessionPaths, confinement: Option<&Confinement>) -> Result<Tmux, ShareError> {
    if let Some(c) = confinement {
        workspace::check_search(&crate::profile::SearchPath::from_env(), &c.workspace)
            .map_err(ShareError::Workspace)?;
    }
    Ok(match confinement {
        None => Tmux::new(&p.tmux),
        Some(c) => Tmux::jailed(
            &p.tmux,
            workspace::client_prefix(&crate::exe::own()?, &p.tmux),
            c.tmux(),
        ),
    })
}

/// One question to a running broker over its control socket.
fn ask(control: &Path, msg: Msg) -> Option<Msg> {
    if !is_own_control(control) {
        return None;
    }
    // Never a blocking connect: a stopped broker's full backlog would hold
    // this command for good.
    let mut s = listener::connect(control)?;
    // Only our own broker answers for our shares: a socket another user
    // put where ours would be gets no question and is not believed.
    let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    if peer.uid() != nix::unistd::Uid::effective().as_raw() {
        return None;
    }
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write_frame(&mut s, &Frame::Msg(msg)).ok()?;
    match read_frame(&mut s) {
        Ok(Frame::Msg(m)) => Some(m),
        _ => None,
    }
}

/// Is `control` a socket of ours in a session directory and a host
/// directory of ours, none of them a link? Another local user may have
/// made `<runtime>/<host>` first (a shared runtime directory is 1777) and
/// linked a session there to one of our real shares elsewhere, whose
/// broker answers us: an order for their session would reach it.
fn is_own_control(control: &Path) -> bool {
    let session = control.parent();
    let host = session.and_then(Path::parent);
    own_entry(control, Kind::Socket).is_ok()
        && session.is_some_and(|d| own_entry(d, Kind::Dir).is_ok())
        && host.is_some_and(|d| own_entry(d, Kind::Dir).is_ok())
}

/// What the broker daemon is started with, sent on its stdin: one
/// definition for both ends instead of a command line rebuilt by hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    pub session: String,
    pub runtime: PathBuf,
    pub allow: Vec<Mode>,
    pub default_mode: Mode,
    pub guest_uids: Vec<u32>,
    pub direct: bool,
    pub confinement: Option<Confinement>,
    #[serde(default)]
    pub approve: bool,
    #[serde(default = "default_approve_timeout")]
    pub approve_timeout_secs: u64,
    /// Where the audit events go; None: `--no-audit`.
    #[serde(default)]
    pub audit: Option<AuditTarget>,
    /// The recording's directory; None: not recorded.
    #[serde(default)]
    pub record: Option<PathBuf>,
    #[serde(default)]
    pub require_recording: bool,
    /// How guests reach this share (shown by `status`).
    pub reach: crate::reach::Reach,
    #[serde(default)]
    pub tunnel: Option<super::tunnel::Spec>,
}

/// The audit log of a share: its file and the optional syslog copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditTarget {
    pub path: PathBuf,
    pub syslog: Option<PathBuf>,
}

/// What the guest profiles `join` will use ask of a share.
#[derive(Debug, Clone, Default)]
pub struct Required {
    /// (profile, its file) requiring a recording.
    pub recording: Option<(String, String)>,
    pub audit_log: Option<(String, String)>,
    /// Guest profile files the host's own search path finds that no
    /// guest's `join` reads (it ignores `$PAIRJAIL_PROFILE_PATH` and
    /// `$HOME`, and the pair user's home is not the host's): their
    /// limits apply to nobody, which the host is told.
    pub unread: Vec<PathBuf>,
    /// Where those joins look.
    pub join_dirs: Vec<PathBuf>,
}

/// Reads the guest profiles this share's guests get by default
/// (`guest-relay`, and `guest-direct` with `--direct`) from the search
/// paths `join` uses (as the host, for its own authorized_keys, and as
/// the pair user `setup` made, whose home is `pair_home`), and from the
/// host's own: a security team that sets `require_recording` or
/// `require_audit_log` in /etc/pairjail/profiles makes `start` refuse
/// early. The broker enforces the same fields again for every guest, from
/// the profile its forced command names.
pub fn required(direct: bool, pair_home: Option<&Path>) -> Result<Required, ShareError> {
    use crate::profile::SearchPath;
    let own = SearchPath::from_env();
    let mut joins = vec![
        SearchPath::for_guest().map_err(|e| ShareError::GuestProfile("guest-relay".into(), e))?,
    ];
    joins.extend(pair_home.map(SearchPath::of_join));
    let mut r = Required::default();
    for j in &joins {
        for d in j.dirs() {
            if !r.join_dirs.contains(d) {
                r.join_dirs.push(d.clone());
            }
        }
    }
    let names: &[&str] = if direct {
        &["guest-relay", "guest-direct"]
    } else {
        &["guest-relay"]
    };
    let mut read_by_joins: Vec<PathBuf> = vec![];
    for name in names {
        for (i, search) in std::iter::once(&own).chain(&joins).enumerate() {
            let resolved = crate::profile::resolve(name, search)
                .map_err(|e| ShareError::GuestProfile(name.to_string(), e.to_string()))?;
            let files: Vec<PathBuf> = resolved
                .sources
                .iter()
                .filter_map(|s| s.dir.as_ref().map(|_| PathBuf::from(&s.name)))
                .collect();
            if i == 0 {
                r.unread.extend(files);
            } else {
                read_by_joins.extend(files);
            }
            let from = resolved
                .sources
                .last()
                .map_or_else(|| "the built-in profile".to_string(), |s| s.name.clone());
            let who = || Some((name.to_string(), from.clone()));
            if resolved.profile.session.require_recording && r.recording.is_none() {
                r.recording = who();
            }
            if resolved.profile.session.require_audit_log && r.audit_log.is_none() {
                r.audit_log = who();
            }
        }
    }
    // Compared where they lie: `$HOME` may name the home another way.
    let real = |f: &PathBuf| f.canonicalize().unwrap_or_else(|_| f.clone());
    let read: Vec<PathBuf> = read_by_joins.iter().map(real).collect();
    r.unread.retain(|f| !read.contains(&real(f)));
    r.unread.sort();
    r.unread.dedup();
    Ok(r)
}

fn default_approve_timeout() -> u64 {
    DEFAULT_APPROVE_TIMEOUT.as_secs()
}

/// How long a guest waits at the door unless the host says otherwise.
pub const DEFAULT_APPROVE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct Start {
    pub session: String,
    pub allow: Vec<Mode>,
    pub default_mode: Mode,
    /// Grant the guest users `server-access` for their own tmux clients.
    pub direct: bool,
    /// Partners from the guest book to invite.
    pub invite: Vec<String>,
    /// Guests' Unix users (empty: `pair`, if it exists).
    pub guest_users: Vec<String>,
    /// The program of the session's first window (empty: the shell).
    pub command: Vec<String>,
    /// The host's home, where the guest book is.
    pub home: PathBuf,
    /// The session's jail (see [`workspace::decide`]); None: unconfined.
    pub confinement: Option<Confinement>,
    /// Every guest waits at the door for the host's answer.
    pub approve: bool,
    pub approve_timeout: Duration,
    /// Where the audit events go; None: `--no-audit`.
    pub audit: Option<AuditTarget>,
    /// The recording's directory; None: not recorded.
    pub record: Option<PathBuf>,
    /// The name guests connect to (`--public-host`; default: the config's,
    /// else this machine's name).
    pub public_host: Option<String>,
    /// This machine's sshd port (default: the config's, else sshd_config's).
    pub ssh_port: Option<u16>,
    /// `--tunnel [user@]relay[:port]` and `--tunnel-port [ADDR:]PORT`.
    pub tunnel: Option<(String, String)>,
}

/// Every guest costs the broker two descriptors (its connection and its
/// tmux client's pty): the soft limit (often 1024) is raised to the hard
/// one, so an audience is bounded by what the admin allows, not by a
/// default. A failure leaves the limit as it was (logged by nobody: the
/// broker then simply holds fewer guests).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// What `start` has to tell the host once the share is up.
#[derive(Debug, Clone, Default)]
pub struct Started {
    /// Guest profile files of the host's own search path that no
    /// guest's `join` reads, and where those joins look.
    pub unread_guest_profiles: Vec<PathBuf>,
    pub join_dirs: Vec<PathBuf>,
}

/// Starts a share and returns once its broker is ready.
pub fn start(at: &Located, a: &Start) -> Result<Started, ShareError> {
    if nix::unistd::Uid::effective().is_root() {
        return Err(ShareError::Root);
    }
    if !a.allow.contains(&a.default_mode) {
        return Err(ShareError::DefaultMode(a.default_mode));
    }
    let config = crate::config::load()?;
    let pair_home = config
        .as_ref()
        .and_then(|c| crate::users::by_name(&c.pair_user))
        .map(|u| u.home);
    let required = required(a.direct, pair_home.as_deref())?;
    if let (Some((profile, source)), None) = (&required.recording, &a.record) {
        return Err(ShareError::Required {
            profile: profile.clone(),
            what: "a recording",
            field: "require_recording",
            file: source.clone(),
            fix: "add --record",
        });
    }
    if let (Some((profile, source)), None) = (&required.audit_log, &a.audit) {
        return Err(ShareError::Required {
            profile: profile.clone(),
            what: "an audit log",
            field: "require_audit_log",
            file: source.clone(),
            fix: "drop --no-audit",
        });
    }
    if let Some(c) = &a.confinement {
        let search = crate::profile::SearchPath::from_env();
        if let Some(audit) = &a.audit {
            workspace::check_private(c, &search, "the audit log", &audit.path, None)?;
        }
        if let Some(dir) = &a.record {
            workspace::check_private(c, &search, "the recordings directory", dir, None)?;
        }
        // Its control socket obeys any process of the host's uid, which
        // everything in the jailed session is; a read-only mount does not
        // stop a connect.
        workspace::check_private(
            c,
            &search,
            "the runtime directory",
            &at.runtime.join(&at.host),
            Some("connect to the share's control socket and give the host's orders"),
        )?;
    }
    // Every share's tmux server obeys the host's uid, which every jailed
    // session (another share's too) runs as.
    workspace::check_unseen_by_jails(
        &crate::profile::SearchPath::from_env(),
        &a.home,
        &at.runtime,
    )?;
    let p = &at.paths;
    if ask(&p.control, Msg::Status).is_some() {
        return Err(ShareError::AlreadyShared(a.session.clone()));
    }
    // Pair-user mode is what the machine's config says: its pair user is
    // admitted unless --guest-user names others.
    if let Some(h) = &a.public_host {
        crate::config::check_host_name(h).map_err(ShareError::Name)?;
    }
    let mut reach = crate::reach::direct(
        &crate::reach::guest_user(&at.host, config.as_ref()),
        a.public_host.as_deref(),
        config.as_ref(),
    );
    if let Some(p) = a.ssh_port {
        reach.port = p;
    }
    let tunnel = match &a.tunnel {
        Some((relay, listen)) => {
            let spec = super::tunnel::parse(relay, listen, reach.port)?;
            // Guests come through the relay; the host keys they check are
            // still this machine's (the tunnel leads to its sshd).
            // Its ssh, like every program a jailed share runs, never
            // comes from the workspace.
            let ssh = match &a.confinement {
                Some(c) => crate::exe::program_outside("ssh", &c.workspace),
                None => crate::exe::program("ssh"),
            };
            reach.host = a
                .public_host
                .clone()
                .unwrap_or_else(|| spec.relay_host(&ssh));
            reach.port = spec.listen_port;
            reach.via_relay = true;
            Some(spec)
        }
        None => None,
    };
    let mut guest_users = a.guest_users.clone();
    if let (true, Some(c)) = (guest_users.is_empty(), &config) {
        guest_users.push(c.pair_user.clone());
    }
    let guest_uids = guest_users
        .iter()
        .map(|u| {
            crate::users::by_name(u)
                .map(|u| u.uid)
                .ok_or_else(|| ShareError::NoSuchUser(u.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The guest book is read before anything starts: a typo stops here.
    // Never from where pair guests could write (their keys, as anyone's).
    let shared = crate::workspaces::shared(&a.home).map_err(workspace::WorkspaceError::from)?;
    let book_path = book::path_in(&a.home);
    let requests = book::requests(&book_path, &a.invite, &a.session, a.default_mode, &shared)?;

    // <runtime>/<host>/<session>, each 0711: guests can reach the socket
    // whose name they know, but list nothing.
    let host_dir = p.dir.parent().unwrap_or(&p.dir);
    // What guests' `join` requires of the way there, said to the host now.
    paths::check_guest_runtime(&at.runtime, nix::unistd::geteuid().as_raw())
        .map_err(ShareError::Runtime)?;
    crate::files::dir_711(host_dir).map_err(io("create", host_dir))?;
    paths::check_host_dir(&at.runtime, &at.host).map_err(ShareError::Runtime)?;
    // One `start` of a session at a time, until its broker is ready; the
    // next one then finds the session shared.
    let _starting = run_lock::wait_hold(&p.start_lock, STARTING)?
        .ok_or_else(|| ShareError::Starting(a.session.clone()))?;
    if ask(&p.control, Msg::Status).is_some() {
        return Err(ShareError::AlreadyShared(a.session.clone()));
    }
    // The last run of this session may still be removing its files (its
    // `stop` gave up waiting): it would remove this run's too.
    match run_lock::wait_hold(&p.lock, ENDING)? {
        Some(free) => drop(free),
        None => return Err(ShareError::StillEnding(a.session.clone(), p.log.clone())),
    }
    // The broker and every jail run pairjail's own binary: never a file
    // the share's guests can rewrite.
    if let Some(c) = &a.confinement {
        let own = crate::exe::own()?;
        if crate::exe::within(&own, &c.workspace) {
            return Err(ShareError::OwnBinaryInWorkspace(own, c.workspace.clone()));
        }
    }
    // A server or jail an earlier run left (its broker died) is never
    // taken over: that run's guests may have set it up (hooks, aliases).
    // Its log and invites stay for `stop`.
    let uid = nix::unistd::Uid::effective().as_raw();
    if left_running(p, uid) {
        return Err(ShareError::Leftover(
            a.session.clone(),
            paths::flag(Some(&at.runtime)),
        ));
    }
    crate::files::dir_711(&p.dir).map_err(io("create", &p.dir))?;
    // Invites and managed-block lines of sessions that died (a crash) go now.
    let gone = registry::clean(&at.runtime, &at.host, true)?;
    crate::audit::invites(
        &at.host,
        gone.iter()
            .map(|i| crate::audit::invite_removed(i, "its session run is over")),
    );
    truncate_log(p)?;
    let tmux = prepare_server(at, a)?;
    let cwd = a.confinement.as_ref().map(|c| c.workspace.as_path());
    if let Err(e) = tmux.start(&a.session, &a.command, a.allow.contains(&Mode::Rogue), cwd) {
        end_server(&tmux, p);
        return Err(e.into());
    }
    if a.direct {
        let host_uid = nix::unistd::Uid::effective().as_raw();
        if guest_users.is_empty() || guest_uids.contains(&host_uid) {
            end_server(&tmux, p);
            return Err(ShareError::DirectNeedsGuestUser);
        }
        let read_only = !a.allow.contains(&Mode::Pair);
        for u in &guest_users {
            if let Err(e) = tmux.grant(u, read_only) {
                end_server(&tmux, p);
                return Err(e.into());
            }
        }
    }
    if let Err(e) = record_server(p) {
        end_server(&tmux, p);
        return Err(e);
    }
    let launch = Launch {
        session: a.session.clone(),
        runtime: at.runtime.clone(),
        allow: a.allow.clone(),
        default_mode: a.default_mode,
        guest_uids,
        direct: a.direct,
        confinement: a.confinement.clone(),
        approve: a.approve,
        approve_timeout_secs: a.approve_timeout.as_secs().max(1),
        audit: a.audit.clone(),
        record: a.record.clone(),
        require_recording: required.recording.is_some(),
        reach: reach.clone(),
        tunnel: tunnel.clone(),
    };
    // From the broker's start on, pair guests may write there.
    if let Some(c) = &a.confinement
        && let Err(e) = workspace::remember(&a.home, &c.workspace)
    {
        end_server(&tmux, p);
        let _ = std::fs::remove_file(p.dir.join(liveness::SERVER_FILE));
        return Err(e.into());
    }
    // Held while the share is set up: dropped on any return below, it
    // ends the share if `undo_start` could not.
    let starting = match launch_broker(p, &launch) {
        Ok(s) => s,
        Err(e) => {
            end_server(&tmux, p);
            let _ = std::fs::remove_file(p.dir.join(liveness::SERVER_FILE));
            return Err(e);
        }
    };
    for r in requests {
        let invited = r
            .into_invite(crate::clock::now(), config.is_some())
            .map_err(ShareError::from)
            .and_then(|(inv, _)| {
                let added = crate::audit::invite_added(&inv);
                registry::add(&at.runtime, &at.host, inv, true)?;
                crate::audit::invites(&at.host, [added]);
                Ok(())
            });
        if let Err(e) = invited {
            return Err(undo_start(at, e));
        }
    }
    if let Some(spec) = &tunnel
        && let Err(why) = tunnel_up(&p.control)
    {
        let e = ShareError::TunnelDown {
            relay: spec.relay.clone(),
            port: spec.listen_port,
            why,
        };
        return Err(undo_start(at, e));
    }
    // A broker that died after the checks above leaves what it could not
    // clean up; undone as any failed start is.
    starting.go(p).map_err(|e| undo_start(at, e))?;
    Ok(Started {
        unread_guest_profiles: required.unread,
        join_dirs: required.join_dirs,
    })
}

/// Stops the share a failing `start` launched, waiting for its run to
/// end: `e`, or `e` with why the share is not stopped (its broker did not
/// answer, and drops an order nobody waits for any more; or it has not
/// finished ending).
fn undo_start(at: &Located, e: ShareError) -> ShareError {
    let p = &at.paths;
    let uid = nix::unistd::Uid::effective().as_raw();
    let why = match stop_running(at) {
        Ok(Some(_)) => return e,
        Err(why) => why,
        Ok(None) => match liveness::live_run(&p.dir, uid) {
            Some(run) => ShareError::Unresponsive(at.session.clone(), run.pid, p.log.clone()),
            // No broker runs: it is ending by itself (it holds the run's
            // lock until its files are gone), or it died and left its
            // server and invites, which go as after any crash (this
            // `start` holds the start lock).
            None => match run_lock::wait_hold(&p.lock, ENDING) {
                Ok(Some(_run)) => match end_leftovers(at) {
                    Ok(_) | Err(ShareError::NotShared(_)) => return e,
                    Err(why) => why,
                },
                Ok(None) => ShareError::StillEnding(at.session.clone(), p.log.clone()),
                Err(why) => why.into(),
            },
        },
    };
    ShareError::NotUndone(Box::new(e), Box::new(why))
}

/// Waits for the tunnel's first attempt: up, or ssh's reason it is not.
fn tunnel_up(control: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(Msg::StatusReply { session }) = ask(control, Msg::Status)
            && let Some(t) = session.tunnel
        {
            match t.state.as_str() {
                "up" => return Ok(()),
                "down" => {
                    return Err(t
                        .last_error
                        .unwrap_or_else(|| "ssh ended without saying why".into()));
                }
                _ => last = t.last_error,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap_or_else(|| "no answer in 30 s".into()))
}

/// The session's log starts empty at each start; the jail and the broker
/// append to it.
fn truncate_log(p: &SessionPaths) -> Result<(), ShareError> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&p.log)
        .map(drop)
        .map_err(io("create", &p.log))
}

fn append_log(p: &SessionPaths) -> Result<std::fs::File, ShareError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&p.log)
        .map_err(io("open", &p.log))
}

/// The socket's own directory (0700; 0711 for the direct transport, whose
/// guests open the socket themselves), the confinement record, and for a
/// jailed session its tmux server, started inside the jail.
fn prepare_server(at: &Located, a: &Start) -> Result<Tmux, ShareError> {
    let p = &at.paths;
    let socket_dir = p.tmux.parent().unwrap_or(&p.dir);
    // Made new for each run: what an earlier run's guests left there (no
    // server or jail of that run is alive: `start` checked) goes first.
    if let Err(e) = crate::files::remove_tree(&p.tmux_guard)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(io("remove", &p.tmux_guard)(e));
    }
    // Closed to others unless direct guests (the pair user) must reach
    // the socket; the guard is never in a jail, so no guest can open it.
    let mode = if a.direct { 0o711 } else { 0o700 };
    for dir in [p.tmux_guard.as_path(), socket_dir] {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            })
            .map_err(io("create", dir))?;
    }
    let record = workspace::record_path(&p.dir);
    let Some(c) = &a.confinement else {
        match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &record)(e));
            }
            _ => {}
        }
        return Ok(Tmux::new(&p.tmux));
    };
    let text = serde_json::to_vec_pretty(c).map_err(|e| ShareError::Record(e.to_string()))?;
    crate::files::write_atomic(&record, &text, 0o644).map_err(io("write", &record))?;
    let tmux = tmux_for(p, Some(c))?;
    let exe = crate::exe::own()?;
    let argv = c.server_argv(&exe, &c.tmux(), &p.tmux);
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ShareError::Jail("empty command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(append_log(p)?);
    // Its own session: neither the server nor what it runs for guests
    // keeps the host's terminal.
    crate::jail::new_session_on_exec(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| ShareError::Jail(e.to_string()))?;
    // What ends the jail, whatever its server is told (see
    // `liveness::end_jail`).
    let jail = liveness::start_time(child.id()).map(|start| Run {
        pid: child.id(),
        start,
    });
    let jail_file = p.dir.join(liveness::JAIL_FILE);
    // A jail that cannot be built can end before it is recorded: its
    // reason is in the log, as for one that ends later.
    let failed = |status: std::process::ExitStatus| {
        let log = std::fs::read_to_string(&p.log).unwrap_or_else(|e| e.to_string());
        ShareError::Jail(format!("{} ({status})", log.trim()))
    };
    let recorded = match jail {
        Some(run) => liveness::write_pid_file(&jail_file, &run).map_err(io("write", &jail_file)),
        None => Err(match child.try_wait() {
            Ok(Some(status)) => failed(status),
            _ => ShareError::Jail(format!(
                "its jail (process {}) could not be recorded",
                child.id()
            )),
        }),
    };
    if let Err(e) = recorded {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    // Ready when the server answers on its socket; a jail that could not
    // be built exits with its reason in the log.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(status));
        }
        if p.tmux.exists() && tmux.answers() {
            return Ok(tmux);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(ShareError::Jail(format!(
                "its tmux server did not answer on {} within 20 s",
                p.tmux.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `start`'s line to its broker, open while `start` sets the share up
/// (its invites, the tunnel). Dropped without [`go`](Starting::go) (the
/// host pressed Ctrl-C, or setting up failed), the broker ends the share:
/// nobody was told it runs.
struct Starting {
    line: std::process::ChildStdin,
}

impl Starting {
    /// The share is set up: the broker serves on once `start` is gone.
    fn go(mut self, p: &SessionPaths) -> Result<(), ShareError> {
        writeln!(self.line, "go").map_err(|e| {
            let why = std::fs::read_to_string(&p.log).unwrap_or_else(|_| e.to_string());
            ShareError::Broker(why.trim().to_string())
        })
    }
}

/// Starts the broker daemon in a session of its own (no controlling
/// terminal), its log at `p.log`, and waits for its `ready` line.
fn launch_broker(p: &SessionPaths, launch: &Launch) -> Result<Starting, ShareError> {
    let exe = crate::exe::own()?;
    let log = append_log(p)?;
    let mut cmd = Command::new(exe);
    // Not the workspace: nothing the broker runs is looked up there.
    cmd.current_dir("/")
        .arg("__broker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log);
    // What the broker runs (the tunnel's ssh, pairjail's own jails) is
    // never found in the workspace of a jailed share.
    // Nor does a library the dynamic loader would take from there.
    if let Some(c) = &launch.confinement {
        cmd.env_remove("LD_PRELOAD")
            .env_remove("LD_AUDIT")
            .env_remove("LD_LIBRARY_PATH");
        // Nor a file any other variable names there (OPENSSL_CONF,
        // GCONV_PATH, SSH_ASKPASS, …); PATH keeps its other directories.
        for name in crate::exe::env_naming(&c.workspace) {
            cmd.env_remove(name);
        }
        cmd.env("PATH", crate::exe::path_outside(&c.workspace));
    }
    crate::jail::new_session_on_exec(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| ShareError::Broker(e.to_string()))?;
    // One line (serde_json writes no newline).
    let mut config = serde_json::to_vec(launch).map_err(|e| ShareError::Broker(e.to_string()))?;
    config.push(b'\n');
    let mut line = child
        .stdin
        .take()
        .ok_or_else(|| ShareError::Broker("no line to the broker".into()))?;
    let _ = line.write_all(&config);
    let mut ready = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut ready);
    }
    if ready.trim() != "ready" {
        let why = std::fs::read_to_string(&p.log).unwrap_or_else(|e| e.to_string());
        return Err(ShareError::Broker(why.trim().to_string()));
    }
    Ok(Starting { line })
}

/// Attaches the caller's terminal to the session; returns whether the
/// session is still running afterwards (the host only detached).
pub fn attach(at: &Located) -> Result<bool, ShareError> {
    // A tmux client obeys its server: only the host's own socket, in the
    // host's own directory, is ever given one.
    if std::fs::symlink_metadata(&at.paths.tmux).is_err() {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    own_session_dir(at)?;
    own_entry(&at.paths.tmux, Kind::Socket)?;
    let tmux = at.tmux()?;
    // Whether a jailed session is shared, its broker says: its tmux server
    // is the guests' to make answer what they like.
    let shared = if tmux.is_jailed() {
        broker_answers(&at.paths.control)
    } else {
        tmux.has_session(&at.session)
    };
    if !shared {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    // The share's server is not the one $TMUX names: attaching to it from
    // inside another tmux is nesting, which tmux refuses while $TMUX is set.
    let mut client = tmux.command();
    client
        .env_remove("TMUX")
        .args(["attach-session", "-t", &format!("={}", at.session)]);
    // Guests command a jailed session's server, which writes to the
    // host's terminal: the host's client gets only what guests get.
    let on_terminal = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let status = match (tmux.is_jailed(), on_terminal) {
        (true, true) => match super::host_client::run(client)? {
            Some(status) => status,
            // The host left with Enter ~ . : the share goes on.
            None => return Ok(broker_runs_on(&at.paths.control)),
        },
        (true, false) => return Err(ShareError::NoTerminal(at.session.clone())),
        (false, _) => client.status().map_err(TmuxError::Run)?,
    };
    let running = if tmux.is_jailed() {
        broker_runs_on(&at.paths.control)
    } else {
        tmux.has_session(&at.session)
    };
    // 128 + SIGSYS from `pairjail exec`: the client jail stopped the
    // client when it tried to start a program, which only a
    // `detach-client -E` or `lock-client` from inside the session asks.
    if tmux.is_jailed() && status.code() == Some(128 + libc::SIGSYS) {
        return Err(ShareError::ClientStopped(at.session.clone()));
    }
    if !status.success() && running {
        return Err(TmuxError::Failed {
            command: "attach-session".into(),
            stderr: format!("exited with {status}"),
        }
        .into());
    }
    Ok(running)
}

/// After the host's client of a jailed session ended: does the share go
/// on? Its broker says, never its tmux server, where a guest can make
/// `has-session` answer what it likes (and so have the host told the
/// share is over while guests stay). A session that ended takes its
/// broker a moment to notice: it is given `BROKER_NOTICES`.
fn broker_runs_on(control: &Path) -> bool {
    let deadline = Instant::now() + BROKER_NOTICES;
    loop {
        if !broker_answers(control) {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does the share's broker answer that it runs (not that it is ending)?
fn broker_answers(control: &Path) -> bool {
    matches!(ask(control, Msg::Status), Some(Msg::StatusReply { .. }))
}

/// How long a broker may take to see its session end.
const BROKER_NOTICES: Duration = Duration::from_millis(500);

/// Started from inside tmux: the share opens in a new window of the tmux
/// the host is in (running `attach`), instead of nesting a client in the
/// current pane. Returns the window's name.
pub fn open_in_current_tmux(
    at: &Located,
    runtime_dir: Option<&Path>,
) -> Result<String, ShareError> {
    let bin = crate::exe::own().map_err(|e| ShareError::Runtime(e.to_string()))?;
    let name = format!("pairjail-{}", at.session);
    let mut argv = vec![
        bin.display().to_string(),
        "attach".into(),
        "--session".into(),
        at.session.clone(),
    ];
    if let Some(d) = runtime_dir {
        argv.push("--runtime-dir".into());
        argv.push(d.display().to_string());
    }
    // The host's own tmux, never one from the workspace of a jailed share.
    let tmux = match workspace::read_record(&at.paths.dir).map_err(ShareError::Record)? {
        Some(c) => c.tmux(),
        None => crate::exe::program("tmux"),
    };
    let out = std::process::Command::new(tmux)
        .args(["new-window", "-n", &name, "--"])
        .args(&argv)
        .output()
        .map_err(TmuxError::Run)?;
    if !out.status.success() {
        return Err(TmuxError::Failed {
            command: "new-window".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
        .into());
    }
    Ok(name)
}

/// How a `stop` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The broker disconnected every guest, ended tmux and removed the
    /// run's invites and files.
    Ended,
    /// No broker was running: one had died (a crash, `kill -9`, the OOM
    /// killer), and `stop` ended what it left, as the broker would have.
    Leftovers {
        /// The dead broker's pid, from its pid file.
        pid: Option<u32>,
        /// Its tmux server was still running (and was ended).
        server: bool,
        /// Invites of the dead run (and of any other dead run) removed.
        invites: usize,
    },
}

/// Stops the share: the broker disconnects every guest and ends tmux. If
/// its broker had died, ends what the broker left behind instead.
pub fn stop(at: &Located) -> Result<Stopped, ShareError> {
    let p = &at.paths;
    if let Some(stopped) = stop_running(at)? {
        return Ok(stopped);
    }
    // A dead run leaves its directory (sockets, pid file): without one
    // there is nothing to end, and no lock file is made for a typo.
    if std::fs::symlink_metadata(&p.dir).is_err() {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    own_session_dir(at)?;
    // A `start` holds this until its broker is ready: then the session is
    // stopped as usual, never mistaken for a dead run's leftovers.
    let _starting = run_lock::wait_hold(&p.start_lock, STARTING)?
        .ok_or_else(|| ShareError::Starting(at.session.clone()))?;
    if let Some(stopped) = stop_running(at)? {
        return Ok(stopped);
    }
    // Every broker holds the run lock until its last file is gone: one
    // still holding it is ending, or alive and not answering.
    let Some(_run) = run_lock::try_hold(&p.lock)? else {
        let uid = nix::unistd::Uid::effective().as_raw();
        return Err(match liveness::live_run(&p.dir, uid) {
            Some(alive) => ShareError::Unresponsive(at.session.clone(), alive.pid, p.log.clone()),
            None => ShareError::StillEnding(at.session.clone(), p.log.clone()),
        });
    };
    end_leftovers(at)
}

/// The host's directory and the session's are the caller's own: another
/// local user may have made `<runtime>/<host>` first (a shared runtime is
/// 1777), and a tmux client obeys whatever server its socket leads to.
fn own_session_dir(at: &Located) -> Result<(), ShareError> {
    paths::check_host_dir(&at.runtime, &at.host).map_err(ShareError::Runtime)?;
    own_entry(&at.paths.dir, Kind::Dir)
}

enum Kind {
    Dir,
    Socket,
}

/// `path` is a `kind` (never a link) owned by the caller.
fn own_entry(path: &Path, kind: Kind) -> Result<(), ShareError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).map_err(io("inspect", path))?;
    let right = match kind {
        Kind::Dir => meta.is_dir(),
        Kind::Socket => meta.file_type().is_socket(),
    };
    if !right || meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return Err(ShareError::Runtime(format!(
            "{} is not yours (or not what a share makes); refusing to use it",
            path.display()
        )));
    }
    Ok(())
}

/// Waits up to `d` for nothing to listen on `socket`; true if nothing does.
fn unheard_within(socket: &Path, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    while listener::probe(socket).is_listening() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The tmux server to kill when it does not answer: the one `start`
/// recorded, while a process with its pid, start time and owner runs,
/// else the one the kernel named as listening (the record is what still
/// names it once a stopped server's backlog is full and the kernel no
/// longer can); either only if it is our own tmux.
fn stuck_server(dir: &Path, peer: Listener) -> Option<i32> {
    let uid = nix::unistd::Uid::effective().as_raw();
    if let Some(run) = liveness::recorded_server(dir, uid).filter(|r| r.is_alive(uid)) {
        let pid = i32::try_from(run.pid).ok()?;
        return is_own_tmux(pid, uid).then_some(pid);
    }
    match peer {
        Listener::Peer { pid, uid } if is_own_tmux(pid, uid) => Some(pid),
        _ => None,
    }
}

/// Records the session's tmux server (pid, start time) for a `stop` after
/// a crash. Its pid as this pid namespace sees it comes from the kernel
/// (tmux's own `#{pid}` is the one inside a confined session's jail).
/// Nothing is recorded when the kernel does not name it: `stop` then asks
/// the kernel itself, as before.
fn record_server(p: &SessionPaths) -> Result<(), ShareError> {
    let uid = nix::unistd::Uid::effective().as_raw();
    let Listener::Peer { pid, uid: owner } = listener::probe(&p.tmux) else {
        return Ok(());
    };
    let (Ok(pid), true) = (u32::try_from(pid), owner == uid) else {
        return Ok(());
    };
    let Some(start) = liveness::start_time(pid) else {
        return Ok(());
    };
    let run = Run { pid, start };
    let file = p.dir.join(liveness::SERVER_FILE);
    liveness::write_pid_file(&file, &run).map_err(io("write", &file))
}

/// Is `pid` one of our own tmux processes? (What is killed when a dead
/// broker's server does not answer: never another user's process, never
/// one that is not tmux.)
fn is_own_tmux(pid: i32, uid: u32) -> bool {
    uid == nix::unistd::Uid::effective().as_raw()
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("tmux"))
}

/// Asks a running broker to stop and waits for its run to be over; None
/// when no broker answers.
fn stop_running(at: &Located) -> Result<Option<Stopped>, ShareError> {
    let p = &at.paths;
    if !matches!(ask(&p.control, Msg::Stop), Some(Msg::Stopping)) {
        return Ok(None);
    }
    // Done when the run is over: its broker has removed its invites and
    // files and let go of the run's lock. Nothing is removed here: a new
    // run may already be starting, and its files are not the old run's.
    match run_lock::wait_hold(&p.lock, ENDING)? {
        Some(_free) => Ok(Some(Stopped::Ended)),
        None => Err(ShareError::StopUnfinished(
            at.session.clone(),
            p.log.clone(),
        )),
    }
}

/// What a dead broker left: its tmux server (the host's session, which
/// guests with a grant could still reach), its sockets and pid file, and
/// its run's invites (refused already, since the run is dead, but listed
/// and in authorized_keys). The caller holds the start and run locks.
fn end_leftovers(at: &Located) -> Result<Stopped, ShareError> {
    let p = &at.paths;
    let uid = nix::unistd::Uid::effective().as_raw();
    let run = liveness::recorded_run(&p.dir, uid);
    if let Some(alive) = run.filter(|r| r.is_alive(uid)) {
        return Err(ShareError::Unresponsive(
            at.session.clone(),
            alive.pid,
            p.log.clone(),
        ));
    }
    // A jailed session's jail goes first, with everything in it, before
    // anything there is looked at: its guests could otherwise still
    // change what `stop` reads (the socket the jail can write).
    let jail = liveness::live_jail(&p.dir, uid);
    if let Some(j) = jail
        && !liveness::end_jail(&p.dir, uid, liveness::JAIL_WAIT)
    {
        return Err(ShareError::Runtime(format!(
            "the dead broker's jail (process {0}) did not end when killed; check it with `ps -p {0} -o pid,stat,cmd`, then run stop again",
            j.pid
        )));
    }
    // Any server on the socket, whatever its sessions are called now (a
    // renamed session, a rogue guest's grouped one): only a socket of our
    // own is ever given to a tmux client.
    let peer = match std::fs::symlink_metadata(&p.tmux) {
        // A link a jailed session's guest put there (the socket's
        // directory is the jail's to write): no server of ours is behind
        // it, and it goes with the session's directory, never followed.
        Ok(m) if m.file_type().is_symlink() => Listener::Nobody,
        Ok(_) => {
            own_entry(&p.tmux, Kind::Socket)?;
            listener::probe(&p.tmux)
        }
        Err(_) => Listener::Nobody,
    };
    let server = peer.is_listening();
    let sockets = p.broker.exists() || p.control.exists();
    if run.is_none() && jail.is_none() && !server && !sockets {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    if server {
        at.tmux()?.kill_server();
        // A server that does not answer (stopped, stuck) is killed: it is
        // the host's own tmux, on the host's own socket. Its socket goes
        // below, never while it still listens, or its processes would run
        // on with nothing left to reach them.
        let mut ended = unheard_within(&p.tmux, Duration::from_secs(5));
        let stuck = stuck_server(&p.dir, peer);
        if let (false, Some(pid)) = (ended, stuck) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            ended = unheard_within(&p.tmux, Duration::from_secs(5));
        }
        if !ended {
            let who = match (stuck, peer) {
                (Some(pid), _) | (None, Listener::Peer { pid, .. }) => format!("process {pid}"),
                _ => "the process".to_string(),
            };
            return Err(ShareError::Runtime(format!(
                "the dead broker's tmux server on {} did not end; end {who} that listens on it, then run stop again",
                p.tmux.display()
            )));
        }
    }
    let (gone, why) = match run {
        Some(run) => (
            registry::end_run(&at.runtime, &at.host, &at.session, run)?,
            "its session's broker had died",
        ),
        // No pid file to say which run: only invites of dead runs go.
        None => (
            registry::clean(&at.runtime, &at.host, true)?,
            "its session run is over",
        ),
    };
    crate::audit::invites(
        &at.host,
        gone.iter().map(|i| crate::audit::invite_removed(i, why)),
    );
    for socket in [&p.broker, &p.control] {
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", socket)(e));
            }
            _ => {}
        }
    }
    remove_session_dir(p);
    Ok(Stopped::Leftovers {
        pid: run.map(|r| r.pid),
        server,
        invites: gone.len(),
    })
}

/// Ends this run's tmux server: tmux is asked, and a jail is killed with
/// everything it holds (see `liveness::end_jail`).
fn end_server(tmux: &Tmux, p: &SessionPaths) {
    tmux.kill_server();
    let uid = nix::unistd::Uid::effective().as_raw();
    if liveness::end_jail(&p.dir, uid, liveness::JAIL_WAIT) {
        let _ = std::fs::remove_file(p.dir.join(liveness::JAIL_FILE));
    }
}

/// How long `start` and `stop` wait for a run to finish ending: more than
/// the broker's own end may take (its guests 3 s, the recording's last
/// lines 3 s, the audit log's 5 s, a jailed session's jail 5 s).
const ENDING: Duration = Duration::from_secs(20);
/// How long a `start` waits for another `start` of the session (which may
/// wait up to 20 s for its tmux server).
const STARTING: Duration = Duration::from_secs(40);

/// What a share leaves in its directory once its broker and server are
/// gone; the directory itself when nothing else is in it.
fn remove_session_dir(p: &SessionPaths) {
    // A jail that would not end keeps what names it, for `stop`.
    let uid = nix::unistd::Uid::effective().as_raw();
    if !liveness::end_jail(&p.dir, uid, liveness::JAIL_WAIT) {
        return;
    }
    let _ = std::fs::remove_file(&p.tmux);
    let _ = std::fs::remove_file(p.dir.join(liveness::SERVER_FILE));
    let _ = std::fs::remove_file(p.dir.join(liveness::JAIL_FILE));
    // The session's own tmux directories: whatever is in them goes too
    // (a client that started the server under load can leave its
    // `tmux.sock.lock`; a jailed session's guests could write anything
    // there, directories and links included, which are removed, never
    // followed).
    let _ = crate::files::remove_tree(&p.tmux_guard);
    let _ = std::fs::remove_file(workspace::record_path(&p.dir));
    let _ = std::fs::remove_dir(&p.dir);
}

/// An order to a running share's broker; its answer.
fn order(at: &Located, msg: Msg) -> Result<String, ShareError> {
    let p = &at.paths;
    match ask(&p.control, msg) {
        Some(Msg::Done { message }) => Ok(message),
        Some(Msg::Failed { reason }) => Err(ShareError::Refused(reason)),
        // A broker alive and listening that did not answer in time (it
        // drops the order): not "not shared".
        None if is_own_control(&p.control) && listener::probe(&p.control).is_listening() => {
            let uid = nix::unistd::Uid::effective().as_raw();
            Err(match liveness::live_run(&p.dir, uid) {
                Some(run) => ShareError::Unresponsive(at.session.clone(), run.pid, p.log.clone()),
                None => ShareError::NotShared(at.session.clone()),
            })
        }
        _ => Err(ShareError::NotShared(at.session.clone())),
    }
}

/// Disconnects every connection of `guest` now.
pub fn kick(at: &Located, guest: &str, reason: &str) -> Result<String, ShareError> {
    paths::check_name("guest", guest).map_err(ShareError::Name)?;
    let reason = match reason.trim() {
        "" => "the host removed you from the session".to_string(),
        r => format!("the host removed you from the session: {r}"),
    };
    order(
        at,
        Msg::Kick {
            guest: guest.to_string(),
            reason,
        },
    )
}

/// Changes a connected guest's mode.
pub fn set_mode(at: &Located, guest: &str, mode: Mode) -> Result<String, ShareError> {
    paths::check_name("guest", guest).map_err(ShareError::Name)?;
    order(
        at,
        Msg::SetMode {
            guest: guest.to_string(),
            mode,
        },
    )
}

/// Answers a guest waiting at the door.
pub fn answer(
    at: &Located,
    guest: &str,
    admit: Option<Option<Mode>>,
    which: Which,
) -> Result<String, ShareError> {
    paths::check_name("guest", guest).map_err(ShareError::Name)?;
    let guest = guest.to_string();
    order(
        at,
        match admit {
            Some(mode) => Msg::Approve { guest, mode, which },
            None => Msg::Deny { guest, which },
        },
    )
}

/// What [`disconnect`] did.
pub struct Disconnected {
    /// The sessions the guest was disconnected from.
    pub gone: Vec<String>,
    /// Shares it may still be connected to, each with why: its broker did
    /// not answer the kick, or does not answer at all.
    pub unsure: Vec<(String, String)>,
}

/// Disconnects `guest` from `session` (or from every running share of
/// the caller).
pub fn disconnect(
    runtime_dir: Option<&Path>,
    guest: &str,
    session: Option<&str>,
    reason: &str,
) -> Result<Disconnected, ShareError> {
    let kick = || Msg::Kick {
        guest: guest.to_string(),
        reason: reason.to_string(),
    };
    tell_connected(runtime_dir, guest, session, "kick", kick)
}

/// Applies `guest`'s replaced invite for `session` to its connections
/// there: a key or address it no longer lists is disconnected, and its
/// mode and expiry take effect. `gone` lists the sessions that applied it.
pub fn reinvite(
    runtime_dir: Option<&Path>,
    guest: &str,
    session: &str,
) -> Result<Disconnected, ShareError> {
    let order = || Msg::Reinvite {
        guest: guest.to_string(),
    };
    tell_connected(runtime_dir, guest, Some(session), "new invite", order)
}

/// Sends `msg` to the broker of each share `guest` is connected to.
fn tell_connected(
    runtime_dir: Option<&Path>,
    guest: &str,
    session: Option<&str>,
    what: &str,
    msg: impl Fn() -> Msg,
) -> Result<Disconnected, ShareError> {
    let found = survey(runtime_dir, session)?;
    let mut done = Disconnected {
        gone: vec![],
        unsure: found
            .silent
            .iter()
            .filter_map(|e| match e {
                ShareError::Unresponsive(s, ..) => Some((s.clone(), e.to_string())),
                _ => None,
            })
            .collect(),
    };
    for s in found.answered {
        if !s.guests.iter().any(|g| g.name == guest) {
            continue;
        }
        let at = locate(runtime_dir, &s.session)?;
        match ask(&at.paths.control, msg()) {
            Some(Msg::Done { .. }) => done.gone.push(s.session),
            // Refused because the guest left in between: nothing to do.
            Some(Msg::Failed { reason }) if reason.starts_with("no guest named ") => {}
            // Refused for another reason (a broker of an older pairjail
            // that does not know the order): said, never taken as done.
            Some(other) => {
                let why = match other {
                    Msg::Failed { reason } => reason,
                    _ => "an unexpected answer".into(),
                };
                let why = format!("session {}'s broker refused the {what}: {why}", s.session);
                done.unsure.push((s.session, why));
            }
            // Its broker drops an order nobody waits for any more.
            None => {
                let why = format!(
                    "session {}'s broker did not answer the {what} (see `pairjail status`)",
                    s.session
                );
                done.unsure.push((s.session, why));
            }
        }
    }
    Ok(done)
}

/// The calling user's running shares in runtime directories other than
/// the default one: (directory, session names).
pub fn elsewhere() -> Vec<(PathBuf, Vec<String>)> {
    let Ok(chosen) = paths::runtime_dir(None) else {
        return vec![];
    };
    paths::other_defaults(&chosen)
        .into_iter()
        .filter_map(|dir| {
            let names: Vec<String> = sessions(Some(&dir), None)
                .ok()?
                .into_iter()
                .map(|s| s.session)
                .collect();
            (!names.is_empty()).then_some((dir, names))
        })
        .collect()
}

/// Session names worth offering the calling user: running shares and the
/// sessions its invites are for. Nothing on any error (it only completes).
pub fn session_names(runtime_dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = sessions(runtime_dir, None)
        .map(|s| s.into_iter().map(|s| s.session).collect())
        .unwrap_or_default();
    if let Ok((runtime, host)) = paths::mine(runtime_dir)
        && let Ok(book) = crate::keys::invites::Store::new(&runtime, &host).load()
    {
        names.extend(book.invites.into_iter().map(|i| i.session));
    }
    names
}

/// The calling user's running shares (or only `only`), by session name.
pub fn sessions(
    runtime_dir: Option<&Path>,
    only: Option<&str>,
) -> Result<Vec<SessionStatus>, ShareError> {
    Ok(survey(runtime_dir, only)?.answered)
}

/// What asking every share of the calling user found.
pub struct Survey {
    /// The shares whose broker answered.
    pub answered: Vec<SessionStatus>,
    /// Shares whose broker is alive but did not answer (stopped, stuck),
    /// each as the error that says so with its pid and log: their guests
    /// may still be connected, so they are not "not shared".
    pub silent: Vec<ShareError>,
}

/// Asks each of the calling user's shares (or only `only`) for its status.
pub fn survey(runtime_dir: Option<&Path>, only: Option<&str>) -> Result<Survey, ShareError> {
    if let Some(s) = only {
        check_session(s).map_err(ShareError::Name)?;
    }
    let (runtime, host) = paths::mine(runtime_dir).map_err(ShareError::Runtime)?;
    // A directory named on the command line must be there: an empty list
    // would say "nothing is shared" about a typo.
    if runtime_dir.is_some() && !runtime.is_dir() {
        return Err(ShareError::Runtime(format!(
            "--runtime-dir {}: no such directory",
            runtime.display()
        )));
    }
    let mut found = Survey {
        answered: Vec::new(),
        silent: Vec::new(),
    };
    // A host directory someone else made is not ours to read.
    if paths::check_host_dir(&runtime, &host).is_err() {
        return Ok(found);
    }
    let Ok(entries) = std::fs::read_dir(runtime.join(&host)) else {
        return Ok(found);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let uid = nix::unistd::Uid::effective().as_raw();
    for session in names {
        if only.is_some_and(|s| s != session) {
            continue;
        }
        let p = SessionPaths::new(&runtime, &host, &session);
        if let Some(Msg::StatusReply { session }) = ask(&p.control, Msg::Status) {
            found.answered.push(*session);
        } else if let Some(run) = liveness::recorded_run(&p.dir, uid).filter(|r| r.is_alive(uid))
            // Someone listens and did not answer in time: not a broker
            // still starting (no socket yet) or ending (socket removed).
            && listener::probe(&p.control).is_listening()
        {
            found
                .silent
                .push(ShareError::Unresponsive(session, run.pid, p.log));
        } else if liveness::recorded_run(&p.dir, uid)
            .filter(|r| r.is_alive(uid))
            .is_none()
            && left_running(&p, uid)
        {
            // Its broker died and left the server (and a jailed share's
            // jail, with what guests started in it) running: not "no
            // shared sessions", which a read-only hunt saw `status` say
            // while a pair guest's job went on writing the workspace.
            found
                .silent
                .push(ShareError::Leftover(session, paths::flag(runtime_dir)));
        }
    }
    Ok(found)
}

/// Did an earlier run of this session leave its tmux server or jail
/// running? A link in the socket's place is a dead jailed run's too (its
/// guest could write there): never connected to, wherever it leads.
fn left_running(p: &SessionPaths, uid: u32) -> bool {
    liveness::live_jail(&p.dir, uid).is_some()
        || std::fs::symlink_metadata(&p.tmux).is_ok_and(|m| m.file_type().is_symlink())
        || listener::probe(&p.tmux).is_listening()
}

/// The broker daemon: reads its [`Launch`] from `start`'s line (one line
/// of JSON; `start` says `go` on it later), publishes its run, serves until
/// the session ends, then removes the session's invites and files whatever
/// happened.
pub fn serve(mut from_start: impl BufRead + Send + 'static) -> Result<(), ShareError> {
    let mut text = String::new();
    from_start
        .read_line(&mut text)
        .map_err(|e| ShareError::Broker(format!("cannot read the launch config: {e}")))?;
    let a: Launch = serde_json::from_str(&text)
        .map_err(|e| ShareError::Broker(format!("bad launch config: {e}")))?;
    raise_nofile();
    let at = locate(Some(&a.runtime), &a.session)?;
    let p = &at.paths;
    let run = Run::current()?;
    // Held until this run's last file is gone (see run_lock). `start` let
    // go of it just before; a `stop` polling it may hold it for an instant.
    let _run_lock = run_lock::wait_hold(&p.lock, Duration::from_secs(2))?
        .ok_or_else(|| ShareError::StillEnding(a.session.clone(), p.log.clone()))?;
    let cfg = Config {
        run,
        runtime: at.runtime.clone(),
        session: a.session.clone(),
        host: at.host.clone(),
        host_uid: nix::unistd::Uid::effective().as_raw(),
        guest_uids: a.guest_uids,
        allowed: a.allow,
        default_mode: a.default_mode,
        paths: p.clone(),
        direct: a.direct,
        tmux: tmux_for(p, a.confinement.as_ref())?,
        confinement: a.confinement,
        approve: a.approve,
        approve_timeout: Duration::from_secs(a.approve_timeout_secs),
        audit: a.audit.map(|t| crate::audit::Sink {
            path: t.path,
            syslog: t.syslog,
            origin: crate::audit::Origin {
                machine: crate::audit::machine(),
                host: at.host.clone(),
                session: a.session.clone(),
            },
        }),
        record: a.record,
        require_recording: a.require_recording,
        reach: a.reach,
        tunnel: a.tunnel,
    };
    // Liveness for `authorized-keys`, `join` and invites: pid, start time
    // and owner, written atomically.
    let pid_file = p.dir.join("broker.pid");
    liveness::write_pid_file(&pid_file, &run).map_err(io("write", &pid_file))?;
    let audit = cfg.audit.clone();
    // The invites waiting for this session are this run's, and no later one's.
    let result = match registry::bind_run(&at.runtime, &at.host, &a.session, run) {
        Ok(()) => server::run(cfg, Box::new(from_start)).map_err(ShareError::Broker),
        Err(e) => Err(ShareError::Invites(e)),
    };
    // The run's invites end with it, whatever else happens.
    let cleanup = registry::end_run(&at.runtime, &at.host, &a.session, run);
    if let (Ok(gone), Some(t)) = (&cleanup, &audit) {
        for i in gone {
            let (_, event) = crate::audit::invite_removed(i, "the session ended");
            if let Err(e) = t.record(event) {
                crate::audit::syslog::say(&format!("broker: {e}"));
            }
        }
    }
    remove_session_dir(p);
    if let Err(e) = cleanup {
        crate::audit::syslog::say(&format!("broker: cannot remove the session's invites: {e}"));
    }
    result
}
