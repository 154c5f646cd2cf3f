//! Is a share's broker running? A run is identified by the broker's pid,
//! its start time (`/proc/PID/stat` field 22, clock ticks since boot) and
//! its owner. A pid alone is not enough: after a crash another process can
//! get the same pid, and would keep the dead run's invites alive.
//!
//! The broker writes `broker.pid` (`PID START\n`) into its session
//! directory; readers trust it only if it is a small regular file owned by
//! the host, and only if the process it names still has that start time
//! and that owner. Nothing here can block: no locks, no FIFOs, no sockets.

use std::fmt;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One run of a share's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error("cannot read /proc/{0}/stat")]
    NoProcess(u32),
    #[error("invalid run '{0}': expected PID.START")]
    Syntax(String),
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pid, self.start)
    }
}

impl std::str::FromStr for Run {
    type Err = LivenessError;
    fn from_str(s: &str) -> Result<Run, LivenessError> {
        let bad = || LivenessError::Syntax(s.escape_debug().to_string());
        let (pid, start) = s.split_once('.').ok_or_else(bad)?;
        Ok(Run {
            pid: pid.parse().map_err(|_| bad())?,
            start: start.parse().map_err(|_| bad())?,
        })
    }
}

impl Run {
    /// The calling process.
    pub fn current() -> Result<Run, LivenessError> {
        let pid = std::process::id();
        let start = start_time(pid).ok_or(LivenessError::NoProcess(pid))?;
        Ok(Run { pid, start })
    }

    /// Still running, with the same start time and owned by `uid`.
    pub fn is_alive(&self, uid: u32) -> bool {
        start_time(self.pid) == Some(self.start) && owner(self.pid) == Some(uid)
    }
}

/// Field 22 of `/proc/PID/stat`, None for a process that has ended (a
/// zombie not yet reaped serves nothing). The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after the last ')'.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

fn parse_start(stat: &str) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After ')' come field 3 (state) onwards: field 22 is the 20th.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The children of a running process (`/proc/PID/task/PID/children`),
/// as runs; none when it has ended, or where the kernel does not list
/// them (then `end_jail` waits for the exec and the server only).
fn children(pid: u32) -> Vec<Run> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|pid| start_time(pid).map(|start| Run { pid, start }))
        .collect()
}

/// The effective uid of a process (the `Uid:` line of its status).
fn owner(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The text of a pid file.
pub fn pid_file_text(run: &Run) -> String {
    format!("{} {}\n", run.pid, run.start)
}

/// Writes `run` to the pid file `path`, atomically, readable by all (the
/// readers check its owner and mode).
pub fn write_pid_file(path: &Path, run: &Run) -> std::io::Result<()> {
    crate::files::write_atomic(path, pid_file_text(run).as_bytes(), 0o644)
}

/// The live run recorded in `<session dir>/broker.pid`, if the file is a
/// small regular file owned by `host_uid` and the run it names is alive.
pub fn live_run(session_dir: &Path, host_uid: u32) -> Option<Run> {
    recorded_run(session_dir, host_uid).filter(|run| run.is_alive(host_uid))
}

/// The run `<session dir>/broker.pid` names, alive or not, if the file is
/// a small regular file owned by `host_uid`.
pub fn recorded_run(session_dir: &Path, host_uid: u32) -> Option<Run> {
    recorded(&session_dir.join("broker.pid"), host_uid)
}

/// The session's tmux server as `start` recorded it in
/// `<session dir>/tmux.pid` (its pid in the host's pid namespace), alive
/// or not, with the same checks as the broker's.
pub fn recorded_server(session_dir: &Path, host_uid: u32) -> Option<Run> {
    recorded(&session_dir.join(SERVER_FILE), host_uid)
}

/// Where `start` records the session's tmux server.
pub const SERVER_FILE: &str = "tmux.pid";

/// The jail `start` recorded in `<session dir>/jail.pid`, alive or not,
/// with the same checks as the broker's.
pub fn recorded_jail(session_dir: &Path, host_uid: u32) -> Option<Run> {
    recorded(&session_dir.join(JAIL_FILE), host_uid)
}

/// The same, only while it runs.
pub fn live_jail(session_dir: &Path, host_uid: u32) -> Option<Run> {
    recorded_jail(session_dir, host_uid).filter(|run| run.is_alive(host_uid))
}

/// Where `start` records a jailed session's jail: the `pairjail exec`
/// that holds the session's tmux server and everything it runs.
pub const JAIL_FILE: &str = "jail.pid";

/// How long a jail that was killed may take to be gone.
pub const JAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends a jailed session's jail, with everything in it, and waits up to
/// `wait` for it to be gone; true when no jail `start` recorded runs.
///
/// Never by asking tmux: guests command that server, and can make
/// `kill-server` do nothing (`command-alias`) or leave jobs that outlive
/// it. The jail's `pairjail exec` is killed; its pid 1 dies of its
/// parent-death signal, and the kernel kills every process of its pid
/// namespace with it.
pub fn end_jail(session_dir: &Path, host_uid: u32, wait: std::time::Duration) -> bool {
    let Some(jail) = recorded_jail(session_dir, host_uid) else {
        return true;
    };
    let server = recorded_server(session_dir, host_uid);
    // The jail's pid 1 (the child of `pairjail exec`): its namespace is
    // gone once it is.
    let inits = children(jail.pid);
    let deadline = std::time::Instant::now() + wait;
    let mut killed = false;
    loop {
        let jail_alive = jail.is_alive(host_uid);
        // The server is in the jail's pid namespace: gone with it.
        let inside_alive = server
            .iter()
            .chain(inits.iter())
            .any(|r| r.is_alive(host_uid));
        if !jail_alive && !inside_alive {
            return true;
        }
        if jail_alive && !killed {
            if let Ok(pid) = i32::try_from(jail.pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            killed = true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Reads a pid file of a session directory. Neither the directory nor the
/// file may be a link: a host's directory is open to whoever owns it, and
/// authorized-keys reads every host's for every guest's login; a link to
/// a filesystem that never answers (a local user's FUSE mount) would hold
/// every login of every host's guests.
/// (O_PATH: a host's directory is searchable by others, not readable.)
fn recorded(path: &Path, host_uid: u32) -> Option<Run> {
    use nix::fcntl::OFlag;
    let (dir, name) = (path.parent()?, path.file_name()?);
    let (host_dir, session) = (dir.parent()?, dir.file_name()?);
    let host_dir = nix::fcntl::open(
        host_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    // The session directory and the file beneath the host's, through no
    // link and onto no mount: a local user's FUSE mount on either would
    // hold the keys command for good (a read-only attack hunt).
    let fd = crate::files::open_beneath(
        host_dir.as_fd(),
        &Path::new(session).join(name),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
    )
    .ok()?;
    let mut f = std::fs::File::from(fd);
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.uid() != host_uid || meta.mode() & 0o022 != 0 || meta.len() > 64 {
        return None;
    }
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    let mut words = text.split_whitespace();
    Some(Run {
        pid: words.next()?.parse().ok()?,
        start: words.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat =
            "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start(stat), Some(987654));
        assert_eq!(parse_start("42 (x"), None);
        // A zombie has ended: its run is over.
        assert_eq!(parse_start(&stat.replacen(") S ", ") Z ", 1)), None);
    }

    #[test]
    fn this_process_is_alive_and_a_different_start_time_is_not() {
        let me = Run::current().unwrap();
        let uid = nix::unistd::Uid::effective().as_raw();
        assert!(me.is_alive(uid));
        assert!(
            !Run {
                start: me.start + 1,
                ..me
            }
            .is_alive(uid)
        );
        assert!(!me.is_alive(uid.wrapping_add(1)));
        assert_eq!(me.to_string().parse::<Run>().unwrap(), me);
        assert!("12".parse::<Run>().is_err());
    }
}
