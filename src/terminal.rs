//! Terminals: a program on a pty we own (the broker's tmux clients),
//! window sizes, raw mode, and window-change signals for the relay.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{self, SetArg, Termios};

use crate::jail::{JailError, tty};

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows.max(1),
        ws_col: cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// `cmd` with a new pty of the given size as its stdio and controlling
/// terminal; returns it and the master side. The copies of the slave live
/// in `cmd` only: drop it once spawned, so the master sees EOF when the
/// program ends.
fn on_new_pty(
    mut cmd: std::process::Command,
    cols: u16,
    rows: u16,
) -> Result<(std::process::Command, OwnedFd), JailError> {
    let pty =
        openpty(Some(&winsize(cols, rows)), None).map_err(|e| JailError::sys("openpty", e))?;
    // openpty's descriptors are inherited across exec: every program the
    // broker started held the masters open then, its own among them, so
    // a guest's tmux client never saw its terminal hang up when the
    // broker died (a read-only attack hunt).
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| JailError::sys("fcntl(pty, FD_CLOEXEC)", e))?;
    }

    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|e| JailError::msg("dup(pty)", e.to_string()))
    };
    cmd.stdin(dup(&pty.slave)?)
        .stdout(dup(&pty.slave)?)
        .stderr(dup(&pty.slave)?);
    tty::controlling_terminal_on_exec(&mut cmd);
    Ok((cmd, pty.master))
}

fn spawn_error(cmd: &std::process::Command, e: std::io::Error) -> JailError {
    JailError::msg(format!("spawn {:?}", cmd.get_program()), e.to_string())
}

/// A program on a pty the caller owns.
pub struct OnPty {
    pub child: PtyChild,
    pub master: OwnedFd,
}

/// A child the broker started on a pty. A plain `std` child: tokio's would
/// hold a pidfd, one more descriptor per guest. Its end shows on the pty
/// (EOF) first; waiting then is polling a process that is already gone.
/// Dropped, it is killed and reaped.
pub struct PtyChild {
    child: std::process::Child,
    done: bool,
}

impl PtyChild {
    pub fn id(&self) -> Option<u32> {
        (!self.done).then(|| self.child.id())
    }

    /// Waits for the child to end, without blocking the runtime.
    pub async fn wait(&mut self) {
        while !self.done {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => self.done = true,
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    /// Kills the child and waits for it.
    pub async fn kill(&mut self) {
        if !self.done {
            let _ = self.child.kill();
        }
        self.wait().await;
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if !self.done && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            // Reaped off the runtime's thread: a child stuck in the kernel
            // must not stall the broker.
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            std::thread::spawn(move || nix::sys::wait::waitpid(pid, None));
        }
    }
}

/// Starts `cmd` as the session leader of a new pty; it ends with the
/// caller (the broker's thread): a tmux client the broker started for a
/// guest must not outlive it, still attached, with nobody to stop it.
pub fn spawn_on_pty(cmd: std::process::Command, cols: u16, rows: u16) -> Result<OnPty, JailError> {
    let (mut cmd, master) = on_new_pty(cmd, cols, rows)?;
    crate::jail::die_with_parent_on_exec(&mut cmd);
    let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
    // `cmd` holds the slave's copies: they go now, so the master sees EOF
    // when the program ends.
    drop(cmd);
    Ok(OnPty {
        child: PtyChild { child, done: false },
        master,
    })
}

/// The same for a caller without a runtime (benchmarks, tests).
pub fn spawn_on_pty_blocking(
    cmd: std::process::Command,
    cols: u16,
    rows: u16,
) -> Result<(std::process::Child, OwnedFd), JailError> {
    let (mut cmd, master) = on_new_pty(cmd, cols, rows)?;
    let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
    Ok((child, master))
}

/// Sets a terminal's window size (the kernel sends SIGWINCH to its group).
pub fn set_size(fd: BorrowedFd, cols: u16, rows: u16) -> Result<(), JailError> {
    tty::set_winsize(fd, &winsize(cols, rows))
}

/// A terminal's window size, if it is one.
pub fn get_size(fd: BorrowedFd) -> Option<(u16, u16)> {
    tty::get_winsize(fd)
        .filter(|ws| ws.ws_col > 0)
        .map(|ws| (ws.ws_col, ws.ws_row))
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

/// Raises a flag on SIGWINCH (read with [`take_winch`]) and blocks the
/// signal except inside `ppoll`, which gets the returned mask.
pub fn watch_winch() -> Result<nix::sys::signal::SigSet, JailError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    tty::flag_winch()?;
    let mut block = SigSet::empty();
    block.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))
        .map_err(|e| JailError::sys("sigprocmask", e))?;
    old.remove(Signal::SIGWINCH);
    Ok(old)
}

pub use tty::take_winch;

/// Registers a pty master with the tokio reactor (non-blocking).
pub fn async_master(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    tty::register(fd)
}

/// Puts a terminal back the way a shell expects it after tmux: normal
/// screen, attributes reset, scroll region whole, cursor shown, keypad,
/// mouse, focus and bracketed-paste reporting off. With `clear`, the
/// screen is cleared too and the cursor is at the top left.
pub fn restore_screen(fd: BorrowedFd, clear: bool) {
    let _ = nix::unistd::write(fd, restore_sequence(clear));
}

pub fn restore_sequence(clear: bool) -> &'static [u8] {
    // ?1049l normal screen; [0m attributes; [r scroll region; ?25h cursor;
    // ?1l and ESC > keypad; ?1000/1002/1003/1006 mouse; ?1004 focus;
    // ?2004 bracketed paste; ?1005 and ?1015 mouse encodings; >4
    // modifyOtherKeys; 4l insert mode off; ?7h autowrap on; ?9 X10 mouse,
    // ?2048 in-band resize reports and ?9001 win32-input-mode off; ESC % G
    // UTF-8 (the filters drop every other ESC %); ESC ( B and SI: the
    // ASCII character set; ESC SP F 7-bit answers (the filters drop what
    // sets 8-bit ones); the modes the filters pass for tmux: ?5 reverse
    // video, ?69 left and right margins, ?7727 mintty's escape key, ?2026
    // synchronized output; ?5W tab stops every 8 columns (ESC H sets one,
    // and passes). (Not
    // the palette or the cursor's blink: a reset would undo the user's own
    // choice, and neither changes what the terminal sends.)
    // Resetting the scroll region homes the cursor: without clearing,
    // the cursor is saved and restored around it (ESC 7, ESC 8).
    const RESET: &[u8] = b"\x1b[?1049l\x1b[0m\x1b7\x1b[r\x1b8\x1b[?25h\x1b[?1l\x1b>\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1004l\x1b[?2004l\x1b[?1005l\x1b[?1015l\x1b[>4m\x1b[4l\x1b[?7h\x1b[?9l\x1b[?2048l\x1b[?9001l\x1b%G\x1b(B\x0f\x1b F\x1b[?5l\x1b[?69l\x1b[?7727l\x1b[?2026l\x1b[?5W";
    const RESET_CLEAR: &[u8] = b"\x1b[?1049l\x1b[0m\x1b[r\x1b[?25h\x1b[?1l\x1b>\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1004l\x1b[?2004l\x1b[?1005l\x1b[?1015l\x1b[>4m\x1b[4l\x1b[?7h\x1b[?9l\x1b[?2048l\x1b[?9001l\x1b%G\x1b(B\x0f\x1b F\x1b[?5l\x1b[?69l\x1b[?7727l\x1b[?2026l\x1b[?5W\x1b[H\x1b[2J";
    if clear { RESET_CLEAR } else { RESET }
}

/// Text as it may reach a terminal: what came from a guest (a name it
/// tried, a reason that quotes its frame) cannot move the cursor, retitle
/// the window or write the clipboard of whoever reads it.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || hides_text(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A C1 control (U+0080 to U+009F): some terminals take U+009B as CSI and
/// U+009D as OSC, as they would ESC [ and ESC ].
pub fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// Does `c` change how the text around it shows, unseen: a bidi mark or
/// override (U+202E shows what follows backwards), a zero-width
/// character, a line or paragraph separator?
pub fn hides_text(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            super::printable("bob\u{1b}]0;x\u{7}\n"),
            "bob\\u{1b}]0;x\\u{7}\\n"
        );
        assert_eq!(super::printable("a\u{202e}b"), "a\\u{202e}b");
    }
}
