//! A share's life from the host's side: start (directories, the dedicated
//! tmux server, the broker daemon, the guest book), attach, stop, list;
//! and the broker daemon's own start and end ([`serve`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::liveness::{self, Run};
use super::paths::{self, SessionPaths, check_session};
use super::protocol::{Frame, Msg, SessionStatus, read_frame, write_frame};
use super::server::{self, Config};
use super::tmux::{Tmux, TmuxError};
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
    #[error("--default-mode {0} is not in --allow")]
    DefaultMode(Mode),
    #[error(
        "session {0} is already shared: `pairjail attach --session {0}` or `pairjail stop --session {0}`"
    )]
    AlreadyShared(String),
    #[error("no session {0} is being shared")]
    NotShared(String),
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
            | ShareError::Book(_) => true,
            ShareError::Request(e) => e.is_invalid(),
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
    pub fn tmux(&self) -> Tmux {
        Tmux::new(&self.paths.tmux)
    }
}

/// One question to a running broker over its control socket.
fn ask(control: &Path, msg: Msg) -> Option<Msg> {
    let mut s = UnixStream::connect(control).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write_frame(&mut s, &Frame::Msg(msg)).ok()?;
    match read_frame(&mut s) {
        Ok(Frame::Msg(m)) => Some(m),
        _ => None,
    }
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
}

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
}

/// Starts a share and returns once its broker is ready.
pub fn start(at: &Located, a: &Start) -> Result<(), ShareError> {
    if nix::unistd::Uid::effective().is_root() {
        return Err(ShareError::Root);
    }
    if !a.allow.contains(&a.default_mode) {
        return Err(ShareError::DefaultMode(a.default_mode));
    }
    let p = &at.paths;
    if ask(&p.control, Msg::Status).is_some() {
        return Err(ShareError::AlreadyShared(a.session.clone()));
    }
    let mut guest_users = a.guest_users.clone();
    if guest_users.is_empty() && crate::users::by_name("pair").is_some() {
        guest_users.push("pair".into());
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
    let book_path = book::path_in(&a.home);
    let requests = book::requests(&book_path, &a.invite, &a.session, a.default_mode)?;

    // <runtime>/<host>/<session>, each 0711: guests can reach the socket
    // whose name they know, but list nothing.
    for d in [p.dir.parent().unwrap_or(&p.dir), p.dir.as_path()] {
        crate::files::dir_711(d).map_err(io("create", d))?;
    }
    paths::check_host_dir(&at.runtime, &at.host).map_err(ShareError::Runtime)?;
    // Invites and managed-block lines of sessions that died (a crash) go now.
    registry::clean(&at.runtime, &at.host, true)?;
    let tmux = at.tmux();
    if !tmux.has_session(&a.session) {
        tmux.start(&a.session, &a.command, a.allow.contains(&Mode::Rogue))?;
    }
    if a.direct {
        let host_uid = nix::unistd::Uid::effective().as_raw();
        if guest_users.is_empty() || guest_uids.contains(&host_uid) {
            tmux.kill_server();
            return Err(ShareError::DirectNeedsGuestUser);
        }
        let read_only = !a.allow.contains(&Mode::Pair);
        for u in &guest_users {
            if let Err(e) = tmux.grant(u, read_only) {
                tmux.kill_server();
                return Err(e.into());
            }
        }
    }
    let launch = Launch {
        session: a.session.clone(),
        runtime: at.runtime.clone(),
        allow: a.allow.clone(),
        default_mode: a.default_mode,
        guest_uids,
        direct: a.direct,
    };
    if let Err(e) = launch_broker(p, &launch) {
        tmux.kill_server();
        return Err(e);
    }
    for r in requests {
        let invited = r
            .into_invite(crate::clock::now(), registry::pair_user_mode())
            .map_err(ShareError::from)
            .and_then(|(inv, _)| Ok(registry::add(&at.runtime, &at.host, inv)?));
        if let Err(e) = invited {
            let _ = ask(&p.control, Msg::Stop);
            return Err(e);
        }
    }
    Ok(())
}

/// Starts the broker daemon in its own process group, its log at
/// `p.log`, and waits for its `ready` line.
fn launch_broker(p: &SessionPaths, launch: &Launch) -> Result<(), ShareError> {
    let exe = crate::exe::own()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&p.log)
        .map_err(io("create", &p.log))?;
    let mut child = Command::new(exe)
        .arg("__broker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| ShareError::Broker(e.to_string()))?;
    let config = serde_json::to_vec(launch).map_err(|e| ShareError::Broker(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Dropped at the end of this block: the broker reads to EOF.
        let _ = stdin.write_all(&config);
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let why = std::fs::read_to_string(&p.log).unwrap_or_else(|e| e.to_string());
        return Err(ShareError::Broker(why.trim().to_string()));
    }
    Ok(())
}

/// Attaches the caller's terminal to the session; returns whether the
/// session is still running afterwards (the host only detached).
pub fn attach(at: &Located) -> Result<bool, ShareError> {
    let tmux = at.tmux();
    if !tmux.has_session(&at.session) {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    let status = tmux
        .command()
        .args(["attach-session", "-t", &format!("={}", at.session)])
        .status()
        .map_err(TmuxError::Run)?;
    let running = tmux.has_session(&at.session);
    if !status.success() && running {
        return Err(TmuxError::Failed {
            command: "attach-session".into(),
            stderr: format!("exited with {status}"),
        }
        .into());
    }
    Ok(running)
}

/// Stops the share: the broker disconnects every guest and ends tmux.
pub fn stop(at: &Located) -> Result<(), ShareError> {
    let p = &at.paths;
    if !matches!(ask(&p.control, Msg::Stop), Some(Msg::Stopping)) {
        return Err(ShareError::NotShared(at.session.clone()));
    }
    // The broker removes its sockets on the way out.
    let deadline = Instant::now() + Duration::from_secs(3);
    while p.control.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(&p.dir);
    Ok(())
}

/// The calling user's running shares, by session name.
pub fn sessions(runtime_dir: Option<&Path>) -> Result<Vec<SessionStatus>, ShareError> {
    let (runtime, host) = paths::mine(runtime_dir).map_err(ShareError::Runtime)?;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(runtime.join(&host)) else {
        return Ok(found);
    };
    let mut dirs: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        if let Some(Msg::StatusReply { session }) = ask(&d.join("control.sock"), Msg::Status) {
            found.push(session);
        }
    }
    Ok(found)
}

/// The broker daemon: reads its [`Launch`] from stdin, publishes its run,
/// serves until the session ends, then removes the session's invites and
/// files whatever happened.
pub fn serve(config: &mut impl std::io::Read) -> Result<(), ShareError> {
    let mut text = Vec::new();
    config
        .read_to_end(&mut text)
        .map_err(|e| ShareError::Broker(format!("cannot read the launch config: {e}")))?;
    let a: Launch = serde_json::from_slice(&text)
        .map_err(|e| ShareError::Broker(format!("bad launch config: {e}")))?;
    let at = locate(Some(&a.runtime), &a.session)?;
    let p = &at.paths;
    let run = Run::current()?;
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
    };
    // Liveness for `authorized-keys`, `join` and invites: pid, start time
    // and owner, written atomically.
    let pid_file = p.dir.join("broker.pid");
    crate::files::write_atomic(&pid_file, liveness::pid_file_text(&run).as_bytes(), 0o644)
        .map_err(io("write", &pid_file))?;
    // The invites waiting for this session are this run's, and no later one's.
    let result = match registry::bind_run(&at.runtime, &at.host, &a.session, run) {
        Ok(()) => server::run(cfg).map_err(ShareError::Broker),
        Err(e) => Err(ShareError::Invites(e)),
    };
    // The session's invites end with it, whatever else happens.
    let cleanup = registry::end_session(&at.runtime, &at.host, &a.session);
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_dir(&p.dir);
    if let Err(e) = cleanup {
        eprintln!("broker: cannot remove the session's invites: {e}");
    }
    result
}
