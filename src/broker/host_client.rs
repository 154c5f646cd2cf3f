//! The host's own tmux client of a jailed session, on a pty of ours.
//!
//! A pair guest commands a jailed session's tmux server from any pane
//! (`tmux set …`), and the server writes to every client's terminal. With
//! `set -g set-clipboard on` and an `OSC 52`, the host's clipboard would
//! hold a command that runs when pasted; `refresh-client -l` asks the
//! host's terminal for its clipboard (whatever the host copied last: a
//! password, a token) and files the answer where the guest reads it;
//! `allow-passthrough on` hands any string to the host's terminal
//! emulator (file transfers, its own commands). So the client runs on a
//! pty this process holds, and what it prints reaches the host's terminal
//! through the filter guests get, which keeps only the OSC commands tmux
//! itself uses and drops every terminal string. Unlike a guest's, the
//! host's terminal keeps the alternate screen: tmux always says goodbye to
//! it. Keys go to the client as typed, but for the host's own way out,
//! Enter `~` `.` (see [`Escape`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Command, ExitStatus};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};

use super::altscreen::Filter;
use crate::jail::JailError;
use crate::terminal as pty;

#[derive(Debug, thiserror::Error)]
pub enum HostClientError {
    #[error("cannot start the tmux client on a terminal of its own: {0}")]
    Pty(JailError),
    #[error("cannot wait for the tmux client: {0}")]
    Wait(std::io::Error),
}

fn write_all(fd: BorrowedFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            // A terminal another program made non-blocking: wait until it
            // takes more.
            Err(Errno::EAGAIN) => {
                let mut out = [PollFd::new(fd, PollFlags::POLLOUT)];
                if matches!(
                    nix::poll::poll(&mut out, nix::poll::PollTimeout::NONE),
                    Err(e) if e != Errno::EINTR
                ) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The most keys that wait for a client that does not take them.
const MAX_PENDING: usize = 1 << 20;

/// How often the loop looks whether the client ended without its pty
/// saying so (the session's server holds a copy of the client's terminal,
/// and a guest can stop that server).
const CHECK_EXIT: nix::sys::time::TimeSpec = nix::sys::time::TimeSpec::new(1, 0);

/// The host's own way out, as ssh's: Enter, `~`, `.`. A guest can make
/// tmux drop the host's keys (`suspend-client` on the host's client): the
/// host still leaves, and the client is killed.
#[derive(Debug, Default)]
struct Escape {
    /// Not at the start of a line (the first key of the session is).
    mid_line: bool,
    /// A `~` at the start of a line, held until the next key says what
    /// it is.
    tilde: bool,
    /// Inside a bracketed paste (`ESC [200~` … `ESC [201~`): what is
    /// pasted is typed as it is, `~.` lines included.
    pasting: bool,
    /// The last keys, to see the paste's brackets across reads.
    recent: Vec<u8>,
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

impl Escape {
    /// Appends what of `keys` goes to the client to `out`; true when the
    /// host asked to leave.
    fn keys(&mut self, keys: &[u8], out: &mut Vec<u8>) -> bool {
        for &k in keys {
            if self.recent.len() == PASTE_START.len() {
                self.recent.remove(0);
            }
            self.recent.push(k);
            if self.recent == PASTE_START {
                self.pasting = true;
            } else if self.recent == PASTE_END {
                self.pasting = false;
                self.mid_line = true;
            }
            if self.pasting {
                out.push(k);
                continue;
            }
            if std::mem::take(&mut self.tilde) {
                match k {
                    b'.' => return true,
                    // `~~` is one `~`.
                    b'~' => {
                        out.push(b'~');
                        self.mid_line = true;
                        continue;
                    }
                    _ => out.push(b'~'),
                }
            } else if !self.mid_line && k == b'~' {
                self.tilde = true;
                continue;
            }
            out.push(k);
            self.mid_line = !matches!(k, b'\r' | b'\n');
        }
        false
    }
}

/// Runs `client` with the caller's terminal between it and the host: the
/// caller's stdin must be a terminal (as tmux requires of its own). None:
/// the host left with Enter `~` `.`, and the client was killed.
pub fn run(client: Command) -> Result<Option<ExitStatus>, HostClientError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let input = stdin.as_fd();
    // tmux draws on the terminal of its stdin; so does this, unless
    // stdout is a terminal too.
    let output = if nix::unistd::isatty(stdout.as_fd()).unwrap_or(false) {
        stdout.as_fd()
    } else {
        input
    };
    let (cols, rows) = pty::get_size(input).unwrap_or((80, 24));
    let (mut child, master) =
        pty::spawn_on_pty_blocking(client, cols, rows).map_err(HostClientError::Pty)?;
    // Watched only once the client runs: it would inherit the blocked
    // signal. A resize meanwhile raised no flag, so the size is set again.
    let mask = pty::watch_winch().map_err(HostClientError::Pty)?;
    if let Some((cols, rows)) = pty::get_size(input) {
        let _ = pty::set_size(master.as_fd(), cols, rows);
    }
    let raw = pty::RawMode::enter(input);
    // Keys wait here while the client does not take them (a guest can
    // have tmux stop reading them): the loop goes on reading the host's
    // terminal, so Enter ~ . is always seen. Past `MAX_PENDING` keys
    // nobody takes are dropped.
    let _ = nix::fcntl::fcntl(
        master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut pending: Vec<u8> = Vec::new();
    let mut filter = Filter::for_host();
    let mut chunk = vec![0u8; 16384];
    let mut shown = Vec::with_capacity(chunk.len());
    let mut input_open = true;
    let mut escape = Escape::default();
    let mut keys = Vec::with_capacity(chunk.len());
    let mut left = false;
    loop {
        let mut toward = PollFlags::POLLIN;
        if !pending.is_empty() {
            toward |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(master.as_fd(), toward)];
        if input_open {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
        }
        match nix::poll::ppoll(&mut fds, Some(CHECK_EXIT), Some(mask)) {
            Ok(0) => {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        let master_events = fds[0].revents().unwrap_or(PollFlags::empty());
        let input_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        if pty::take_winch()
            && let Some((cols, rows)) = pty::get_size(input)
        {
            // A size the client cannot get is only a stale picture.
            let _ = pty::set_size(master.as_fd(), cols, rows);
        }
        if input_ready {
            match nix::unistd::read(input, &mut chunk) {
                Ok(0) | Err(Errno::EIO | Errno::EBADF) => input_open = false,
                Ok(n) => {
                    keys.clear();
                    left = escape.keys(&chunk[..n], &mut keys);
                    if left {
                        break;
                    }
                    let room = MAX_PENDING.saturating_sub(pending.len());
                    pending.extend_from_slice(&keys[..keys.len().min(room)]);
                }
                Err(_) => {}
            }
        }
        if master_events.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match nix::unistd::write(master.as_fd(), &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => break,
            }
        }
        if master_events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master.as_fd(), &mut chunk) {
                // EIO: every copy of the client's side is closed.
                Ok(0) | Err(Errno::EIO) => break,
                Ok(n) => {
                    shown.clear();
                    filter.push(&chunk[..n], &mut shown);
                    if !write_all(output, &shown) {
                        break;
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => break,
            }
        }
    }
    drop(master);
    if left {
        let _ = child.kill();
    }
    let status = child.wait().map_err(HostClientError::Wait);
    // Guests can make tmux leave modes on (mouse, keypad: its
    // terminal-overrides are theirs to set) and ask the terminal things
    // whose answers would arrive after the client is gone: the modes are
    // reset, and what the terminal sent that nobody read is dropped
    // rather than typed into the host's shell.
    write_all(output, pty::restore_sequence(false));
    let _ = nix::sys::termios::tcflush(input, nix::sys::termios::FlushArg::TCIFLUSH);
    drop(raw);
    if left {
        return status.map(|_| None);
    }
    status.map(Some)
}

#[cfg(test)]
mod tests {
    use super::Escape;

    fn typed(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut e = Escape::default();
        let mut out = Vec::new();
        for c in chunks {
            if e.keys(c, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn only_enter_tilde_dot_leaves_and_everything_else_is_typed() {
        assert_eq!(typed(&[b"~."]), (vec![], true));
        assert_eq!(typed(&[b"ls\r", b"~", b"."]), (b"ls\r".to_vec(), true));
        assert_eq!(typed(&[b"a~.\r"]), (b"a~.\r".to_vec(), false));
        assert_eq!(typed(&[b"\r~~.\r"]), (b"\r~.\r".to_vec(), false));
        assert_eq!(typed(&[b"\r~x"]), (b"\r~x".to_vec(), false));
        // A held tilde waits for the next key.
        assert_eq!(typed(&[b"\r~"]), (b"\r".to_vec(), false));
        // A paste is typed as it is, its brackets seen across reads.
        assert_eq!(
            typed(&[b"\x1b[20", b"0~a\r~.\r~~\x1b[201~"]),
            (b"\x1b[200~a\r~.\r~~\x1b[201~".to_vec(), false)
        );
    }
}
