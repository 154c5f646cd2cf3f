//! A guest joining: sshd's forced command checks the invite's run, says
//! hello to the broker, then relays the guest's terminal from inside the
//! guest-relay jail (or runs the guest's own tmux client in guest-direct).

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::broker::liveness::{self, Run};
use crate::broker::paths::{self, SessionPaths, check_name, check_session, check_user};
use crate::broker::protocol::{Frame, FrameError, Limits, Msg, VERSION, read_frame, write_frame};
use crate::jail::{self, JailError};
use crate::profile::{self, Mode, Profile, SearchPath};
use crate::terminal;

/// How the guest reaches the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// The broker relays a tmux client it runs (the default).
    #[default]
    Relay,
    /// The guest's own tmux client, in the guest-direct jail.
    Direct,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Name(String),
    #[error("a terminal is required: connect with `ssh -t`")]
    NoTerminal,
    #[error(
        "the direct transport needs a guest user other than the host (tmux trusts its owner): use pair-user mode or the relay"
    )]
    DirectAsHost,
    #[error("{0}")]
    Profile(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0} is not sharing a session right now")]
    NotSharing(String),
    #[error("{0}")]
    Refused(String),
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error(transparent)]
    Exe(#[from] crate::exe::ExeError),
    #[error("the {what} ended with status {code}")]
    Ended { what: &'static str, code: i32 },
}

impl JoinError {
    /// Bad arguments in the forced command (exit 2) rather than a failure.
    pub fn is_invalid(&self) -> bool {
        matches!(self, JoinError::Name(_) | JoinError::Profile(_))
    }
}

#[derive(Debug, Clone)]
pub struct Join {
    pub host: String,
    pub session: String,
    pub guest: String,
    pub mode: Option<Mode>,
    pub runtime_dir: Option<PathBuf>,
    /// Default: guest-relay, or guest-direct for the direct transport.
    pub profile: Option<String>,
    pub transport: Transport,
    /// The broker run the guest's invite is bound to.
    pub run: Option<Run>,
    /// The fingerprint of the key sshd accepted (from the forced command).
    pub key: Option<String>,
}

/// Runs the whole join; returns when the guest leaves.
pub fn join(a: &Join) -> Result<(), JoinError> {
    // Every guest of every host logs in as the same pair user, and join
    // waits unconfined (at the door, for minutes) before its jail exists.
    // Undumpable from the start, no other process of that uid can ptrace
    // it or read its environment and descriptors (the guest's terminal,
    // the broker's socket) through /proc. Not in no-root mode, where join
    // runs as the host (whose own processes are the host's anyway): the
    // broker reads the user namespace of a peer of its own uid, which
    // needs the flag on, given back once the host is known (the lookup
    // may run getent, and wait for it).
    crate::jail::set_undumpable()?;
    // SSH_ORIGINAL_COMMAND (what the guest asked ssh to run) is ignored on
    // purpose: a guest gets the session or nothing.
    check_user(&a.host).map_err(JoinError::Name)?;
    let host_uid = crate::users::by_name(&a.host).map(|u| u.uid);
    if host_uid == Some(nix::unistd::Uid::effective().as_raw()) {
        crate::jail::set_dumpable()?;
    }
    check_session(&a.session).map_err(JoinError::Name)?;
    check_name("guest", &a.guest).map_err(JoinError::Name)?;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(JoinError::NoTerminal);
    }
    let direct = a.transport == Transport::Direct;
    if direct
        && crate::users::by_name(&a.host).map(|u| u.uid)
            == Some(nix::unistd::Uid::effective().as_raw())
    {
        return Err(JoinError::DirectAsHost);
    }
    let default_profile = if direct {
        "guest-direct"
    } else {
        "guest-relay"
    };
    let profile_name = a.profile.as_deref().unwrap_or(default_profile);
    let search = SearchPath::for_guest().map_err(JoinError::Profile)?;
    let profile =
        profile::load(profile_name, &search).map_err(|e| JoinError::Profile(e.to_string()))?;
    // The profile's [session] rules travel to the broker, which enforces
    // them (it sees every byte and owns the guest's client).
    let limits = Limits {
        allowed_modes: profile.session.allowed_modes.clone(),
        max_duration: profile
            .session
            .max_duration
            .as_ref()
            .map(|d| d.0.as_secs().max(1)),
        idle_timeout: profile
            .session
            .idle_timeout
            .as_ref()
            .map(|d| d.0.as_secs().max(1)),
        require_recording: profile.session.require_recording,
        require_audit_log: profile.session.require_audit_log,
    };
    let runtime =
        paths::runtime_dir_for_guest(a.runtime_dir.as_deref()).map_err(JoinError::Runtime)?;
    let p = SessionPaths::new(&runtime, &a.host, &a.session);
    let not_sharing = || JoinError::NotSharing(a.host.clone());
    let host_uid = crate::users::by_name(&a.host)
        .map(|u| u.uid)
        .ok_or_else(not_sharing)?;
    // Everything on the way to the broker's socket is checked, and stays
    // as checked: nobody but root and the host can change it.
    match std::fs::symlink_metadata(&runtime) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_sharing()),
        _ => paths::check_guest_runtime(&runtime, host_uid).map_err(JoinError::Runtime)?,
    }
    // The mount table first: a look at a local user's filesystem mounted
    // there could hang.
    if let Some(host_dir) = p.dir.parent() {
        crate::mountinfo::refuse(host_dir).map_err(|e| JoinError::Runtime(e.to_string()))?;
    }
    match p.dir.parent().map(std::fs::symlink_metadata) {
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_sharing()),
        _ => paths::check_host_dir(&runtime, &a.host).map_err(JoinError::Runtime)?,
    }
    // The run the invite was made for must be the one running now: a
    // line left over from a crashed run leads nowhere.
    if let Some(run) = a.run
        && liveness::live_run(&p.dir, host_uid) != Some(run)
    {
        return Err(not_sharing());
    }
    let mut sock = UnixStream::connect(&p.broker).map_err(|_| not_sharing())?;
    let (cols, rows) = terminal::get_size(stdin.as_fd()).unwrap_or((80, 24));
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
        direct,
        run: a.run,
        key: a.key.clone(),
        limits,
    };
    write_frame(&mut sock, &Frame::Msg(hello)).map_err(|_| not_sharing())?;
    let (mode, recorded) = loop {
        match read_frame(&mut sock) {
            Ok(Frame::Msg(Msg::Welcome { mode, recorded, .. })) => break (mode, recorded),
            Ok(Frame::Msg(Msg::Waiting { text })) => say(&text),
            Ok(Frame::Msg(Msg::Refused { reason })) => {
                return Err(JoinError::Refused(terminal::printable(&reason)));
            }
            Err(FrameError::Closed) => return Err(not_sharing()),
            other => return Err(JoinError::Protocol(format!("{other:?}"))),
        }
    };
    if direct {
        // Once the broker let the guest in (the socket is open to it only
        // then); pinned until the jail binds it.
        let socket = hosts_socket(&runtime, &a.host, &p)?;
        say(&banner(&a.host, &a.session, mode, recorded));
        return own_client(&profile, &p, socket, &a.session, mode, sock);
    }
    say(&banner(&a.host, &a.session, mode, recorded));

    // The terminal is set raw outside the jail and restored after it.
    let raw = terminal::RawMode::enter(stdin.as_fd());
    // The relay is this binary's own code, called in the jail without an
    // exec (see jail::Program::Function).
    let cmd = jail::Command {
        pass_fds: vec![sock.as_raw_fd()],
        ..jail::Command::new(jail::Program::Function {
            name: c"pairjail-relay",
            args: vec![],
            run: relay,
        })
    };
    let result =
        jail::spawn(&profile, &cmd).and_then(|child| child.wait_with(jail::confine_waiter));
    // Whatever ended the relay (a kill, a crash), the guest's terminal
    // gets its modes back; the relay already cleared the screen when it
    // could.
    terminal::restore_screen(std::io::stdout().as_fd(), false);
    drop(raw);
    drop(sock);
    match result?.code() {
        0 => Ok(()),
        code => Err(JoinError::Ended {
            what: "relay",
            code,
        }),
    }
}

/// One line for the guest, before or after the session.
/// A line to the guest; what the broker said is shown, never obeyed.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = write!(out, "[pairjail] {}\r\n", terminal::printable(text));
    let _ = out.flush();
}

/// The banner a guest sees on joining.
pub fn banner(host: &str, session: &str, mode: Mode, recorded: bool) -> String {
    let what = match mode {
        Mode::Mirror => "you watch; what you type goes nowhere",
        Mode::Pair => "you type in the host's session",
        Mode::Rogue => "you get your own window in the host's session",
    };
    let recorded = if recorded {
        " This session is recorded (the screen, and what you type)."
    } else {
        ""
    };
    format!(
        "{host}'s session \"{session}\": you are {mode} ({what}).{recorded} To leave: detach (prefix, then d) or type Enter ~ ."
    )
}

/// The relay, inside the jail: copies between the terminal and the broker
/// socket it was given (the one passed descriptor). Returns the exit code.
fn relay(fds: &[BorrowedFd], _: &[String]) -> i32 {
    let [sock] = fds else {
        return 2;
    };
    jail::release_free_heap();
    crate::relay::run(*sock)
}

/// The session's tmux socket, reached from the runtime directory through
/// no link, it and every directory on the way the host's own. Every host's
/// direct guests are the one pair user, whom a direct share lets attach: a
/// host's link to another host's session would lead a guest there, past
/// the other host's broker.
fn hosts_socket(
    runtime: &std::path::Path,
    host: &str,
    p: &SessionPaths,
) -> Result<jail::FileId, JoinError> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode as Perm, SFlag, fstat};
    let uid = crate::users::by_name(host)
        .map(|u| u.uid)
        .ok_or_else(|| JoinError::NotSharing(host.to_string()))?;
    let refuse = || {
        JoinError::Runtime(format!(
            "{} is not {host}'s own socket (a link, or someone else's); refusing to attach there",
            p.tmux.display()
        ))
    };
    let rel = p.tmux.strip_prefix(runtime).map_err(|_| refuse())?;
    let mut at = nix::fcntl::open(
        runtime,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Perm::empty(),
    )
    .map_err(|_| JoinError::NotSharing(host.to_string()))?;
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if !last {
            flags |= OFlag::O_DIRECTORY;
        }
        let fd = openat(&at, part.as_os_str(), flags, Perm::empty()).map_err(|_| refuse())?;
        let st = fstat(&fd).map_err(|_| refuse())?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let want = if last {
            SFlag::S_IFSOCK
        } else {
            SFlag::S_IFDIR
        };
        if kind != want || st.st_uid != uid {
            return Err(refuse());
        }
        if last {
            return Ok(jail::FileId {
                dev: st.st_dev,
                ino: st.st_ino,
            });
        }
        at = fd;
    }
    Err(refuse())
}

/// The direct transport: the guest's own tmux client, in the guest-direct
/// jail, sees the session's tmux socket (bound at /run/tmux.sock) and
/// nothing else. Read-only rests on tmux (`attach -r` here, and the host's
/// `server-access -r`) and on the guest not choosing this command line.
fn own_client(
    profile: &Profile,
    p: &SessionPaths,
    socket: jail::FileId,
    session: &str,
    mode: Mode,
    sock: UnixStream,
) -> Result<(), JoinError> {
    let tmux = crate::exe::find_program(std::ffi::OsStr::new("tmux"))?;
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
        params,
        pins: vec![(p.tmux.clone(), socket)],
        ..jail::Command::new(jail::Program::File { path: tmux, argv })
    };
    // The broker connection stays here, outside the jail: it keeps the
    // guest in `status`, and when the broker says goodbye (kick, revoke,
    // expiry, the end) the guest's client is ended here.
    let child = jail::spawn(profile, &cmd)?;
    let pid = child.pid();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reason = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let mut listen = sock
        .try_clone()
        .map_err(|e| JoinError::Protocol(format!("cannot watch the broker connection: {e}")))?;
    let (f, r) = (finished.clone(), reason.clone());
    std::thread::spawn(move || {
        let bye = match read_frame(&mut listen) {
            Ok(Frame::Msg(Msg::Bye { reason })) => reason,
            _ => "disconnected".to_string(),
        };
        if !f.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(mut r) = r.lock() {
                *r = Some(bye);
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let result = child.wait_with(jail::confine_waiter);
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = sock.shutdown(std::net::Shutdown::Both);
    if let Some(why) = reason.lock().ok().and_then(|mut r| r.take()) {
        terminal::restore_screen(std::io::stdout().as_fd(), true);
        say(&why);
        return Ok(());
    }
    match result?.code() {
        0 => Ok(()),
        code => Err(JoinError::Ended {
            what: "tmux client",
            code,
        }),
    }
}
