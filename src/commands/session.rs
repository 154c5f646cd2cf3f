//! `start`, `stop`, `status`, `attach` and the broker daemon.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::{Failure, Outcome};
use crate::broker::liveness::{self, Run};
use crate::broker::paths::{self, SessionPaths, check_name};
use crate::broker::protocol::{Frame, Msg, SessionStatus, read_frame, write_frame};
use crate::broker::server::{self, Config};
use crate::broker::tmux::Tmux;
use crate::keys::registry;
use crate::profile::Mode;

pub struct StartArgs {
    pub direct: bool,
    pub invite: Vec<String>,
    pub session: String,
    pub allow: Vec<Mode>,
    pub default_mode: Mode,
    pub detach: bool,
    pub runtime_dir: Option<PathBuf>,
    pub guest_users: Vec<String>,
    pub command: Vec<String>,
}

fn session_paths(
    runtime_dir: Option<&Path>,
    session: &str,
) -> Result<(PathBuf, String, SessionPaths), Failure> {
    check_name("session", session).map_err(Failure::invalid)?;
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let p = SessionPaths::new(&runtime, &host, session);
    Ok((runtime, host, p))
}

fn ask(control: &Path, msg: Msg) -> Option<Msg> {
    let mut s = UnixStream::connect(control).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write_frame(&mut s, &Frame::Msg(msg)).ok()?;
    match read_frame(&mut s) {
        Ok(Frame::Msg(m)) => Some(m),
        _ => None,
    }
}

fn uid_of(user: &str) -> Result<u32, Failure> {
    crate::users::by_name(user)
        .map(|u| u.uid)
        .ok_or_else(|| Failure::invalid(format!("--guest-user {user}: no such user")))
}

pub fn start(a: StartArgs) -> Outcome {
    if nix::unistd::Uid::effective().is_root() {
        return Err(Failure::invalid(
            "start: refusing to share a session as root; run it as the user whose session it is",
        ));
    }
    let (runtime, _host, p) = session_paths(a.runtime_dir.as_deref(), &a.session)?;
    if !a.allow.contains(&a.default_mode) {
        return Err(Failure::invalid(format!(
            "--default-mode {} is not in --allow",
            a.default_mode
        )));
    }
    if ask(&p.control, Msg::Status).is_some() {
        return Err(Failure::invalid(format!(
            "session {} is already shared: `pairjail attach --session {0}` or `pairjail stop --session {0}`",
            a.session
        )));
    }
    let mut guest_users = a.guest_users.clone();
    if guest_users.is_empty() && crate::users::by_name("pair").is_some() {
        guest_users.push("pair".into());
    }
    let guest_uids = guest_users
        .iter()
        .map(|u| uid_of(u))
        .collect::<Result<Vec<_>, _>>()?;

    // <runtime>/<host>/<session>, each 0711: guests can reach the socket
    // whose name they know, but list nothing.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&p.dir)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", p.dir.display())))?;
    for d in [p.dir.as_path(), p.dir.parent().unwrap_or(&p.dir)] {
        registry::ensure_mode_711(d).map_err(Failure::failed)?;
    }
    paths::check_host_dir(&runtime, &_host).map_err(Failure::failed)?;
    // Invites and managed-block lines of sessions that died (a crash) go now.
    crate::keys::registry::clean(&runtime, &_host, true)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let tmux = Tmux::new(&p.tmux);
    if !tmux.has_session(&a.session) {
        tmux.start(&a.session, &a.command, a.allow.contains(&Mode::Rogue))
            .map_err(Failure::failed)?;
    }
    if a.direct {
        let host_uid = nix::unistd::Uid::effective().as_raw();
        if guest_users.is_empty() || guest_uids.contains(&host_uid) {
            tmux.kill_server();
            return Err(Failure::invalid(
                "--direct needs --guest-user with a user other than you: tmux trusts its owner's uid",
            ));
        }
        let read_only = !a.allow.contains(&Mode::Pair);
        for u in &guest_users {
            if let Err(e) = tmux.grant(u, read_only) {
                tmux.kill_server();
                return Err(Failure::failed(e));
            }
        }
    }

    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find my own binary: {e}")))?;
    let log_path = p.dir.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", log_path.display())))?;
    let mut broker = Command::new(exe);
    broker
        .arg("__broker")
        .arg("--session")
        .arg(&a.session)
        .arg("--runtime-dir")
        .arg(&runtime)
        .arg("--allow")
        .arg(
            a.allow
                .iter()
                .map(Mode::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .arg("--default-mode")
        .arg(a.default_mode.to_string());
    for uid in &guest_uids {
        broker.arg("--guest-uid").arg(uid.to_string());
    }
    if a.direct {
        broker.arg("--direct");
    }
    let mut child = broker
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::failed(format!("cannot start the broker: {e}")))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        tmux.kill_server();
        let why = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(Failure::failed(format!(
            "the broker did not start: {}",
            why.trim()
        )));
    }
    if let Err(e) = super::invite::invite_from_book(&a.invite, &a.session, &runtime, a.default_mode)
    {
        let _ = ask(&p.control, Msg::Stop);
        return Err(e);
    }
    println!(
        "pairjail: sharing session {} (guests join with `ssh -t <guest user>@<this host>`)",
        a.session
    );
    if a.detach {
        println!("  attach: pairjail attach --session {}", a.session);
        println!("  stop:   pairjail stop --session {}", a.session);
        return Ok(ExitCode::SUCCESS);
    }
    attach_to(&tmux, &a.session)?;
    if tmux.has_session(&a.session) {
        println!(
            "pairjail: detached; session {0} is still shared (`pairjail attach --session {0}`, `pairjail stop --session {0}`)",
            a.session
        );
    } else {
        println!(
            "pairjail: session {} ended; every guest was disconnected",
            a.session
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn attach_to(tmux: &Tmux, session: &str) -> Result<(), Failure> {
    let status = tmux
        .command()
        .args(["attach-session", "-t", &format!("={session}")])
        .status()
        .map_err(|e| Failure::failed(format!("cannot run tmux: {e}")))?;
    if !status.success() && tmux.has_session(session) {
        return Err(Failure::failed("tmux attach failed"));
    }
    Ok(())
}

pub fn attach(session: &str, runtime_dir: Option<&Path>) -> Outcome {
    let (_, _, p) = session_paths(runtime_dir, session)?;
    let tmux = Tmux::new(&p.tmux);
    if !tmux.has_session(session) {
        return Err(Failure::failed(format!(
            "no session {session} is being shared"
        )));
    }
    attach_to(&tmux, session)?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(session: &str, runtime_dir: Option<&Path>) -> Outcome {
    let (_, _, p) = session_paths(runtime_dir, session)?;
    match ask(&p.control, Msg::Stop) {
        Some(Msg::Stopping) => {}
        _ => {
            return Err(Failure::failed(format!(
                "no session {session} is being shared"
            )));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while p.control.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(&p.dir);
    println!("pairjail: session {session} stopped");
    Ok(ExitCode::SUCCESS)
}

pub fn status(runtime_dir: Option<&Path>, json: bool) -> Outcome {
    let runtime = paths::runtime_dir(runtime_dir).map_err(Failure::failed)?;
    let host = paths::current_user().map_err(Failure::failed)?;
    let mut sessions: Vec<SessionStatus> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(runtime.join(&host)) {
        let mut dirs: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            if let Some(Msg::StatusReply { session }) = ask(&d.join("control.sock"), Msg::Status) {
                sessions.push(session);
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&sessions).map_err(Failure::failed)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        println!("no shared sessions");
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
        for g in &s.guests {
            println!(
                "  {:<16} {:<7} since {}  from {}",
                g.name,
                g.mode.to_string(),
                since(g.since),
                g.source.as_deref().unwrap_or("local")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub struct BrokerArgs {
    pub session: String,
    pub runtime_dir: PathBuf,
    pub allow: Vec<Mode>,
    pub default_mode: Mode,
    pub guest_uids: Vec<u32>,
    pub direct: bool,
}

pub fn broker(a: BrokerArgs) -> Outcome {
    let (runtime, host, p) = session_paths(Some(&a.runtime_dir), &a.session)?;
    let session = a.session.clone();
    let run = Run::current().map_err(Failure::failed)?;
    let cfg = Config {
        run,
        runtime: runtime.clone(),
        session: a.session,
        host,
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
    let tmp = p.dir.join(".broker.pid.tmp");
    std::fs::write(&tmp, liveness::pid_file_text(&run))
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|_| std::fs::rename(&tmp, &pid_file))
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", pid_file.display())))?;
    // The invites waiting for this session are this run's, and no later one's.
    let bound = registry::bind_run(&runtime, &cfg.host, &session, run);
    let result = match bound {
        Ok(()) => server::run(cfg),
        Err(e) => Err(format!("cannot bind the session's invites: {e}")),
    };
    // The session's invites end with it, whatever else happens.
    let host = paths::current_user().unwrap_or_default();
    let cleanup = registry::end_session(&runtime, &host, &session);
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_dir(&p.dir);
    if let Err(e) = cleanup {
        eprintln!("broker: cannot remove the session's invites: {e}");
    }
    result.map_err(Failure::failed)?;
    Ok(ExitCode::SUCCESS)
}

fn since(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(epoch))
        .to_string()
}
