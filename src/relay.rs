//! The guest's relay client, run inside the `guest-relay` jail holding
//! only its terminal (0, 1, 2) and one connected socket to the broker.
//! A single-threaded poll loop: no filesystem, no network, no threads.

use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{PollFd, PollFlags};

use crate::broker::altscreen::Filter;
use crate::broker::protocol::{self, Frame, FrameRef, Msg};
use crate::terminal as pty;

fn write_all(fd: BorrowedFd, bytes: &[u8]) -> bool {
    write_all_vectored(fd, &mut [std::io::IoSlice::new(bytes)])
}

/// Writes every slice, in order, with as few writev calls as the terminal
/// takes.
fn write_all_vectored(fd: BorrowedFd, mut slices: &mut [std::io::IoSlice]) -> bool {
    // Empty slices in front go first: a writev of nothing returns 0, which
    // would read as a terminal that takes nothing more.
    std::io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match nix::sys::uio::writev(fd, slices) {
            Ok(0) => return false,
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Returns the process exit code.
/// The broker's last word to the guest, shown, never obeyed: the relay
/// trusts no broker with the guest's terminal beyond its screen (a local
/// user's socket in a session directory of theirs is a broker too).
fn goodbye(reason: &str) -> String {
    format!("[pairjail] {}\r\n", pty::printable(reason))
}

pub fn run(sock: BorrowedFd) -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (input, output) = (stdin.as_fd(), stdout.as_fd());
    let Ok(mask) = pty::watch_winch() else {
        return 1;
    };
    // A resize between join's hello and the handler above raised no flag
    // here: send the size once now, so it is never lost.
    if let Some((cols, rows)) = pty::get_size(input)
        && !write_all(sock, &Frame::Msg(Msg::Resize { cols, rows }).encode())
    {
        return 0;
    }
    // Frames are filtered from `buf` where they were read into one
    // reused buffer, and typed input is read in place after its frame
    // header: no allocation per frame once the buffers have grown.
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 5 + 16384];
    let mut screen = Filter::default();
    let mut shown: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    loop {
        let mut fds = vec![PollFd::new(sock, PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
        }
        match nix::poll::ppoll(&mut fds, None, Some(mask)) {
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 1,
            Ok(_) => {}
        }
        if pty::take_winch()
            && let Some((cols, rows)) = pty::get_size(input)
            && !write_all(sock, &Frame::Msg(Msg::Resize { cols, rows }).encode())
        {
            return 0;
        }
        let sock_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let input_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if input_ready {
            match nix::unistd::read(input, &mut chunk[5..]) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    // Cannot fail: a read is at most 16384 bytes.
                    let Some(header) = protocol::data_header(n) else {
                        write_all(output, pty::restore_sequence(true));
                        return 1;
                    };
                    chunk[..5].copy_from_slice(&header);
                    if !write_all(sock, &chunk[..5 + n]) {
                        return 0;
                    }
                }
            }
        }
        if sock_ready {
            match nix::unistd::read(sock, &mut chunk) {
                Ok(0) | Err(_) => {
                    write_all(output, pty::restore_sequence(true));
                    write_all(output, b"[pairjail] disconnected\r\n");
                    return 0;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            // The screen of one read goes to the terminal in one write, so
            // sshd reads (and sends) it as one: under a flood a read holds
            // many frames.
            let next = take_frames(&mut buf, &mut screen, &mut shown);
            let written = write_all(output, &shown);
            shown.clear();
            match next {
                Next::More if written => {}
                Next::More => return 0,
                Next::Bye(reason) => {
                    // tmux's goodbye may not have come: the terminal is
                    // put back here, then the reason.
                    write_all(output, pty::restore_sequence(true));
                    write_all(output, goodbye(&reason).as_bytes());
                    return 0;
                }
                Next::Malformed => {
                    write_all(
                        output,
                        b"\r\n[pairjail] the broker sent a malformed frame\r\n",
                    );
                    return 1;
                }
            }
        }
    }
}

/// What comes after the frames of one read.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    More,
    Bye(String),
    Malformed,
}

/// Takes the whole frames off the front of `buf` (an unfinished one
/// stays) and puts the screen they carry in `out`, through the same
/// filter the broker runs: the relay is the last of the machine's own code
/// between a broker and the guest's terminal, and a local user's socket in
/// a session directory of theirs is a broker too. Its state carries over
/// from one read to the next, so a sequence cut between frames is whole
/// when judged.
fn take_frames(buf: &mut Vec<u8>, screen: &mut Filter, out: &mut Vec<u8>) -> Next {
    let mut at = 0;
    let next = loop {
        match FrameRef::decode(&buf[at..]) {
            Ok(Some((frame, used))) => {
                at += used;
                match frame {
                    FrameRef::Data(d) => screen.push(d, out),
                    FrameRef::Msg(Msg::Bye { reason }) => break Next::Bye(reason),
                    FrameRef::Msg(_) => {}
                }
            }
            Ok(None) => break Next::More,
            Err(_) => break Next::Malformed,
        }
    };
    // One move of the unfinished frame per read.
    buf.drain(..at);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{IoSlice, Read};

    #[test]
    fn a_goodbye_cannot_write_to_the_guests_terminal() {
        let said = goodbye("bye\x1b]52;c;cHduZWQ=\x07\x1b[2K\u{9b}2J");
        assert!(!said.contains('\x1b') && !said.contains('\x07') && !said.contains('\u{9b}'));
        assert!(
            said.starts_with("[pairjail] bye") && said.ends_with("\r\n"),
            "{said:?}"
        );
    }

    #[test]
    fn a_brokers_screen_reaches_the_terminal_filtered() {
        // A clipboard write and a cursor report, cut between frames and
        // reads, and what follows them; then a goodbye.
        let frames: Vec<u8> = [
            &b"a\x1b]5"[..],
            b"2;c;cHduZWQ=\x07b\x1b[",
            b"6nc\x1b%@\xcd\x9d52;c;eA==\x07d",
        ]
        .iter()
        .flat_map(|d| Frame::Data(d.to_vec()).encode())
        .chain(
            Frame::Msg(Msg::Bye {
                reason: "over".into(),
            })
            .encode(),
        )
        .collect();
        let (mut screen, mut out, mut buf) = (Filter::default(), Vec::new(), Vec::new());
        let mut next = Next::More;
        for read in frames.chunks(7) {
            assert_eq!(next, Next::More);
            buf.extend_from_slice(read);
            next = take_frames(&mut buf, &mut screen, &mut out);
        }
        assert_eq!(next, Next::Bye("over".into()));
        assert_eq!(out, b"abc\xcd\x9d52;c;eA==\x07d".to_vec());
        assert!(buf.is_empty());
        let mut buf = vec![0xff; 8];
        assert_eq!(
            take_frames(&mut buf, &mut screen, &mut out),
            Next::Malformed
        );
    }

    #[test]
    fn empty_frames_write_nothing_and_the_rest_arrives_in_order() {
        let (r, w) = nix::unistd::pipe().unwrap();
        // Only empty data: nothing to write, and not a closed terminal.
        assert!(write_all_vectored(w.as_fd(), &mut [IoSlice::new(b"")]));
        assert!(write_all(w.as_fd(), b""));
        let mut slices = [
            IoSlice::new(b""),
            IoSlice::new(b"ab"),
            IoSlice::new(b""),
            IoSlice::new(b"cde"),
            IoSlice::new(b""),
        ];
        assert!(write_all_vectored(w.as_fd(), &mut slices));
        drop(w);
        let mut got = Vec::new();
        std::fs::File::from(r).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abcde");
    }
}
