//! Steps 11 and 13: the profile's allowlist compiled to BPF in the parent.
//! `ioctl` is allowed only for the listed requests, compared on the low 32
//! bits (the kernel ignores the high ones, so TIOCSTI | 1<<32 is TIOCSTI).
//! x32 syscall numbers match no rule and get the default action.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::error::JailError;
use crate::profile::Action;
use crate::profile::plan::{ArgCheck, SeccompPlan};

fn err(e: impl std::fmt::Display) -> JailError {
    JailError::msg("seccomp: compile", e.to_string())
}

fn action(a: Action) -> SeccompAction {
    match a {
        Action::Errno(n) => SeccompAction::Errno(n),
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Log => SeccompAction::Log,
    }
}

/// The jailed program's filter, compiled from the plan's rules.
pub fn compile(plan: &SeccompPlan) -> Result<BpfProgram, JailError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for r in &plan.rules {
        let list = r
            .any_of
            .iter()
            .map(|check| {
                let cond = match *check {
                    ArgCheck::Low32Eq { index, value } => SeccompCondition::new(
                        index,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        value,
                    ),
                    ArgCheck::NoBits { index, mask } => SeccompCondition::new(
                        index,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(mask),
                        0,
                    ),
                    ArgCheck::Low32Ne { index, value } => SeccompCondition::new(
                        index,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Ne,
                        value,
                    ),
                }
                .map_err(err)?;
                SeccompRule::new(vec![cond]).map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(r.nr, list);
    }
    build(rules, action(plan.default_action))
}

/// The pid-1 reaper's own filter: wait, forward signals, report, exit.
pub fn compile_reaper() -> Result<BpfProgram, JailError> {
    let rules = [
        libc::SYS_wait4,
        libc::SYS_kill,
        libc::SYS_write,
        libc::SYS_rt_sigreturn,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    build(rules, SeccompAction::KillProcess)
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    default: SeccompAction,
) -> Result<BpfProgram, JailError> {
    let filter = SeccompFilter::new(rules, default, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(err)?;
    filter.try_into().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::plan::plan;
    use crate::profile::{Profile, SearchPath, resolve};

    fn filter(name: &str) -> BpfProgram {
        let p = resolve(name, &SearchPath::from_env()).unwrap().profile;
        compile(plan(&p).unwrap().seccomp.as_ref().unwrap()).unwrap()
    }

    /// Runs `call` under `prog` in a forked child: true if the filter
    /// killed it (SIGSYS), false if the call returned.
    fn killed(prog: &BpfProgram, call: fn() -> libc::c_long) -> bool {
        // SAFETY: the child only makes raw syscalls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if seccompiler::apply_filter(prog).is_err() {
                    // SAFETY: leaving the child without unwinding.
                    unsafe { libc::_exit(3) }
                }
                let _ = call();
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::SIGSYS, _) => true,
                    nix::sys::wait::WaitStatus::Exited(_, 0) => false,
                    other => panic!("unexpected child status {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_relay_filter_kills_injection_and_nested_namespaces_only() {
        let prog = filter("guest-relay");
        // SAFETY: ioctl with a pointer to a live local byte.
        assert!(killed(&prog, || unsafe {
            let c = b'x';
            libc::syscall(libc::SYS_ioctl, 0, libc::TIOCSTI, &c as *const u8)
        }));
        // The high bits of the request are ignored by the kernel: still TIOCSTI.
        // SAFETY: as above.
        assert!(killed(&prog, || unsafe {
            let c = b'x';
            libc::syscall(
                libc::SYS_ioctl,
                0,
                (1u64 << 32) | libc::TIOCSTI,
                &c as *const u8,
            )
        }));
        // SAFETY: clone with a NULL stack behaves like fork; a child that
        // got through only returns 0 and the test process _exits it.
        assert!(killed(&prog, || unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
                0,
                0,
                0,
                0,
            )
        }));
        // Allowed: a terminal query and close.
        // SAFETY: TCGETS writes one termios into a live local.
        assert!(!killed(&prog, || unsafe {
            let mut t = std::mem::zeroed::<libc::termios>();
            libc::syscall(libc::SYS_ioctl, 0, libc::TCGETS, &mut t as *mut _)
        }));
        // SAFETY: close of a number that is never open.
        assert!(!killed(&prog, || unsafe {
            libc::syscall(libc::SYS_close, -1)
        }));
        assert!(compile_reaper().unwrap().len() > 5);
    }

    #[test]
    fn disabled_seccomp_plans_nothing() {
        let mut p = Profile::default();
        p.seccomp.enabled = false;
        assert!(plan(&p).unwrap().seccomp.is_none());
    }
}
