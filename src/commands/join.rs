//! `pairjail join`: sshd's forced command for a guest, and `__relay`, the
//! part of it that runs inside the guest-relay jail.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::broker::liveness::{self, Run};
use crate::broker::paths::{self, SessionPaths, check_name, check_user};
use crate::broker::protocol::{Frame, FrameError, Msg, VERSION, read_frame, write_frame};
use crate::jail::{self, pty};
use crate::profile::{self, Mode, SearchPath};

pub struct JoinArgs {
    pub host: String,
    pub session: String,
    pub guest: String,
    pub mode: Option<Mode>,
    pub runtime_dir: Option<PathBuf>,
    /// Default: guest-relay, or guest-direct with `direct`.
    pub profile: Option<String>,
    /// Run the guest's own tmux client (guest-direct) instead of the relay.
    pub direct: bool,
    /// The broker run the guest's invite is bound to.
    pub run: Option<Run>,
}

pub fn join(a: JoinArgs) -> Outcome {
    // SSH_ORIGINAL_COMMAND (what the guest asked ssh to run) is ignored on
    // purpose: a guest gets the session or nothing.
    check_user(&a.host).map_err(Failure::invalid)?;
    check_name("session", &a.session).map_err(Failure::invalid)?;
    check_name("guest", &a.guest).map_err(Failure::invalid)?;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::failed(
            "a terminal is required: connect with `ssh -t`",
        ));
    }
    if a.direct
        && crate::users::by_name(&a.host).map(|u| u.uid)
            == Some(nix::unistd::Uid::effective().as_raw())
    {
        return Err(Failure::failed(
            "the direct transport needs a guest user other than the host (tmux trusts its owner): use pair-user mode or the relay",
        ));
    }
    let default_profile = if a.direct {
        "guest-direct"
    } else {
        "guest-relay"
    };
    let profile_name = a.profile.clone().unwrap_or_else(|| default_profile.into());
    let profile = profile::resolve(&profile_name, &SearchPath::from_env())
        .map_err(Failure::invalid)?
        .profile;
    let runtime = paths::runtime_dir(a.runtime_dir.as_deref()).map_err(Failure::failed)?;
    let p = SessionPaths::new(&runtime, &a.host, &a.session);
    if p.dir.parent().is_some_and(|d| d.exists()) {
        paths::check_host_dir(&runtime, &a.host).map_err(Failure::failed)?;
    }
    let not_sharing = || Failure::failed(format!("{} is not sharing a session right now", a.host));
    // The run the invite was made for must be the one running now: a
    // line left over from a crashed run leads nowhere.
    if let Some(run) = a.run {
        let host_uid = crate::users::by_name(&a.host)
            .map(|u| u.uid)
            .ok_or_else(not_sharing)?;
        if liveness::live_run(&p.dir, host_uid) != Some(run) {
            return Err(not_sharing());
        }
    }
    let mut sock = UnixStream::connect(&p.broker).map_err(|_| not_sharing())?;
    let (cols, rows) = pty::get_size(stdin.as_fd()).unwrap_or((80, 24));
    let source = std::env::var("SSH_CONNECTION").ok().and_then(|c| {
        let mut parts = c.split_whitespace();
        Some(format!("{}:{}", parts.next()?, parts.next()?))
    });
    let hello = Msg::Hello {
        version: VERSION,
        guest: a.guest.clone(),
        mode: a.mode,
        term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
        cols,
        rows,
        source,
        direct: a.direct,
        run: a.run,
    };
    write_frame(&mut sock, &Frame::Msg(hello)).map_err(|_| not_sharing())?;
    let mode = match read_frame(&mut sock) {
        Ok(Frame::Msg(Msg::Welcome { mode, .. })) => mode,
        Ok(Frame::Msg(Msg::Refused { reason })) => return Err(Failure::failed(reason)),
        Err(FrameError::Closed) => return Err(not_sharing()),
        other => {
            return Err(Failure::failed(format!(
                "unexpected answer from the broker: {other:?}"
            )));
        }
    };
    if a.direct {
        return direct(&profile, &p, &a.session, mode, sock);
    }

    // The terminal is set raw outside the jail and restored after it.
    let raw = pty::RawMode::enter(stdin.as_fd());
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find my own binary: {e}")))?;
    let fd = sock.as_raw_fd();
    let cmd = jail::Command {
        program: exe.clone(),
        argv: vec![
            exe.into(),
            "__relay".into(),
            "--fd".into(),
            fd.to_string().into(),
        ],
        pass_fds: vec![fd],
        ..Default::default()
    };
    let result =
        jail::spawn(&profile, &cmd).and_then(|child| child.wait_with(jail::confine_waiter));
    drop(raw);
    drop(sock);
    match result {
        Ok(status) if status.code() == 0 => Ok(ExitCode::SUCCESS),
        Ok(status) => Err(Failure::failed(format!(
            "the relay ended with status {}",
            status.code()
        ))),
        Err(e) => Err(Failure::failed(e)),
    }
}

pub fn relay(fd: i32) -> Outcome {
    if !jail::is_open(fd) {
        return Err(Failure::invalid(format!(
            "__relay: descriptor {fd} is not open"
        )));
    }
    // The descriptor was passed to us for exactly this use and stays open
    // for the life of the process.
    let sock = borrowed(fd);
    Ok(ExitCode::from(crate::relay::run(sock) as u8))
}

fn borrowed(fd: i32) -> BorrowedFd<'static> {
    jail::borrow_passed_fd(fd)
}

/// The direct transport: the guest's own tmux client, in the guest-direct
/// jail, sees the session's tmux socket (bound at /run/tmux.sock) and
/// nothing else. Read-only rests on tmux (`attach -r` here, and the host's
/// `server-access -r`) and on the guest not choosing this command line.
fn direct(
    profile: &crate::profile::Profile,
    p: &SessionPaths,
    session: &str,
    mode: Mode,
    sock: UnixStream,
) -> Outcome {
    let tmux = super::exec::find_program(std::ffi::OsStr::new("tmux"))
        .ok_or_else(|| Failure::failed("tmux is not installed"))?;
    let mut argv: Vec<std::ffi::OsString> =
        ["tmux", "-S", "/run/tmux.sock", "attach-session", "-E"]
            .map(Into::into)
            .to_vec();
    if mode == Mode::Mirror {
        argv.extend(["-r", "-f", "ignore-size,read-only"].map(Into::into));
    }
    argv.extend(["-t".into(), format!("={session}").into()]);
    let mut params = std::collections::BTreeMap::new();
    params.insert("session_socket".to_string(), p.tmux.display().to_string());
    let cmd = jail::Command {
        program: tmux,
        argv,
        params,
        ..Default::default()
    };
    // The broker connection stays here, outside the jail, for `status`.
    let result = jail::spawn(profile, &cmd).and_then(|child| child.wait_with(jail::confine_waiter));
    drop(sock);
    match result {
        Ok(status) if status.code() == 0 => Ok(ExitCode::SUCCESS),
        Ok(status) => Err(Failure::failed(format!(
            "the tmux client ended with status {}",
            status.code()
        ))),
        Err(e) => Err(Failure::failed(e)),
    }
}
