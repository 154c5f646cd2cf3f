//! The few terminal calls that need `unsafe`, for `crate::terminal` (kept
//! here because all `unsafe` lives under `jail/`). Each is a safe, narrow
//! wrapper: no raw number or pointer crosses it.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::pty::Winsize;

use super::error::JailError;

/// Makes the child started by `cmd` a session leader whose controlling
/// terminal is its stdin (which must be a terminal).
pub fn controlling_terminal_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: runs between fork and exec; setsid and ioctl are
    // async-signal-safe and touch only the child's own state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the child started by `cmd` a session leader with no controlling
/// terminal: a daemon (the broker, a session's tmux server) must not keep
/// the terminal `start` ran in, where whatever it runs (a guest's
/// `run-shell` job) could open `/dev/tty` and read what the host types.
pub fn new_session_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: runs between fork and exec; setsid is async-signal-safe and
    // touches only the child's own state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// TIOCSWINSZ (the kernel signals the terminal's foreground group).
pub fn set_winsize(fd: BorrowedFd, ws: &Winsize) -> Result<(), JailError> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from a live reference.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) } < 0 {
        return Err(JailError::sys(
            "ioctl(TIOCSWINSZ)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// TIOCGWINSZ: None if `fd` is not a terminal.
pub fn get_winsize(fd: BorrowedFd) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize into a live reference.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

/// Installs a SIGWINCH handler that only raises a flag ([`take_winch`]).
/// For a process's main loop (the relay): it is the process's own choice.
pub fn flag_winch() -> Result<(), JailError> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_winch),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGWINCH, &action) }
        .map(|_| ())
        .map_err(|e| JailError::sys("sigaction(SIGWINCH)", e))
}

/// Was SIGWINCH raised since the last call?
pub fn take_winch() -> bool {
    WINCH.swap(false, Ordering::SeqCst)
}

/// Registers a descriptor with the tokio reactor.
pub fn register(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor, and it stays open exactly
    // as long as the AsyncFd that now owns it.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The child started by `cmd` gets SIGTERM when the thread that started it
/// ends (the broker: its helper `ssh` must not outlive the share, even if
/// the broker is killed). If the parent is already gone by the time the
/// child runs, it exits at once.
pub fn die_with_parent_on_exec(cmd: &mut std::process::Command) {
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: runs between fork and exec; prctl and getppid are
    // async-signal-safe and touch only the child's own state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            Ok(())
        });
    }
}
