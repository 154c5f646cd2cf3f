//! Confining a process that stays outside any jail but must hold nothing
//! worth taking: `pairjail join`, which waits in the guest's sshd session
//! (holding the guest's pty and the broker socket) while its jail runs.
//! Once the jail has started, join may only wait for it, forward signals
//! to it, restore the terminal, say why it ended and exit:
//!
//! * not dumpable (no ptrace or /proc/PID/mem by the same uid);
//! * no_new_privs;
//! * Landlock handling every filesystem and network right with no rule
//!   (best effort on older kernels), abstract sockets scoped;
//! * a seccomp allowlist: no open, no exec, no socket, `kill` only to the
//!   jail's pid 1, `ioctl` only the termios requests (never TIOCSTI).

use std::collections::BTreeMap;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::error::JailError;
use super::process::prctl;

/// What join does once its jail runs (std's exit path included).
const ALLOWED: &[i64] = &[
    libc::SYS_read,
    // The signal forwarder reads the jail's pid-1 program's status.
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_restart_syscall,
    libc::SYS_sigaltstack,
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_getpid,
    libc::SYS_clock_gettime,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// termios reads and writes, and the window size: what restoring the
/// guest's terminal needs.
const IOCTLS: &[u64] = &[
    libc::TCGETS,
    libc::TCSETS,
    libc::TCSETSW,
    libc::TCSETSF,
    libc::TIOCGWINSZ,
];

fn err(step: &str) -> impl Fn(String) -> JailError + '_ {
    move |e| JailError::msg(format!("confine: {step}"), e)
}

/// The filter for a waiter whose jail's pid 1 is `child`.
pub fn waiter_filter(child: i32) -> Result<seccompiler::BpfProgram, JailError> {
    let se = |e: seccompiler::BackendError| e.to_string();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, vec![])).collect();
    let kill_child =
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, child as u64)
            .map_err(se)
            .map_err(err("seccomp"))?;
    rules.insert(
        libc::SYS_kill,
        vec![
            SeccompRule::new(vec![kill_child])
                .map_err(se)
                .map_err(err("seccomp"))?,
        ],
    );
    let mut ioctl = Vec::new();
    for &req in IOCTLS {
        let c = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            req & 0xffff_ffff,
        )
        .map_err(se)
        .map_err(err("seccomp"))?;
        ioctl.push(
            SeccompRule::new(vec![c])
                .map_err(se)
                .map_err(err("seccomp"))?,
        );
    }
    rules.insert(libc::SYS_ioctl, ioctl);
    // EPERM, not a kill: a call std makes on some exit path must not turn a
    // clean goodbye into a crash; it still gets nothing.
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| err("seccomp")(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err("seccomp")(e.to_string()))
}

/// The calling process can no longer be ptraced or read through /proc by
/// other processes of its uid.
pub fn set_undumpable() -> Result<(), JailError> {
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
}

/// The calling process can be read through /proc by processes of its uid
/// again (what [`set_undumpable`] took away).
pub fn set_dumpable() -> Result<(), JailError> {
    prctl(libc::PR_SET_DUMPABLE, 1, "PR_SET_DUMPABLE")
}

/// Confines the calling process for the rest of its life (see the module
/// comment). `child` is the jail's pid 1, the only process it may signal.
pub fn confine_waiter(child: i32) -> Result<(), JailError> {
    set_undumpable()?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    let filter = waiter_filter(child)?;
    let abi = ABI::V6;
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::AbstractUnixSocket))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| err("landlock")(e.to_string()))?;
    seccompiler::apply_filter(&filter).map_err(|e| err("seccomp: load")(e.to_string()))
}
