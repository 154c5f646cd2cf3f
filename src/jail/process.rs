//! The jail's setup order, top to bottom (DESIGN.md, after bubblewrap):
//! everything that can fail without the kernel is done in the parent first;
//! the child only makes syscalls, then forks the program and stays as pid 1
//! — unless the program cannot start processes (its seccomp policy refuses
//! clone, clone3, fork and vfork): then nothing would ever need reaping, and
//! the child becomes the program, the jail's pid 1 itself.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use caps::CapsHashSet;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, pipe2};
use seccompiler::BpfProgram;

use super::error::JailError;
use super::limits::{self, Placement};
use super::sys::{Real, Sys};
use super::{caps as jcaps, fs, landlock, seccomp};
use crate::profile::plan::Rlimit;
use crate::profile::{self, Profile};

/// What the jail runs once it is set up.
#[derive(Debug, Clone)]
pub enum Program {
    /// A file, opened (outside the jail) before entry and executed by
    /// descriptor; `argv` includes argv[0].
    File { path: PathBuf, argv: Vec<OsString> },
    /// pairjail's own code, called by the confined child itself: no exec,
    /// so Landlock lets nothing be executed, and the child keeps sharing
    /// the pages of the binary it was cloned from (an exec would relocate
    /// a private copy of them in every jail). `run` gets the passed
    /// descriptors, in order, and `args`; what it returns is the exit
    /// code. `name` is the process name (`ps`, at most 15 bytes).
    Function {
        name: &'static std::ffi::CStr,
        args: Vec<String>,
        run: Function,
    },
}

/// pairjail's own code as a jail's program: the passed descriptors and the
/// arguments in, the exit code out.
pub type Function = fn(&[BorrowedFd<'_>], &[String]) -> i32;

/// What to run inside the jail.
#[derive(Debug, Clone)]
pub struct Command {
    pub program: Program,
    /// Descriptors passed through at the same numbers (besides 0, 1, 2).
    pub pass_fds: Vec<RawFd>,
    /// Values for the profile's `{params}`, over its defaults.
    pub params: BTreeMap<String, String>,
    /// Descriptors to install as 0, 1 and 2 (None: inherit the caller's).
    pub stdio: [Option<RawFd>; 3],
    /// Bind sources (as the profile names them, params expanded) that must
    /// be these very files: the caller checked them, and nobody may swap
    /// them on the way.
    pub pins: Vec<(PathBuf, fs::FileId)>,
}

impl Command {
    /// `program` with stdio inherited, nothing passed, the profile's params.
    pub fn new(program: Program) -> Command {
        Command {
            program,
            pass_fds: vec![],
            params: BTreeMap::new(),
            stdio: [None; 3],
            pins: vec![],
        }
    }
}

/// How the jailed program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The shell's convention: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c,
            Status::Signaled(s) => 128 + s,
        }
    }

    fn from_raw(raw: i32) -> Status {
        if libc::WIFSIGNALED(raw) {
            Status::Signaled(libc::WTERMSIG(raw))
        } else {
            Status::Exited(libc::WEXITSTATUS(raw))
        }
    }
}

/// A running jail: its pid 1, seen from outside.
pub struct Child {
    pid: Pid,
    status: std::fs::File,
    _cgroup: Placement,
    /// Termination signals go to the jail while this lives.
    _forwarding: Restore,
}

/// The forwarded signals, blocked from just before the clone until the
/// caller's forwarding handlers are in place (right after it); the jail's
/// pid 1 keeps them blocked until its own handlers are. One that arrives
/// meanwhile waits (pending) instead of killing the caller (default
/// action) or being dropped by pid 1 (a namespace's init ignores signals
/// it has no handler for). Dropping it restores the caller's mask.
struct Blocked {
    old: Option<SigSet>,
}

impl Blocked {
    fn now() -> Result<Blocked, JailError> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| JailError::sys("sigprocmask(block)", e))?;
        Ok(Blocked { old: Some(old) })
    }

    /// The caller's mask again; pending signals are delivered now.
    fn release(&mut self) {
        if let Some(old) = self.old.take() {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }

    fn old(&self) -> SigSet {
        self.old.unwrap_or_else(SigSet::empty)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.release();
    }
}

/// How the child starts the program.
enum Start {
    Exec {
        exe: OwnedFd,
        argv: Vec<CString>,
    },
    Call {
        name: &'static std::ffi::CStr,
        args: Vec<String>,
        run: Function,
    },
}

/// Everything the child needs, computed before it exists.
struct Prepared<'a> {
    profile: &'a Profile,
    params: BTreeMap<String, String>,
    entries: Vec<fs::Entry>,
    payload_filter: Option<BpfProgram>,
    /// None: no reaper, the program is pid 1.
    reaper_filter: Option<BpfProgram>,
    rlimits: Vec<(Rlimit, u64)>,
    keep_caps: CapsHashSet,
    start: Start,
    envp: Vec<CString>,
    pass_fds: Vec<RawFd>,
    stdio: [Option<RawFd>; 3],
    /// uid and gid inside.
    ids: (u32, u32),
    /// The caller's signal mask: the program starts with it.
    mask: SigSet,
}

/// Starts `cmd` in the jail `profile` describes. Must be called from a
/// single-threaded process (fork or re-exec before starting threads).
pub fn spawn(profile: &Profile, cmd: &Command) -> Result<Child, JailError> {
    ensure_single_threaded()?;

    // 1. Validate and compile in the parent; open the program.
    landlock::check_support(profile)?;
    let plan =
        profile::plan::plan(profile).map_err(|e| JailError::msg("profile", e.to_string()))?;
    let mut params = profile.params.clone();
    params.extend(cmd.params.clone());
    let entries = if profile.namespaces.mount {
        fs::plan(profile, &params, &cmd.pins)?
    } else {
        vec![]
    };
    let ids = inside_ids(profile);
    let floor = cmd.pass_fds.iter().copied().max().unwrap_or(2).max(2) + 1;
    let start = match &cmd.program {
        Program::File { path, argv } => {
            let exe = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| JailError::sys(format!("open({})", path.display()), e))?;
            Start::Exec {
                exe: above(exe, floor)?,
                argv: cstrings(argv.iter().map(|a| a.as_bytes().to_vec()))?,
            }
        }
        Program::Function { name, args, run } => {
            // The child gets a copy of this process's memory: nothing of
            // ours may still sit in stdout's buffer for it to print.
            let _ = std::io::stdout().flush();
            Start::Call {
                name,
                args: args.clone(),
                run: *run,
            }
        }
    };
    let blocked = Blocked::now()?;
    let p = Prepared {
        mask: blocked.old(),
        profile,
        entries,
        payload_filter: plan
            .seccomp
            .as_ref()
            .map(|s| match &start {
                Start::Exec { .. } => seccomp::compile(s),
                Start::Call { .. } => seccomp::compile(&s.for_called()),
            })
            .transpose()?,
        reaper_filter: if plan.needs_reaper() {
            Some(seccomp::compile_reaper()?)
        } else {
            None
        },
        rlimits: plan.rlimits.clone(),
        keep_caps: jcaps::keep_set(&profile.capabilities.keep)?,
        start,
        envp: cstrings(environment(profile, &params)?.into_iter())?,
        pass_fds: cmd.pass_fds.clone(),
        stdio: cmd.stdio,
        params,
        ids,
    };
    let (go_r, go_w) = pipe(floor)?;
    let (err_r, err_w) = pipe(floor)?;
    let (status_r, status_w) = pipe(floor)?;

    // 3. New namespaces in one clone; the child waits for its id maps.
    let flags = plan.clone_flags();
    // A caller that made itself undumpable (join, which waits as the pair
    // user every guest shares) gives the child /proc files only root may
    // write, so its id maps could not be written. The child raises its
    // own flag and says so; the caller never lowers its guard. The child
    // drops the flag again once its maps are written (see `setup`).
    // SAFETY: PR_GET_DUMPABLE takes no argument and only reads.
    let undumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0u64, 0u64, 0u64, 0u64) } == 0;
    let ready = if undumpable { Some(pipe(floor)?) } else { None };
    // SAFETY: clone with a NULL stack behaves like fork(): the child runs on
    // a copy of this (single-threaded) address space and never returns here.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(JailError::sys(
            format!(
                "clone({})",
                plan.namespaces
                    .iter()
                    .map(|n| n.flag_name())
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            Errno::last(),
        ));
    }
    if ret == 0 {
        drop(go_w);
        drop(err_r);
        drop(status_r);
        if let Some((ready_r, ready_w)) = ready {
            drop(ready_r);
            let raised = prctl(libc::PR_SET_DUMPABLE, 1, "PR_SET_DUMPABLE").and_then(|()| {
                std::fs::File::from(ready_w)
                    .write_all(b"1")
                    .map_err(|e| JailError::sys("write(ready)", io_errno(&e)))
            });
            if let Err(e) = raised {
                report(&err_w, &e);
                // SAFETY: leaving the cloned child without running the
                // parent's destructors or atexit handlers.
                unsafe { libc::_exit(127) }
            }
        }
        child(&p, go_r, err_w, status_w, undumpable);
    }
    let pid = Pid::from_raw(ret as i32);
    drop(go_r);
    drop(err_w);
    drop(status_w);
    if let Some((ready_r, ready_w)) = ready {
        drop(ready_w);
        let mut byte = [0u8; 1];
        let mut ready_r = std::fs::File::from(ready_r);
        let read = loop {
            match ready_r.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        if read.ok() != Some(1) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            // Why, if the child said (it writes the error pipe first).
            let mut why = Vec::new();
            let _ = std::fs::File::from(err_r).read_to_end(&mut why);
            return Err(if why.is_empty() {
                JailError::msg(
                    "wait for the jail",
                    "it ended before its id maps could be written",
                )
            } else {
                JailError::decode(&why)
            });
        }
    }
    // From here a signal to the caller goes on to the jail's pid 1 (which
    // holds it, blocked, until its own handlers pass it to the program),
    // instead of killing the caller; what came since the block is now
    // delivered. The caller's handlers come back when the Child goes.
    // Without a pid namespace, a program without a reaper is an ordinary
    // child, whose signals need no help.
    let forwarding = forward_signals_to(
        pid.as_raw(),
        p.reaper_filter.is_none() && profile.namespaces.pid,
    );
    let mut blocked = blocked;
    blocked.release();

    // 4. Id maps and cgroups from outside, then release the child.
    let kill = |e: JailError| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        stop_forwarding();
        let _ = waitpid(pid, None);
        e
    };
    if profile.namespaces.user {
        write_id_maps(pid, p.ids).map_err(kill)?;
    }
    let cgroup =
        limits::place(&plan.cgroup, Path::new(limits::ROOT), pid.as_raw()).map_err(kill)?;
    let mut go = std::fs::File::from(go_w);
    go.write_all(b"1")
        .map_err(|e| kill(JailError::sys("write(go)", io_errno(&e))))?;
    drop(go);

    // The error pipe closes on the program's exec; anything read is why not.
    let mut why = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut why);
    if !why.is_empty() {
        stop_forwarding();
        let _ = waitpid(pid, None);
        return Err(JailError::decode(&why));
    }
    Ok(Child {
        pid,
        status: std::fs::File::from(status_r),
        _cgroup: cgroup,
        _forwarding: forwarding,
    })
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Waits for the program, forwarding termination signals to the jail.
    pub fn wait(self) -> Result<Status, JailError> {
        self.wait_with(|_| Ok(()))
    }

    /// Like [`wait`](Child::wait), running `before` (given the jail's pid)
    /// once the signal handlers are in place and before blocking: the
    /// place to confine the waiting process.
    pub fn wait_with(
        mut self,
        before: impl FnOnce(i32) -> Result<(), JailError>,
    ) -> Result<Status, JailError> {
        // The caller now only waits, for as long as the jail lives.
        super::release_free_heap();
        // The forwarding handlers are in place since the clone.
        if let Err(e) = before(self.pid.as_raw()) {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            stop_forwarding();
            let _ = waitpid(self.pid, None);
            return Err(e);
        }
        let mut raw = [0u8; 4];
        let reported = loop {
            match self.status.read_exact(&mut raw) {
                Ok(()) => break Some(i32::from_ne_bytes(raw)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break None,
            }
        };
        // Ended but not yet reaped, the pid still names it: forwarding
        // stops before the reaping frees the pid for another process.
        while let Err(Errno::EINTR) = nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(self.pid),
            nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
        ) {}
        stop_forwarding();
        let own = loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        if let Some(raw) = reported {
            return Ok(Status::from_raw(raw));
        }
        // A program that is pid 1 and had no handler for a forwarded signal
        // was killed in its place: it ended by that signal.
        let instead = KILLED_FOR.load(Ordering::SeqCst);
        match own {
            Ok(WaitStatus::Exited(_, c)) => Ok(Status::Exited(c)),
            Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) if instead > 0 => {
                Ok(Status::Signaled(instead))
            }
            Ok(WaitStatus::Signaled(_, s, _)) => Ok(Status::Signaled(s as i32)),
            Ok(other) => Err(JailError::msg(
                "wait",
                format!("unexpected status {other:?}"),
            )),
            Err(e) => Err(JailError::sys("waitpid", e)),
        }
    }
}

/// Gives `sig` back its default action (the process ends), replacing a
/// handler installed for it: the broker's second SIGTERM ends it even when
/// the first one's graceful end hangs.
pub fn default_signal_action(sig: Signal) -> Result<(), JailError> {
    // SAFETY: setting the default action, no handler code.
    unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }
        .map(drop)
        .map_err(|e| JailError::sys("signal", e))
}

/// Runs in the new namespaces as pid 1; never returns.
fn child(p: &Prepared, go: OwnedFd, err_w: OwnedFd, status_w: OwnedFd, undumpable: bool) -> ! {
    // The caller's handlers, copied by the clone, are not ours: a
    // forwarded signal caught before the exec would run one of them.
    // (Ignored signals stay ignored, as an exec would keep them.)
    for sig in FORWARDED {
        // SAFETY: setting a default or ignoring action, no handler code.
        unsafe {
            if let Ok(SigHandler::SigIgn) = nix::sys::signal::signal(sig, SigHandler::SigDfl) {
                let _ = nix::sys::signal::signal(sig, SigHandler::SigIgn);
            }
        }
    }
    if let Err(e) = setup(p, go, &err_w, &status_w, undumpable) {
        report(&err_w, &e);
        // SAFETY: leaving the forked child without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(127) }
    }
    let Some(reaper_filter) = &p.reaper_filter else {
        // 14. The program is pid 1: nothing it does can leave a process to
        // reap. Its status reaches the parent through waitpid.
        start_program(p, err_w, status_w);
    };
    // 14. The program runs as our child; we stay as its pid-1 reaper.
    // Undumpable before the fork, not after it: the program runs at once
    // and could read pid 1's /proc/1/environ (our memory still holds the
    // caller's environment) before pid 1 got to it; the probe did, once,
    // in a full test run under load. The program's exec makes it
    // dumpable again, as any exec does.
    if let Err(e) = prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE") {
        report(&err_w, &e);
        // SAFETY: as above.
        unsafe { libc::_exit(127) }
    }
    // SAFETY: this process is single-threaded (a fresh clone child).
    match unsafe { nix::unistd::fork() } {
        Err(e) => report(&err_w, &JailError::sys("fork(program)", e)),
        Ok(nix::unistd::ForkResult::Child) => start_program(p, err_w, status_w),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The program's own copy of the error pipe (close-on-exec)
            // reports a failed exec; ours would keep `spawn` waiting until
            // the whole jail ends, and the caller could neither confine
            // itself nor forward signals meanwhile.
            drop(err_w);
            // Returns only if the reaper could not be set up; the program
            // is killed and the parent sees it in the status.
            let _ = reap(child, status_w, reaper_filter);
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(127) }
}

fn setup(
    p: &Prepared,
    go: OwnedFd,
    err_w: &OwnedFd,
    status_w: &OwnedFd,
    undumpable: bool,
) -> Result<(), JailError> {
    // 2. No exec may ever gain privileges again.
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    // 5. Die with the parent; wait until it has written our id maps. EOF
    // instead of the byte means the parent is gone.
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as u64,
        "PR_SET_PDEATHSIG",
    )?;
    let mut byte = [0u8; 1];
    let mut go = std::fs::File::from(go);
    if go.read(&mut byte).ok() != Some(1) {
        return Err(JailError::msg(
            "wait for parent",
            "the parent exited before releasing the jail",
        ));
    }
    drop(go);
    // The maps are written: back to the caller's guard (see `spawn`).
    if undumpable {
        prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    }
    for (target, fd) in p.stdio.iter().enumerate() {
        if let Some(fd) = *fd {
            // SAFETY: dup2 onto 0..2 replaces our stdio with descriptors
            // the caller handed us for exactly that.
            if unsafe { libc::dup2(fd, target as i32) } < 0 {
                return Err(JailError::sys(
                    format!("dup2({fd}, {target})"),
                    Errno::last(),
                ));
            }
        }
    }
    let mut keep = p.pass_fds.clone();
    keep.extend([err_w.as_raw_fd(), status_w.as_raw_fd()]);
    if let Start::Exec { exe, .. } = &p.start {
        keep.push(exe.as_raw_fd());
    }
    let ns = &p.profile.namespaces;
    confine_child(
        &Real,
        &Steps {
            ids: ns.user.then_some(p.ids),
            hostname: ns.uts.then_some(ns.hostname.as_str()),
            mounts: ns.mount.then_some(p.entries.as_slice()),
            rlimits: &p.rlimits,
            keep_caps: &p.keep_caps,
            keep_fds: &keep,
        },
    )?;

    // 12. Landlock (11, TIOCSTI/TIOCLINUX, is the seccomp ioctl allowlist).
    let exe = match &p.start {
        Start::Exec { exe, .. } => Some(exe.as_fd()),
        Start::Call { .. } => None,
    };
    landlock::restrict(p.profile, &p.params, exe)?;

    // Changing ids (step 5) may have cleared the parent-death signal
    // (the kernel does when the effective ids change): set again, then make
    // sure the parent did not go in between (it holds the error pipe's
    // read end until the program runs).
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as u64,
        "PR_SET_PDEATHSIG",
    )?;
    let mut poll = [libc::pollfd {
        fd: err_w.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    // SAFETY: poll on one descriptor we own, without waiting.
    unsafe { libc::poll(poll.as_mut_ptr(), 1, 0) };
    if poll[0].revents & libc::POLLERR != 0 {
        return Err(JailError::msg("wait for parent", "the parent exited"));
    }
    Ok(())
}

/// What steps 5 to 10 need, taken from the prepared jail.
struct Steps<'a> {
    /// The ids inside, when there is a user namespace.
    ids: Option<(u32, u32)>,
    hostname: Option<&'a str>,
    /// The filesystem plan, when there is a mount namespace.
    mounts: Option<&'a [fs::Entry]>,
    rlimits: &'a [(Rlimit, u64)],
    keep_caps: &'a CapsHashSet,
    /// Descriptors that survive step 10 (besides stdio).
    keep_fds: &'a [RawFd],
}

/// Steps 5 to 10 of the child, in order, through `sys` (unit-tested with
/// a recording `Sys`).
fn confine_child(sys: &dyn Sys, s: &Steps) -> Result<(), JailError> {
    // 5. The profile's ids at once, so that files the setup creates belong
    // to a mapped id (a root caller's uid 0 has no mapping and the kernel
    // refuses such writes with EOVERFLOW). Capabilities stay, via KEEPCAPS.
    if let Some((uid, gid)) = s.ids {
        sys.prctl(libc::PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS")?;
        sys.set_ids(uid, gid)?;
        jcaps::raise_effective(sys)?;
    }
    if let Some(name) = s.hostname {
        sys.sethostname(name)?;
    }

    // 6. The filesystem: fresh tmpfs root, binds, pivot_root, old root gone.
    if let Some(entries) = s.mounts {
        fs::build(sys, entries)?;
    }
    // 7. Nested user namespaces: the guest profiles' seccomp allowlists
    // have no unshare, setns, clone or clone3; the probe attacks this.

    // 8. Resource limits.
    for &(r, v) in s.rlimits {
        sys.setrlimit(r, v)?;
    }

    // 9. Capabilities: the bounding set while CAP_SETPCAP is still ours,
    // then the other four sets.
    jcaps::drop_bounding(sys, s.keep_caps)?;
    jcaps::drop_rest(sys, s.keep_caps)?;
    sys.prctl(libc::PR_SET_KEEPCAPS, 0, "PR_SET_KEEPCAPS")?;

    // 10. Every descriptor but stdio, the passed ones and our own pipes.
    let mut keep: Vec<u32> = s
        .keep_fds
        .iter()
        .filter(|&&fd| fd > 2)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut lo = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > lo {
            sys.close_range(lo, fd - 1)?;
        }
        lo = fd.saturating_add(1);
    }
    Ok(())
}

/// Starts the program in this (the confined) process; what went wrong
/// goes to the caller through the error pipe.
fn start_program(p: &Prepared, err_w: OwnedFd, status_w: OwnedFd) -> ! {
    // The program starts with the caller's mask, not the one blocking
    // the forwarded signals while the jail was set up.
    let e = match nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&p.mask), None) {
        Err(e) => JailError::sys("sigprocmask(program)", e),
        Ok(()) => match &p.start {
            Start::Exec { exe, argv } => exec_program(p, exe, argv),
            Start::Call { name, args, run } => match prepare_call(p, name) {
                Err(e) => e,
                Ok(()) => {
                    // The jail's pipes go as an exec would close them:
                    // the caller stops waiting for an error.
                    drop(err_w);
                    drop(status_w);
                    call_program(p, *run, args)
                }
            },
        },
    };
    report(&err_w, &e);
    // SAFETY: leaving the cloned child without running the parent's
    // destructors or atexit handlers.
    unsafe { libc::_exit(127) }
}

fn exec_program(p: &Prepared, exe: &OwnedFd, argv: &[CString]) -> JailError {
    for &fd in &p.pass_fds {
        // SAFETY: fcntl(F_SETFD) takes integers only; a number that is not
        // open fails with EBADF and touches nothing.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return JailError::sys(format!("fcntl({fd}, F_SETFD)"), Errno::last());
        }
    }
    if let Err(e) = load_filter(p) {
        return e;
    }
    let mut argv: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NUL-terminated arrays of C strings that
    // outlive the call; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    JailError::sys("execveat(program)", Errno::last())
}

/// Step 14 without an exec, up to the call: the profile's environment,
/// the process name, then seccomp (13, last as ever).
fn prepare_call(p: &Prepared, name: &std::ffi::CStr) -> Result<(), JailError> {
    // The caller's environment is still in this copy of its memory (an
    // exec would have replaced it): sshd's for the guest's login, which in
    // no-root mode is the host's own session. Its strings are wiped where
    // they lie (/proc/PID/environ shows them), not only unlinked.
    // SAFETY: this process is single-threaded (the clone child, or its
    // fork), so nothing reads the environment while it changes. `environ`
    // is the C library's NULL-terminated array of NUL-terminated strings;
    // each is overwritten within its own length. The strings putenv keeps
    // live in `p`, which outlives the program (it never returns:
    // call_program ends in _exit).
    unsafe {
        let mut var = libc::environ;
        while !var.is_null() && !(*var).is_null() {
            std::ptr::write_bytes(*var, 0, libc::strlen(*var));
            var = var.add(1);
        }
        libc::clearenv();
        for var in &p.envp {
            if libc::putenv(var.as_ptr().cast_mut()) != 0 {
                return Err(JailError::sys("putenv", Errno::last()));
            }
        }
    }
    prctl(libc::PR_SET_NAME, name.as_ptr() as u64, "PR_SET_NAME")?;
    // No exec resets it: a called program (the relay) stays as its
    // caller made it. Undumpable, no process of the caller's uid (every
    // guest's, in pair-user mode) can ptrace it or read its memory.
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    load_filter(p)
}

/// 13. seccomp last: from here on only the allowlist exists.
fn load_filter(p: &Prepared) -> Result<(), JailError> {
    match &p.payload_filter {
        Some(filter) => seccompiler::apply_filter(filter)
            .map_err(|e| JailError::msg("seccomp: load filter", e.to_string())),
        None => Ok(()),
    }
}

/// The function, given the passed descriptors; its result is the exit code.
fn call_program(p: &Prepared, run: Function, args: &[String]) -> ! {
    let fds: Vec<BorrowedFd> = p
        .pass_fds
        .iter()
        // SAFETY: the passed descriptors were kept open by step 10, and
        // nothing in this process closes them before it exits.
        .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
        .collect();
    // A panic must not unwind into the caller's frames, which this copy of
    // its memory still holds (their destructors are the caller's to run).
    let code =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&fds, args))).unwrap_or(101);
    let _ = std::io::stdout().flush();
    // SAFETY: leaving the cloned child without running the parent's
    // destructors or atexit handlers.
    unsafe { libc::_exit(code) }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The jail's pid 1 is the program itself (no reaper).
static PID1_IS_PROGRAM: AtomicBool = AtomicBool::new(false);
/// That program's /proc/PID/status, opened by the caller before it
/// confines itself (-1: none).
static STATUS_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal a pid-1 program was killed in place of (0: none).
static KILLED_FOR: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    // SAFETY: errno is thread-local; the interrupted code gets its own back.
    let errno = unsafe { *libc::__errno_location() };
    forward_one(sig);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn forward_one(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    // A namespace's init gets from outside only the signals it handles;
    // the others would be dropped where any other process would die (all
    // forwarded signals end a process by default). So a pid-1 program
    // without a handler is killed in the signal's place, and one that
    // ignores the signal keeps ignoring it.
    if PID1_IS_PROGRAM.load(Ordering::SeqCst) {
        match disposition(STATUS_FD.load(Ordering::SeqCst), sig) {
            Disposition::Ignored | Disposition::Gone => return,
            Disposition::Default => {
                // The first such signal is the one it died of.
                let _ = KILLED_FOR.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                // SAFETY: kill is async-signal-safe.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            Disposition::Caught => {}
        }
    }
    // SAFETY: kill is async-signal-safe.
    unsafe { libc::kill(pid, sig) };
}

#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    Caught,
    Ignored,
    Default,
    /// Already ended (a zombie): nothing to send.
    Gone,
}

/// What the process whose status `fd` reads does with `sig`, from the
/// `State`, `SigIgn` and `SigCgt` lines. Async-signal-safe: the stack and
/// pread only. What cannot be read counts as the default action: the
/// program then ends as an ordinary process would.
fn disposition(fd: RawFd, sig: libc::c_int) -> Disposition {
    let Some(bit) = u32::try_from(sig - 1)
        .ok()
        .and_then(|b| 1u64.checked_shl(b))
    else {
        return Disposition::Default;
    };
    let (mut ign, mut cgt, mut zombie) = (None, None, false);
    // Read in pieces, each starting with the end of the last, so a line
    // split between two reads is still found (`Groups:` can be long).
    const KEEP: usize = 32;
    let mut buf = [0u8; 2048];
    let (mut kept, mut offset) = (0usize, 0i64);
    loop {
        // SAFETY: pread writes at most the rest of `buf`.
        let n = unsafe {
            libc::pread(
                fd,
                buf[kept..].as_mut_ptr().cast(),
                buf.len() - kept,
                offset,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            break;
        };
        if n == 0 {
            break;
        }
        offset += n as i64;
        let text = &buf[..kept + n];
        zombie |= find(text, b"State:\t").and_then(|at| text.get(at)) == Some(&b'Z');
        ign = ign.or_else(|| hex_after(text, b"SigIgn:\t"));
        cgt = cgt.or_else(|| hex_after(text, b"SigCgt:\t"));
        if cgt.is_some() && ign.is_some() {
            break;
        }
        let len = text.len();
        kept = KEEP.min(len);
        buf.copy_within(len - kept..len, 0);
    }
    match (zombie, cgt, ign) {
        (true, _, _) => Disposition::Gone,
        (_, Some(c), _) if c & bit != 0 => Disposition::Caught,
        (_, _, Some(i)) if i & bit != 0 => Disposition::Ignored,
        _ => Disposition::Default,
    }
}

/// Where `name` ends in `text`.
fn find(text: &[u8], name: &[u8]) -> Option<usize> {
    Some(text.windows(name.len()).position(|w| w == name)? + name.len())
}

/// The 16 hex digits after `name`, if all are there.
fn hex_after(text: &[u8], name: &[u8]) -> Option<u64> {
    let at = find(text, name)?;
    let mut m = 0u64;
    for &c in text.get(at..at + 16)? {
        m = (m << 4) | u64::from((c as char).to_digit(16)?);
    }
    Some(m)
}

/// Stops passing signals on (the jail is ending or ended).
fn stop_forwarding() {
    FORWARD_TO.store(0, Ordering::SeqCst);
}

/// The handlers that were in place before [`forward_signals_to`]; put
/// back when dropped, so waiting leaves no process-wide trace.
struct Restore(Vec<(Signal, SigAction)>);

impl Drop for Restore {
    fn drop(&mut self) {
        FORWARD_TO.store(0, Ordering::SeqCst);
        let fd = STATUS_FD.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: closing the descriptor forward_signals_to opened.
            unsafe { libc::close(fd) };
        }
        for (sig, old) in &self.0 {
            // SAFETY: reinstating exactly the action the kernel gave back.
            let _ = unsafe { sigaction(*sig, old) };
        }
    }
}

fn forward_signals_to(pid: i32, pid1_is_program: bool) -> Restore {
    PID1_IS_PROGRAM.store(pid1_is_program, Ordering::SeqCst);
    KILLED_FOR.store(0, Ordering::SeqCst);
    // Opened now: the caller may confine itself (no open) before waiting.
    // A failure leaves -1, read as "default action" by the handler.
    let status = if pid1_is_program {
        std::fs::File::open(format!("/proc/{pid}/status"))
            .map(|f| std::os::fd::IntoRawFd::into_raw_fd(OwnedFd::from(f)))
            .unwrap_or(-1)
    } else {
        -1
    };
    STATUS_FD.store(status, Ordering::SeqCst);
    FORWARD_TO.store(pid, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut saved = Vec::new();
    for sig in FORWARDED {
        // SAFETY: the handler only uses atomics, its stack and
        // async-signal-safe calls (pread, kill).
        if let Ok(old) = unsafe { sigaction(sig, &action) } {
            saved.push((sig, old));
        }
    }
    Restore(saved)
}

/// pid 1: forward signals to the program, reap everything, report the
/// program's status to the parent and exit with it.
/// (Undumpable since before the fork: the program can neither ptrace us
/// nor read /proc/1/environ.)
fn reap(payload: Pid, status_w: OwnedFd, filter: &BpfProgram) -> JailError {
    // pid 1 never returns from here: its handlers stay for its life.
    std::mem::forget(forward_signals_to(payload.as_raw(), false));
    // Blocked since before the clone (see `Blocked`): delivered now, to
    // the handlers, before the filter (which has no sigprocmask) is on.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    if let Err(e) = seccompiler::apply_filter(filter) {
        let _ = nix::sys::signal::kill(payload, Signal::SIGKILL);
        return JailError::msg("seccomp: load reaper filter", e.to_string());
    }
    loop {
        let mut raw = 0;
        // SAFETY: wait4 writes only into `raw`.
        let pid = unsafe { libc::wait4(-1, &mut raw, 0, std::ptr::null_mut()) };
        if pid == payload.as_raw() {
            let bytes = raw.to_ne_bytes();
            // SAFETY: writing 4 bytes from a live stack buffer.
            unsafe { libc::write(status_w.as_raw_fd(), bytes.as_ptr().cast(), 4) };
            let code = Status::from_raw(raw).code();
            // SAFETY: pid 1 exits; the kernel kills whatever is left.
            unsafe { libc::_exit(code) }
        }
        if pid < 0 && Errno::last() != Errno::EINTR {
            // SAFETY: as above.
            unsafe { libc::_exit(127) }
        }
    }
}

/// Sends the error to the parent as a typed record ([`JailError::encode`]).
fn report(err_w: &OwnedFd, e: &JailError) {
    let bytes = e.encode();
    // SAFETY: writing from a live buffer to a descriptor we own.
    unsafe { libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
}

pub(super) fn prctl(option: libc::c_int, arg: u64, name: &str) -> Result<(), JailError> {
    // SAFETY: these prctl options take one integer argument.
    let r = unsafe { libc::prctl(option, arg, 0u64, 0u64, 0u64) };
    if r < 0 {
        return Err(JailError::sys(format!("prctl({name})"), Errno::last()));
    }
    Ok(())
}

/// The ids the jail has outside. Host root is never kept: a root caller
/// appears as nobody.
fn outside_ids() -> (u32, u32) {
    if Uid::effective().is_root() {
        (65534, 65534)
    } else {
        (Uid::effective().as_raw(), Gid::effective().as_raw())
    }
}

fn inside_ids(p: &Profile) -> (u32, u32) {
    let (ouid, ogid) = outside_ids();
    p.ids.inside(ouid, ogid)
}

fn write_id_maps(pid: Pid, (uid, gid): (u32, u32)) -> Result<(), JailError> {
    let (ouid, ogid) = outside_ids();
    let dir = format!("/proc/{pid}");
    let write = |file: &str, text: String| {
        std::fs::write(format!("{dir}/{file}"), text.as_bytes()).map_err(|e| {
            JailError::sys(
                format!("write({dir}/{file}, {:?})", text.trim()),
                io_errno(&e),
            )
        })
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {ouid} 1\n"))?;
    write("gid_map", format!("{gid} {ogid} 1\n"))
}

fn environment(p: &Profile, params: &BTreeMap<String, String>) -> Result<Vec<Vec<u8>>, JailError> {
    let mut vars: BTreeMap<OsString, OsString> = BTreeMap::new();
    for k in &p.env.keep {
        if let Some(v) = std::env::var_os(k) {
            vars.insert(k.into(), v);
        }
    }
    for (k, v) in &p.env.set {
        let v = profile::expand(v, params).map_err(|m| JailError::msg("[env] set", m))?;
        vars.insert(k.into(), v.into());
    }
    Ok(vars
        .into_iter()
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect())
}

fn cstrings(items: impl Iterator<Item = Vec<u8>>) -> Result<Vec<CString>, JailError> {
    items
        .map(|b| {
            CString::new(b)
                .map_err(|_| JailError::msg("arguments", "an argument or variable contains NUL"))
        })
        .collect()
}

fn pipe(floor: RawFd) -> Result<(OwnedFd, OwnedFd), JailError> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| JailError::sys("pipe2", e))?;
    Ok((above(r, floor)?, above(w, floor)?))
}

/// Moves our own descriptors above the passed ones so they never collide.
fn above(fd: OwnedFd, floor: RawFd) -> Result<OwnedFd, JailError> {
    if fd.as_raw_fd() >= floor {
        return Ok(fd);
    }
    let new = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(floor))
        .map_err(|e| JailError::sys("fcntl(F_DUPFD_CLOEXEC)", e))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Is `fd` an open descriptor of this process?
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes an integer and reads nothing from memory; a
    // number that is not open fails with EBADF.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

fn ensure_single_threaded() -> Result<(), JailError> {
    if let Ok(dir) = std::fs::read_dir("/proc/self/task")
        && dir.count() > 1
    {
        return Err(JailError::msg(
            "spawn",
            "called from a multithreaded process; enter the jail from a single-threaded one (fork or re-exec before starting threads)",
        ));
    }
    Ok(())
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::sys::Recording;

    fn order(steps: &Steps) -> Vec<String> {
        let rec = Recording::default();
        confine_child(&rec, steps).unwrap();
        rec.calls.into_inner()
    }

    fn position(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no call {prefix} in {calls:#?}"))
    }

    #[test]
    fn a_status_file_tells_caught_ignored_default_and_gone() {
        let status = |text: &str| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            f
        };
        // A Groups line longer than one read puts the masks in the second.
        let groups: String = (0..1200).map(|g| format!("{g} ")).collect();
        let f = status(&format!(
            "Name:\tx\nState:\tS (sleeping)\nGroups:\t{groups}\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000004000\nSigCgt:\t0000000000000002\n"
        ));
        let fd = f.as_raw_fd();
        assert_eq!(disposition(fd, libc::SIGINT), Disposition::Caught);
        assert_eq!(disposition(fd, libc::SIGTERM), Disposition::Ignored);
        assert_eq!(disposition(fd, libc::SIGHUP), Disposition::Default);
        let zombie =
            status("State:\tZ (zombie)\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n");
        assert_eq!(
            disposition(zombie.as_raw_fd(), libc::SIGTERM),
            Disposition::Gone
        );
        assert_eq!(disposition(-1, libc::SIGTERM), Disposition::Default);
    }

    #[test]
    fn the_child_confines_itself_in_the_designed_order() {
        let keep = CapsHashSet::new();
        let calls = order(&Steps {
            ids: Some((1000, 1000)),
            hostname: Some("jail"),
            mounts: Some(&[]),
            rlimits: &[(Rlimit::Nofile, 64), (Rlimit::Nproc, 8)],
            keep_caps: &keep,
            keep_fds: &[7, 9, 1],
        });
        let ids = position(&calls, "set_ids 1000 1000");
        let keepcaps_on = position(&calls, "prctl PR_SET_KEEPCAPS 1");
        let host = position(&calls, "sethostname jail");
        let pivot = position(&calls, "pivot_root");
        let nofile = position(&calls, "setrlimit RLIMIT_NOFILE 64");
        let bounding = position(&calls, "drop-bounding");
        let keepcaps_off = position(&calls, "prctl PR_SET_KEEPCAPS 0");
        let close = position(&calls, "close_range 3 6");
        // KEEPCAPS before the id switch; ids before any file is made; the
        // filesystem before limits; the bounding set while CAP_SETPCAP is
        // still held, KEEPCAPS off after it; descriptors last.
        assert!(keepcaps_on < ids && ids < host && host < pivot);
        assert!(pivot < nofile && nofile < bounding);
        assert!(bounding < keepcaps_off && keepcaps_off < close);
        // Every descriptor but 7 and 9 (and stdio) is closed.
        let closes: Vec<&String> = calls
            .iter()
            .filter(|c| c.starts_with("close_range"))
            .collect();
        assert_eq!(
            closes,
            [
                "close_range 3 6",
                "close_range 8 8",
                &format!("close_range 10 {}", u32::MAX - 1)
            ]
        );
    }

    #[test]
    fn without_a_user_namespace_ids_stay_and_a_failure_stops_the_rest() {
        let keep = CapsHashSet::new();
        let steps = Steps {
            ids: None,
            hostname: None,
            mounts: None,
            rlimits: &[(Rlimit::Nofile, 64)],
            keep_caps: &keep,
            keep_fds: &[],
        };
        let calls = order(&steps);
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("set_ids") || c.starts_with("mount"))
        );
        let rec = Recording {
            fail_on: Some("setrlimit".into()),
            ..Default::default()
        };
        assert!(confine_child(&rec, &steps).is_err());
        let calls = rec.calls.into_inner();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("drop-bounding") || c.starts_with("close_range"))
        );
    }
}
