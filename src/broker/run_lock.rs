//! One run of a session at a time, including its last steps. A run's
//! broker holds `<runtime>/<host>/<session>.lock` (flock) from before it
//! publishes its pid file until it has removed its invites and files.
//! `start` waits for it to be free, so a new run never begins while the
//! previous one is still cleaning up (which would remove the new run's
//! tmux socket); `stop` waits for it, so it returns when the run is over.
//! `start` also holds `<session>.starting` from its checks until its broker
//! is ready: a second `start` of the session waits, then finds it shared.
//!
//! The file lives beside the session directory, not in it: the run removes
//! that directory, and a lock file unlinked while held would let the next
//! run lock a new file of the same name. It stays (empty, 0600).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: Errno },
}

/// The lock, held until dropped (or the process ends).
pub struct RunLock {
    _held: Flock<File>,
}

fn open(path: &Path) -> Result<File, RunLockError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| RunLockError::Open {
            path: path.into(),
            source,
        })
}

/// The lock now, or None while a run holds it.
pub fn try_hold(path: &Path) -> Result<Option<RunLock>, RunLockError> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(RunLock { _held: held })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, source)) => Err(RunLockError::Lock {
            path: path.into(),
            source,
        }),
    }
}

/// Does a run (or a `start`) hold the lock file `name` of the directory
/// `dir` (opened by the caller without following links) now? For a
/// caller that is not the lock's owner (root, in `setup --undo`): the
/// file is opened relative to `dir`, nothing is created, no link is
/// followed, no terminal is taken, and a file that is not a regular file
/// owned by `owner` is no run's lock. Taking the lock for an instant only
/// makes a `start` or broker waiting for it poll once more.
pub fn held_in(dir: std::os::fd::BorrowedFd, name: &std::ffi::OsStr, owner: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let flags = nix::fcntl::OFlag::O_RDONLY
        | nix::fcntl::OFlag::O_NOFOLLOW
        | nix::fcntl::OFlag::O_NONBLOCK
        | nix::fcntl::OFlag::O_NOCTTY
        | nix::fcntl::OFlag::O_CLOEXEC;
    let Ok(fd) = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty()) else {
        return false;
    };
    let file = File::from(fd);
    if !file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.uid() == owner)
    {
        return false;
    }
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

/// The lock as soon as no run holds it, or None if one still does after
/// `limit`. Polled: a blocking flock could not be given up at a deadline.
pub fn wait_hold(path: &Path, limit: Duration) -> Result<Option<RunLock>, RunLockError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(held) = try_hold(path)? {
            return Ok(Some(held));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let first = try_hold(&path).unwrap().expect("free at first");
        // flock locks belong to open files: a second open is refused.
        assert!(try_hold(&path).unwrap().is_none());
        assert!(
            wait_hold(&path, Duration::from_millis(60))
                .unwrap()
                .is_none()
        );
        drop(first);
        assert!(try_hold(&path).unwrap().is_some());
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        let path = dir.path().join("s.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(try_hold(&path), Err(RunLockError::Open { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
