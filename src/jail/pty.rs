//! Terminals: a program on a pty we own (the broker's tmux clients), window
//! sizes, raw mode, and a flag raised by a signal. Kept here because each
//! needs a line of `unsafe`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{self, SetArg, Termios};

use super::error::JailError;

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows.max(1),
        ws_col: cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Starts `cmd` as the session leader of a new pty of the given size, the
/// pty its controlling terminal. Returns the child and the master side.
pub fn spawn_on_pty(
    cmd: &mut Command,
    cols: u16,
    rows: u16,
) -> Result<(Child, OwnedFd), JailError> {
    let pty =
        openpty(Some(&winsize(cols, rows)), None).map_err(|e| JailError::sys("openpty", e))?;
    let slave = pty.slave;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|e| JailError::msg("dup(pty)", e.to_string()))
    };
    cmd.stdin(dup(&slave)?)
        .stdout(dup(&slave)?)
        .stderr(dup(&slave)?);
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
    let child = cmd
        .spawn()
        .map_err(|e| JailError::msg(format!("spawn {:?}", cmd.get_program()), e.to_string()))?;
    drop(slave);
    Ok((child, pty.master))
}

/// Sets a terminal's window size (the kernel sends SIGWINCH to its group).
pub fn set_size(fd: BorrowedFd, cols: u16, rows: u16) -> Result<(), JailError> {
    let ws = winsize(cols, rows);
    // SAFETY: TIOCSWINSZ reads one struct winsize from a live reference.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(JailError::sys(
            "ioctl(TIOCSWINSZ)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A terminal's window size, if it is one.
pub fn get_size(fd: BorrowedFd) -> Option<(u16, u16)> {
    let mut ws = winsize(0, 0);
    // SAFETY: TIOCGWINSZ writes one struct winsize into a live reference.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Puts a terminal in raw mode; the returned guard restores it.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

/// Installs a SIGWINCH handler that only raises a flag (read with
/// [`take_winch`]); SIGWINCH is then blocked except inside `ppoll`.
pub fn watch_winch() -> Result<nix::sys::signal::SigSet, JailError> {
    use nix::sys::signal::{
        SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
    };
    let action = SigAction::new(
        SigHandler::Handler(on_winch),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGWINCH, &action) }
        .map_err(|e| JailError::sys("sigaction(SIGWINCH)", e))?;
    let mut block = SigSet::empty();
    block.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))
        .map_err(|e| JailError::sys("sigprocmask", e))?;
    old.remove(Signal::SIGWINCH);
    Ok(old)
}

pub fn take_winch() -> bool {
    WINCH.swap(false, Ordering::SeqCst)
}

/// Registers a pty master with the tokio reactor (non-blocking).
pub fn async_master(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open as
    // long as the AsyncFd that owns it.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Past RLIMIT_FSIZE a write should fail with EFBIG (and be cleaned up),
/// not kill the process half-way through a file with SIGXFSZ.
pub fn ignore_file_size_signal() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    let _ = unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) };
}
