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
use crate::profile::{Action, Profile, names};

const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

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

/// The jailed program's filter, or None when the profile disables seccomp.
pub fn compile(p: &Profile) -> Result<Option<BpfProgram>, JailError> {
    if !p.seccomp.enabled {
        return Ok(None);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in p.allowed_syscalls() {
        let nr = names::syscall_number(&name)
            .ok_or_else(|| JailError::msg("seccomp: compile", format!("unknown syscall {name}")))?;
        rules.insert(nr, vec![]);
    }
    let mut ioctl_rules = Vec::new();
    for name in &p.seccomp.ioctl {
        if names::FORBIDDEN_IOCTLS.contains(&name.as_str()) {
            return Err(JailError::msg(
                "seccomp: compile",
                format!("{name} can never be allowed"),
            ));
        }
        let req = names::ioctl_number(name)
            .ok_or_else(|| JailError::msg("seccomp: compile", format!("unknown ioctl {name}")))?;
        let cond = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            req & 0xffff_ffff,
        )
        .map_err(err)?;
        ioctl_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    if !ioctl_rules.is_empty() {
        rules.insert(libc::SYS_ioctl, ioctl_rules);
    }
    // Step 7: no nested namespaces. clone is allowed only without CLONE_NEW*
    // flags (validation keeps clone3, unshare and setns out entirely).
    if let Some(list) = rules.get_mut(&libc::SYS_clone) {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
            0,
        )
        .map_err(err)?;
        list.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    if !p.seccomp.socket_families.is_empty() {
        for nr in [libc::SYS_socket, libc::SYS_socketpair] {
            if let Some(list) = rules.get_mut(&nr) {
                for fam in &p.seccomp.socket_families {
                    let af = names::socket_family(fam).ok_or_else(|| {
                        JailError::msg("seccomp: compile", format!("unknown address family {fam}"))
                    })?;
                    let cond = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        af as u64,
                    )
                    .map_err(err)?;
                    list.push(SeccompRule::new(vec![cond]).map_err(err)?);
                }
            }
        }
    }
    build(rules, action(p.seccomp.default_action)).map(Some)
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
    use crate::profile::{SearchPath, resolve};

    #[test]
    fn shipped_guest_profiles_compile() {
        for name in ["guest-relay", "guest-direct", "workspace"] {
            let p = resolve(name, &SearchPath::from_env()).unwrap().profile;
            let prog = compile(&p).unwrap().unwrap();
            assert!(prog.len() > 10, "{name}: {} instructions", prog.len());
        }
        assert!(compile_reaper().unwrap().len() > 5);
    }

    #[test]
    fn disabled_seccomp_compiles_to_nothing() {
        let mut p = Profile::default();
        p.seccomp.enabled = false;
        assert!(compile(&p).unwrap().is_none());
    }

    #[test]
    fn forbidden_ioctls_are_refused_even_if_validation_was_skipped() {
        let mut p = Profile::default();
        p.seccomp.allow = vec!["execveat".into()];
        p.seccomp.ioctl = vec!["TIOCSTI".into()];
        assert!(compile(&p).is_err());
    }
}
