//! Who listens on a Unix socket, asked without ever blocking: a stopped
//! or stuck server stops accepting, its backlog fills, and a blocking
//! `connect` would then wait on it for good.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};

/// What answers on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Nothing listens (no file, or no server behind it).
    Nobody,
    /// A server listens but accepts nobody (its backlog is full).
    Busy,
    /// The process that listens, in our pid namespace, and its uid.
    Peer { pid: i32, uid: u32 },
}

impl Listener {
    pub fn is_listening(self) -> bool {
        self != Listener::Nobody
    }
}

/// Connects without blocking and asks the kernel who listens.
pub fn probe(path: &Path) -> Listener {
    match connect_now(path) {
        Ok(fd) => match socket::getsockopt(&fd, sockopt::PeerCredentials) {
            Ok(c) => Listener::Peer {
                pid: c.pid(),
                uid: c.uid(),
            },
            Err(_) => Listener::Busy,
        },
        Err(who) => who,
    }
}

/// A stream to the server on `path` if it takes one at once: None when
/// nobody listens or its backlog is full. The stream blocks again, so the
/// caller sets its own timeouts.
pub fn connect(path: &Path) -> Option<UnixStream> {
    let fd = connect_now(path).ok()?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

/// The connected socket, or who is there instead.
fn connect_now(path: &Path) -> Result<OwnedFd, Listener> {
    let addr = UnixAddr::new(path).map_err(|_| Listener::Nobody)?;
    // Cannot ask: say someone may be there, so nothing is removed.
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|_| Listener::Busy)?;
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(fd),
        Err(Errno::ENOENT | Errno::ECONNREFUSED | Errno::ENOTSOCK | Errno::ENOTDIR) => {
            Err(Listener::Nobody)
        }
        // EAGAIN: listening, backlog full; anything else: unsure, so it
        // counts as there.
        Err(_) => Err(Listener::Busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_never_accepts_is_seen_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        assert_eq!(probe(&path), Listener::Nobody);
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let me = std::process::id() as i32;
        let uid = nix::unistd::Uid::effective().as_raw();
        // Never accepted: well past any backlog, every probe still returns.
        let mut peers = 0;
        for _ in 0..5000 {
            match probe(&path) {
                Listener::Peer { pid, uid: u } => {
                    assert_eq!((pid, u), (me, uid));
                    peers += 1;
                }
                other => assert_eq!(other, Listener::Busy),
            }
        }
        assert!(peers > 0, "the listener was never named");
        assert_eq!(probe(&path), Listener::Busy, "the backlog never filled");
        drop(server);
        assert_eq!(probe(&path), Listener::Nobody);
    }
}
