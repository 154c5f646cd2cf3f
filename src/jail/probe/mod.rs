//! `pairjail probe`: escape attempts run inside a profile's jail, one jail
//! and one process per attempt (seccomp and Landlock are irreversible).
//! pairjail executes itself as the payload (`__probe-attempt NAME`), as
//! `exec` runs a program; or, with [`Payload::Called`], calls the attempt
//! in the jail without an exec, as `join` runs the guest's relay.

mod attempts;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::{Command, JailError, Program, Status, spawn};
use crate::profile::Profile;
pub use attempts::{ATTEMPTS, Ctx, Finding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Blocked,
    Escaped,
    /// It got through, and the profile says so by design (`[probe] allowed`).
    Allowed,
    /// The attempt could not be carried out, so it proves nothing.
    Inconclusive,
}

impl Verdict {
    /// How the payload's one line starts; the host reads the verdict
    /// from it and nothing else.
    fn prefix(self) -> &'static str {
        match self {
            Verdict::Blocked => "blocked: ",
            Verdict::Escaped => "escaped: ",
            Verdict::Inconclusive => "untested: ",
            Verdict::Allowed => "allowed: ",
        }
    }

    fn parse(line: &str) -> Option<(Verdict, &str)> {
        [Verdict::Blocked, Verdict::Escaped, Verdict::Inconclusive]
            .into_iter()
            .find_map(|v| line.strip_prefix(v.prefix()).map(|rest| (v, rest)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub attempt: String,
    pub expected: String,
    pub observed: String,
    pub verdict: Verdict,
}

/// Things outside the jail for the attempts to aim at; removed on drop.
struct Bait {
    dir: PathBuf,
    bait_home: PathBuf,
    vars: BTreeMap<String, String>,
    _keep: Vec<Box<dyn std::any::Any>>,
    _leak: OwnedFd,
    tty: OwnedFd,
    _tty_master: OwnedFd,
}

impl Drop for Bait {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup_err(what: &str, e: impl std::fmt::Display) -> JailError {
    JailError::msg(format!("probe: {what}"), e.to_string())
}

impl Bait {
    fn new() -> Result<Bait, JailError> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // A name nobody can guess, closed (0700) while the bait is laid out
        // by path: in the temporary directory any local user could have put
        // a link where a bait file goes, and the probe would have written
        // its "secrets" over the files it leads to. Opened to all (sticky,
        // so nobody replaces an entry) only once everything is in place.
        let tmp = tempfile::Builder::new()
            .prefix("pairjail-probe-")
            .tempdir()
            .map_err(|e| setup_err("create bait dir", e))?;
        let dir = tmp.path().to_path_buf();
        let bait_file = dir.join("secret");
        std::fs::write(&bait_file, "host secret\n").map_err(|e| setup_err("write bait", e))?;
        let _ = std::fs::set_permissions(&bait_file, std::fs::Permissions::from_mode(0o644));
        let sock_path = dir.join("sock");
        let path_listener =
            UnixListener::bind(&sock_path).map_err(|e| setup_err("bind unix socket", e))?;
        let _ = std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o777));
        let abstract_name = format!("pairjail-probe-{pid}-{nanos}");
        let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .map_err(|e| setup_err("abstract name", e))?;
        let abstract_listener =
            UnixListener::bind_addr(&addr).map_err(|e| setup_err("bind abstract socket", e))?;
        let dgram_name = format!("pairjail-probe-dgram-{pid}-{nanos}");
        let dgram_addr = SocketAddr::from_abstract_name(dgram_name.as_bytes())
            .map_err(|e| setup_err("abstract name", e))?;
        let dgram = std::os::unix::net::UnixDatagram::bind_addr(&dgram_addr)
            .map_err(|e| setup_err("bind abstract datagram socket", e))?;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| setup_err("bind udp 127.0.0.1", e))?;
        let udp_port = udp
            .local_addr()
            .map_err(|e| setup_err("udp address", e))?
            .port();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| setup_err("bind 127.0.0.1", e))?;
        let tcp_port = tcp
            .local_addr()
            .map_err(|e| setup_err("tcp address", e))?
            .port();
        // Deliberately without O_CLOEXEC: the jail must close it anyway.
        let leak = open(&bait_file, OFlag::O_RDONLY, Mode::empty())
            .map_err(|e| setup_err("open leak bait", e))?;
        let pty = nix::pty::openpty(None, None).map_err(|e| setup_err("openpty", e))?;

        // A home of the host's, with secrets where tools keep them, for
        // profiles that show the host's home (the workspace profiles).
        let bait_home = dir.join("home");
        for rel in attempts::SECRET_FILES {
            let p = bait_home.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| setup_err("bait home", e))?;
            }
            std::fs::write(&p, "host secret\n").map_err(|e| setup_err("bait secret", e))?;
        }
        std::fs::create_dir_all(bait_home.join("project"))
            .map_err(|e| setup_err("bait workspace", e))?;
        std::fs::create_dir_all(dir.join("tmux")).map_err(|e| setup_err("bait socket dir", e))?;
        let agent_path = bait_home.join(".gnupg/S.gpg-agent");
        let agent_listener =
            UnixListener::bind(&agent_path).map_err(|e| setup_err("bind agent socket", e))?;
        // Open to every user, so that only the jail stands between an
        // attempt and the bait.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| setup_err("open bait dir", e))?;
        // Removed by Bait's drop from here on (by `tmp`'s until now).
        let dir = tmp.keep();

        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let mut vars = BTreeMap::new();
        vars.insert("ssh_dir".into(), format!("{home}/.ssh"));
        vars.insert("home".into(), home);
        vars.insert("agent_path".into(), agent_path.display().to_string());
        vars.insert("host_pid".into(), pid.to_string());
        vars.insert("tcp_port".into(), tcp_port.to_string());
        vars.insert("abstract".into(), abstract_name);
        vars.insert("abstract_dgram".into(), dgram_name);
        vars.insert("udp_port".into(), udp_port.to_string());
        vars.insert("unix_path".into(), sock_path.display().to_string());
        vars.insert("bait_file".into(), bait_file.display().to_string());
        vars.insert("bait_dir".into(), dir.display().to_string());
        Ok(Bait {
            dir,
            vars,
            bait_home,
            _keep: vec![
                Box::new(agent_listener),
                Box::new(path_listener),
                Box::new(abstract_listener),
                Box::new(tcp),
                Box::new(dgram),
                Box::new(udp),
            ],
            _leak: leak,
            tty: pty.slave,
            _tty_master: pty.master,
        })
    }
}

/// How each attempt enters its jail.
#[derive(Debug, Clone)]
pub enum Payload {
    /// This binary (its path), executed as `__probe-attempt NAME`.
    Executed(PathBuf),
    /// Called in the confined child, no exec (jail::Program::Function).
    Called,
}

/// Runs every attempt (or those named in `only`) in its own jail, from a
/// new session whose controlling terminal is a fresh pty: the terminal
/// attacks (TIOCSTI, TIOCLINUX) then aim at a real controlling tty, as a
/// guest's would aim at the ssh pty.
pub fn run(
    profile: &Profile,
    params: &BTreeMap<String, String>,
    payload: &Payload,
    only: &[String],
) -> Result<Vec<Report>, JailError> {
    if let Some(unknown) = profile
        .probe
        .allowed
        .iter()
        .find(|n| !ATTEMPTS.iter().any(|a| a.name == n.as_str()))
    {
        return Err(JailError::msg(
            "probe",
            format!(
                "[probe] allowed names an unknown attempt '{unknown}' (`pairjail probe --help` lists them)"
            ),
        ));
    }
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| JailError::sys("pipe2", e))?;
    // SAFETY: `pairjail probe` is single-threaded; the child only runs the
    // attempts and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| JailError::sys("fork", e))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let result = in_session(profile, params, payload, only).map_err(|e| e.encode());
            let text = serde_json::to_string(&result).unwrap_or_default();
            let mut f = std::fs::File::from(w);
            let _ = std::io::Write::write_all(&mut f, text.as_bytes());
            // SAFETY: leaving the forked child without unwinding.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut text);
            let _ = nix::sys::wait::waitpid(child, None);
            let result: Result<Vec<Report>, Vec<u8>> = serde_json::from_str(&text)
                .map_err(|_| JailError::msg("probe", "the probe session ended without a report"))?;
            result.map_err(|record| JailError::decode(&record))
        }
    }
}

fn in_session(
    profile: &Profile,
    params: &BTreeMap<String, String>,
    payload: &Payload,
    only: &[String],
) -> Result<Vec<Report>, JailError> {
    let mut bait = Bait::new()?;
    // A profile that shows the host's home and a workspace (the session
    // profiles) gets the bait home unless the caller named one.
    let mut params = params.clone();
    if profile.params.contains_key("home") {
        let home = params
            .entry("home".into())
            .or_insert_with(|| bait.bait_home.display().to_string())
            .clone();
        bait.vars.insert("ssh_dir".into(), format!("{home}/.ssh"));
        bait.vars.insert("home".into(), home);
        for (k, v) in [
            ("workspace", bait.bait_home.join("project")),
            ("socket_dir", bait.dir.join("tmux")),
        ] {
            if profile.params.contains_key(k) {
                params
                    .entry(k.into())
                    .or_insert_with(|| v.display().to_string());
            }
        }
    }
    let params = &params;
    nix::unistd::setsid().map_err(|e| JailError::sys("setsid", e))?;
    // This forked process leads the bait terminal's session; the attempts'
    // jails ending on that terminal hang it up. Its report must survive.
    // SAFETY: SIG_IGN installs no handler code; this process is the
    // probe's own fork and exits when the attempts are done.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map_err(|e| JailError::sys("signal(SIGHUP)", e))?;
    // SAFETY: TIOCSCTTY takes an integer; the slave is a pty we opened.
    if unsafe { libc::ioctl(bait.tty.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(JailError::sys(
            "ioctl(TIOCSCTTY)",
            nix::errno::Errno::last(),
        ));
    }
    let devnull = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| setup_err("open /dev/null", e))?;
    // Which exec calls get past the filter? An exec attempt killed by
    // seccomp after one that does was killed once its program started.
    let exec_allowed: Vec<&str> = match payload {
        Payload::Called => vec![],
        Payload::Executed(_) => ["execve", "execveat"]
            .into_iter()
            .filter(|call| {
                crate::profile::plan::plan(profile).ok().is_none_or(|plan| {
                    plan.seccomp.is_none_or(|s| {
                        s.default_action == crate::profile::Action::Log
                            || s.rules.iter().any(|r| r.name == *call)
                    })
                })
            })
            .collect(),
    };
    let mut reports = Vec::new();
    for a in ATTEMPTS
        .iter()
        .filter(|a| only.is_empty() || only.iter().any(|o| o == a.name))
    {
        let (r, w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| JailError::sys("pipe2", e))?;
        let mut args = vec![a.name.to_string()];
        args.extend(bait.vars.iter().map(|(k, v)| format!("{k}={v}")));
        let program = match payload {
            Payload::Executed(exe) => Program::File {
                path: exe.clone(),
                argv: [exe.as_os_str(), "__probe-attempt".as_ref()]
                    .into_iter()
                    .map(OsString::from)
                    .chain(args.into_iter().map(OsString::from))
                    .collect(),
            },
            Payload::Called => Program::Function {
                name: c"pairjail-probe",
                args,
                run: |_, args| match args.split_first() {
                    Some((name, vars)) => attempt_main(name, vars),
                    None => 2,
                },
            },
        };
        let cmd = Command {
            params: params.clone(),
            stdio: [
                Some(bait.tty.as_raw_fd()),
                Some(w.as_raw_fd()),
                Some(devnull.as_raw_fd()),
            ],
            ..Command::new(program)
        };
        // A write the attempt saw succeed may have landed in the jail's own
        // tmpfs at the same path; only the host's file says it escaped. One
        // that was there before is the user's: never judged by, nor removed.
        let host_file = match a.name {
            "write-host-dir" => Some(bait.dir.join("pwned")),
            "write-home" => Some(PathBuf::from(bait.vars["home"].clone()).join("pwned")),
            _ => None,
        };
        let existed = host_file
            .as_ref()
            .is_some_and(|f| f.symlink_metadata().is_ok());
        let child = spawn(profile, &cmd)?;
        drop(w);
        let (out, timed_out) = read_with_deadline(r, ATTEMPT_TIMEOUT_MS);
        if timed_out {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let status = child.wait()?;
        let mut report = judge(a, out.trim(), status, &exec_allowed);
        if existed {
            report.verdict = Verdict::Inconclusive;
            report.observed = format!(
                "{} was there before the attempt: move it away and probe again",
                host_file
                    .as_ref()
                    .map_or(String::new(), |f| f.display().to_string())
            );
        }
        if let Some(f) = host_file.filter(|_| !existed) {
            // Only the user's own regular file says the write got out:
            // another local user can put anything in the bait directory.
            let ours = f.symlink_metadata().is_ok_and(|m| {
                m.file_type().is_file() && m.uid() == nix::unistd::Uid::effective().as_raw()
            });
            if report.verdict == Verdict::Escaped && !ours {
                report.verdict = Verdict::Blocked;
                report.observed = format!(
                    "{} inside the jail only; {} does not exist on the host",
                    report.observed,
                    f.display()
                );
            }
            let _ = std::fs::remove_file(&f);
        }
        if report.verdict == Verdict::Escaped && profile.probe.allowed.iter().any(|n| n == a.name) {
            report.verdict = Verdict::Allowed;
        }
        if timed_out && report.verdict != Verdict::Escaped {
            report.verdict = Verdict::Inconclusive;
            report.observed = format!("no answer within {} s", ATTEMPT_TIMEOUT_MS / 1000);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// An attempt that neither answers nor dies in this time proves nothing.
const ATTEMPT_TIMEOUT_MS: u16 = 10_000;

/// Reads until EOF or until `ms` pass without EOF.
fn read_with_deadline(r: OwnedFd, ms: u16) -> (String, bool) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    let mut file = std::fs::File::from(r);
    loop {
        let left = u128::from(ms).saturating_sub(start.elapsed().as_millis());
        if left == 0 {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left as i32).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

/// The payload's first line, before the attempt: what it prints after is
/// the attempt's, and a death without it proves nothing about the attempt.
const TRYING: &str = "trying ";

/// The exec call each exec attempt makes.
fn exec_call(attempt: &str) -> Option<&'static str> {
    match attempt {
        "exec-shell" | "exec-proc-self" => Some("execve"),
        "execveat-shell" => Some("execveat"),
        _ => None,
    }
}

fn judge(a: &attempts::Attempt, out: &str, status: Status, exec_allowed: &[&str]) -> Report {
    let Some(out) = out
        .strip_prefix(TRYING)
        .map(|rest| rest.split_once('\n').map_or("", |(_, after)| after).trim())
    else {
        let observed = match status {
            Status::Signaled(libc::SIGSYS) => "killed by seccomp before the attempt started: this profile does not let the probe's payload run, so the probe cannot judge it".to_string(),
            Status::Signaled(s) => format!("killed by signal {s} before the attempt started"),
            Status::Exited(c) => format!("exited {c} before the attempt started"),
        };
        return Report {
            attempt: a.name.into(),
            expected: a.expected.into(),
            observed,
            verdict: Verdict::Inconclusive,
        };
    };
    let (verdict, observed) = if let Some((v, o)) = Verdict::parse(out) {
        (v, o.to_string())
    } else if !out.is_empty() {
        // Only a program the attempt managed to execute prints anything else.
        (
            Verdict::Escaped,
            format!(
                "a program ran and printed {:?}",
                out.lines().next().unwrap_or("")
            ),
        )
    } else {
        match status {
            // The exec call itself passes the filter: what seccomp killed
            // was the program it started.
            Status::Signaled(libc::SIGSYS)
                if exec_call(a.name).is_some_and(|c| exec_allowed.contains(&c)) =>
            {
                (
                    Verdict::Escaped,
                    "a program was executed, then killed by seccomp before it printed".to_string(),
                )
            }
            Status::Signaled(libc::SIGSYS) => {
                (Verdict::Blocked, "killed by seccomp (SIGSYS)".to_string())
            }
            Status::Signaled(s) => (
                Verdict::Inconclusive,
                format!("killed by signal {s} before reporting"),
            ),
            Status::Exited(c) => (
                Verdict::Inconclusive,
                format!("exited {c} without reporting"),
            ),
        }
    };
    Report {
        attempt: a.name.into(),
        expected: a.expected.into(),
        observed,
        verdict,
    }
}

/// The payload side: runs one attempt and prints `blocked: …` or `escaped: …`.
pub fn attempt_main(name: &str, vars: &[String]) -> i32 {
    let Some(a) = ATTEMPTS.iter().find(|a| a.name == name) else {
        eprintln!("pairjail: unknown probe attempt {name}");
        return 2;
    };
    let ctx = Ctx {
        vars: vars
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let trying = format!("{TRYING}{name}\n");
    // SAFETY: writing from a live buffer to stdout.
    unsafe { libc::write(1, trying.as_ptr().cast(), trying.len()) };
    let line = match (a.run)(&ctx) {
        Ok(seen) => format!("{}{seen}\n", Verdict::Blocked.prefix()),
        Err(Finding::Escaped(seen)) => format!("{}{seen}\n", Verdict::Escaped.prefix()),
        Err(Finding::Untested(seen)) => format!("{}{seen}\n", Verdict::Inconclusive.prefix()),
    };
    // One write(2), so a filter that kills on exit cannot cut the line.
    // SAFETY: writing from a live buffer to stdout.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    0
}

#[cfg(test)]
mod judge_tests {
    use super::*;

    fn attempt(name: &str) -> &'static attempts::Attempt {
        ATTEMPTS.iter().find(|a| a.name == name).unwrap()
    }

    /// A death by seccomp says "blocked" only when the attempt had started,
    /// and, for an exec, only when the exec call itself could not pass.
    #[test]
    fn a_seccomp_kill_blocks_only_what_it_stopped() {
        let sys = Status::Signaled(libc::SIGSYS);
        // (attempt, its output, how it ended, exec calls the filter passes,
        // the verdict)
        let cases: &[(&str, &str, Status, &[&str], Verdict)] = &[
            // Killed before it started: proves nothing.
            ("tiocsti", "", sys, &[], Verdict::Inconclusive),
            ("tiocsti", "trying tiocsti", sys, &[], Verdict::Blocked),
            // The exec call passes the filter: its program started.
            (
                "exec-shell",
                "trying exec-shell",
                sys,
                &["execve"],
                Verdict::Escaped,
            ),
            // exec-shell calls execve: one allowing only execveat killed it there.
            (
                "exec-shell",
                "trying exec-shell",
                sys,
                &["execveat"],
                Verdict::Blocked,
            ),
            // Not an exec at all, whatever its name.
            (
                "exec-setuid",
                "trying exec-setuid",
                sys,
                &["execve"],
                Verdict::Blocked,
            ),
            (
                "exec-shell",
                "trying exec-shell\nblocked: execve: Permission denied",
                Status::Exited(0),
                &["execve"],
                Verdict::Blocked,
            ),
        ];
        for (name, out, status, execs, want) in cases {
            let r = judge(attempt(name), out, *status, execs);
            assert_eq!(r.verdict, *want, "{name} {out:?}: {r:?}");
        }
    }
}
