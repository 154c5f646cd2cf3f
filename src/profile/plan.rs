//! A profile lowered once to what the kernel is asked for: namespaces,
//! resource limits, seccomp rules, cgroup limits. The jail turns a [`Plan`]
//! into syscalls; the OCI export turns the same plan into `config.json`, so
//! the two can never disagree on a flag, a limit or a rule.

use super::model::Profile;
use super::{Action, names};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("unknown syscall {0}")]
    Syscall(String),
    #[error("unknown ioctl {0}")]
    Ioctl(String),
    #[error("{0} can never be allowed")]
    ForbiddenIoctl(String),
    #[error("unknown address family {0}")]
    Family(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    User,
    Mount,
    Pid,
    Net,
    Ipc,
    Uts,
    Cgroup,
}

impl Namespace {
    pub const ALL: [Namespace; 7] = [
        Namespace::User,
        Namespace::Mount,
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Cgroup,
    ];

    pub fn clone_flag(self) -> u64 {
        (match self {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
        }) as u64
    }

    pub fn flag_name(self) -> &'static str {
        match self {
            Namespace::User => "CLONE_NEWUSER",
            Namespace::Mount => "CLONE_NEWNS",
            Namespace::Pid => "CLONE_NEWPID",
            Namespace::Net => "CLONE_NEWNET",
            Namespace::Ipc => "CLONE_NEWIPC",
            Namespace::Uts => "CLONE_NEWUTS",
            Namespace::Cgroup => "CLONE_NEWCGROUP",
        }
    }

    fn wanted(self, p: &Profile) -> bool {
        let ns = &p.namespaces;
        match self {
            Namespace::User => ns.user,
            Namespace::Mount => ns.mount,
            Namespace::Pid => ns.pid,
            Namespace::Net => ns.net,
            Namespace::Ipc => ns.ipc,
            Namespace::Uts => ns.uts,
            Namespace::Cgroup => ns.cgroup,
        }
    }
}

/// Every CLONE_NEW* flag: a jailed `clone` may carry none of them.
pub fn all_namespace_flags() -> u64 {
    Namespace::ALL.iter().fold(0, |f, n| f | n.clone_flag())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    Nofile,
    Nproc,
    AddressSpace,
    Cpu,
    Fsize,
    Core,
}

impl Rlimit {
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::Nofile => "RLIMIT_NOFILE",
            Rlimit::Nproc => "RLIMIT_NPROC",
            Rlimit::AddressSpace => "RLIMIT_AS",
            Rlimit::Cpu => "RLIMIT_CPU",
            Rlimit::Fsize => "RLIMIT_FSIZE",
            Rlimit::Core => "RLIMIT_CORE",
        }
    }
}

/// A check on one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgCheck {
    /// The low 32 bits of argument `index` equal `value` (the kernel reads
    /// ioctl requests and socket families as 32-bit ints).
    Low32Eq { index: u8, value: u64 },
    /// Argument `index` has none of the bits in `mask`.
    NoBits { index: u8, mask: u64 },
    /// The low 32 bits of argument `index` are anything but `value`.
    Low32Ne { index: u8, value: u64 },
    /// Argument `index` has every bit in `mask`.
    AllBits { index: u8, mask: u64 },
}

/// A call refused with `errno` (when `when` holds, or always) before the
/// allowlist is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub name: &'static str,
    pub nr: i64,
    pub when: Option<ArgCheck>,
    pub errno: u32,
}

/// What no jail lets through, whatever its profile says: TIOCSTI and
/// TIOCLINUX, new or joined namespaces, and the calls whose work the
/// filter cannot see (`openat2`, io_uring; ENOSYS, on which programs fall
/// back to `openat`). Validation keeps them off every
/// allowlist, so a refusing default action refuses them; a `log` default
/// lets everything else through, so the filter then refuses these by name.
/// clone3 gets ENOSYS, on which C libraries fall back to clone.
pub fn refusals() -> Vec<Refusal> {
    let mut out = vec![
        Refusal {
            name: "clone3",
            nr: libc::SYS_clone3,
            when: None,
            errno: libc::ENOSYS as u32,
        },
        Refusal {
            name: "unshare",
            nr: libc::SYS_unshare,
            when: None,
            errno: libc::EPERM as u32,
        },
        Refusal {
            name: "setns",
            nr: libc::SYS_setns,
            when: None,
            errno: libc::EPERM as u32,
        },
    ];
    for ns in Namespace::ALL {
        out.push(Refusal {
            name: "clone",
            nr: libc::SYS_clone,
            when: Some(ArgCheck::AllBits {
                index: 0,
                mask: ns.clone_flag(),
            }),
            errno: libc::EPERM as u32,
        });
    }
    // What validation keeps off every allowlist because the filter cannot
    // see its work (see validate.rs): a `log` default would run it.
    for (name, nr) in [
        ("openat2", libc::SYS_openat2),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
    ] {
        out.push(Refusal {
            name,
            nr,
            when: None,
            errno: libc::ENOSYS as u32,
        });
    }
    for req in [libc::TIOCSTI, libc::TIOCLINUX] {
        out.push(Refusal {
            name: "ioctl",
            nr: libc::SYS_ioctl,
            when: Some(ArgCheck::Low32Eq {
                index: 1,
                value: req & 0xffff_ffff,
            }),
            errno: libc::EPERM as u32,
        });
    }
    out
}

/// The calls that set a file's mode, with the index of their mode
/// argument. A jailed program writes where the host's own files are (a
/// workspace): a program it leaves there setuid or setgid would run as
/// the host for any local user who can reach it, outside every jail, long
/// after the share. So no jail with seccomp on sets those bits (`openat2`,
/// whose mode is in a struct, and io_uring are never allowed: see
/// validate.rs).
const MODE_ARGS: [(&str, i64, u8); 9] = [
    ("chmod", libc::SYS_chmod, 1),
    ("fchmod", libc::SYS_fchmod, 1),
    ("fchmodat", libc::SYS_fchmodat, 2),
    ("fchmodat2", libc::SYS_fchmodat2, 2),
    ("creat", libc::SYS_creat, 1),
    ("open", libc::SYS_open, 2),
    ("openat", libc::SYS_openat, 3),
    ("mknod", libc::SYS_mknod, 1),
    ("mknodat", libc::SYS_mknodat, 2),
];

/// Setuid and setgid.
const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// One allowed syscall: always (no checks), or when any one check holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRule {
    pub name: String,
    pub nr: i64,
    pub any_of: Vec<ArgCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompPlan {
    pub default_action: Action,
    pub rules: Vec<SyscallRule>,
    /// Refused by name: [`refusals`] only under a `log` default; a
    /// setuid or setgid mode (see `MODE_ARGS`) always.
    pub refused: Vec<Refusal>,
}

/// Cgroup limits; v1 has shares where v2 has weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpu_weight: Option<u64>,
    pub required: bool,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        self.memory_max.is_none() && self.pids_max.is_none() && self.cpu_weight.is_none()
    }

    /// v1 `cpu.shares` (and OCI's `cpu.shares`): the default weight 100 is
    /// the default 1024 shares.
    pub fn cpu_shares(&self) -> Option<u64> {
        self.cpu_weight.map(|w| (w * 1024 / 100).max(2))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub namespaces: Vec<Namespace>,
    pub rlimits: Vec<(Rlimit, u64)>,
    /// None when the profile disables seccomp.
    pub seccomp: Option<SeccompPlan>,
    pub cgroup: CgroupLimits,
}

impl SeccompPlan {
    /// The plan for pairjail's own code called in the jail (a relay): the
    /// profile's allowlist less the exec calls, which only the jail's own
    /// last step (the exec of a program file) uses. A called program
    /// executes nothing (Landlock refuses it too); with the calls gone, a
    /// taken-over relay that tries meets the profile's default action (kill,
    /// for every built-in). Built ahead of time for the
    /// built-in profiles like their plans (build.rs).
    pub fn for_called(&self) -> SeccompPlan {
        const EXEC: [&str; 2] = ["execve", "execveat"];
        SeccompPlan {
            default_action: self.default_action,
            rules: self
                .rules
                .iter()
                .filter(|r| !EXEC.contains(&r.name.as_str()))
                .cloned()
                .collect(),
            refused: self.refused.clone(),
        }
    }

    /// Can the program start another process (or thread)? Not when none of
    /// the calls that do is allowed and what is not allowed is refused
    /// (a `log` default lets everything through).
    pub fn creates_processes(&self) -> bool {
        const CREATE: [&str; 4] = ["clone", "clone3", "fork", "vfork"];
        self.default_action == Action::Log
            || self.rules.iter().any(|r| CREATE.contains(&r.name.as_str()))
    }
}

impl Plan {
    /// Does the jail need a pid-1 reaper? Only if its program can start
    /// processes: one that cannot leaves nothing to reap, and runs as the
    /// jail's pid 1 itself.
    pub fn needs_reaper(&self) -> bool {
        self.seccomp
            .as_ref()
            .is_none_or(SeccompPlan::creates_processes)
    }

    /// The flags for the jail's one `clone`.
    pub fn clone_flags(&self) -> u64 {
        self.namespaces.iter().fold(0, |f, n| f | n.clone_flag())
    }
}

/// Lowers `p`; every name must be known here, so neither consumer meets an
/// unknown one later.
pub fn plan(p: &Profile) -> Result<Plan, PlanError> {
    let r = &p.rlimits;
    let rlimits = [
        (Rlimit::Nofile, r.nofile),
        (Rlimit::Nproc, r.nproc),
        (Rlimit::AddressSpace, r.address_space.map(|s| s.0)),
        (Rlimit::Cpu, r.cpu),
        (Rlimit::Fsize, r.fsize.map(|s| s.0)),
        (Rlimit::Core, r.core.map(|s| s.0)),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    Ok(Plan {
        namespaces: Namespace::ALL.into_iter().filter(|n| n.wanted(p)).collect(),
        rlimits,
        seccomp: if p.seccomp.enabled {
            Some(seccomp(p)?)
        } else {
            None
        },
        cgroup: CgroupLimits {
            memory_max: p.cgroup.memory_max.map(|s| s.0),
            pids_max: p.cgroup.pids_max,
            cpu_weight: p.cgroup.cpu_weight,
            required: p.cgroup.required,
        },
    })
}

fn seccomp(p: &Profile) -> Result<SeccompPlan, PlanError> {
    let mut rules = Vec::new();
    for name in p.allowed_syscalls() {
        let nr = names::syscall_number(&name).ok_or_else(|| PlanError::Syscall(name.clone()))?;
        let mut any_of = Vec::new();
        match name.as_str() {
            // Step 7: no nested namespaces; clone only without CLONE_NEW*
            // (validation keeps clone3, unshare and setns out entirely).
            "clone" => any_of.push(ArgCheck::NoBits {
                index: 0,
                mask: all_namespace_flags(),
            }),
            // Without a pid namespace the jail sees the caller's other
            // processes, whose limits it could set (RLIMIT_CPU 0 has the
            // kernel kill them: a way past Landlock's signal scope). Only
            // its own (pid 0; the kernel reads the pid as 32 bits).
            "prlimit64" if !p.namespaces.pid => {
                any_of.push(ArgCheck::Low32Eq { index: 0, value: 0 })
            }
            "socket" | "socketpair" => {
                for fam in &p.seccomp.socket_families {
                    let af =
                        names::socket_family(fam).ok_or_else(|| PlanError::Family(fam.clone()))?;
                    any_of.push(ArgCheck::Low32Eq {
                        index: 0,
                        value: af as u64,
                    });
                }
            }
            _ => {}
        }
        if let Some((_, _, index)) = MODE_ARGS.iter().find(|m| m.0 == name) {
            any_of.push(ArgCheck::NoBits {
                index: *index,
                mask: SET_ID_BITS.iter().sum(),
            });
        }
        rules.push(SyscallRule { name, nr, any_of });
    }
    // ioctl: only the listed requests, never TIOCSTI or TIOCLINUX.
    let mut requests = Vec::new();
    for name in &p.seccomp.ioctl {
        if names::FORBIDDEN_IOCTLS.contains(&name.as_str()) {
            return Err(PlanError::ForbiddenIoctl(name.clone()));
        }
        let req = names::ioctl_number(name).ok_or_else(|| PlanError::Ioctl(name.clone()))?;
        requests.push(ArgCheck::Low32Eq {
            index: 1,
            value: req & 0xffff_ffff,
        });
    }
    if !requests.is_empty() {
        rules.retain(|r| r.name != "ioctl");
        rules.push(SyscallRule {
            name: "ioctl".into(),
            nr: libc::SYS_ioctl,
            any_of: requests,
        });
    }
    let mut refused = if p.seccomp.default_action == Action::Log {
        refusals()
    } else {
        vec![]
    };
    // A mode with either bit is refused with EPERM, as the kernel refuses
    // what a user may not do, whatever the default action: for each call
    // listed, and under `log` (where every call runs) for all of them.
    let log = p.seccomp.default_action == Action::Log;
    for (name, nr, index) in MODE_ARGS {
        if log || rules.iter().any(|r| r.name == name) {
            for bit in SET_ID_BITS {
                refused.push(Refusal {
                    name,
                    nr,
                    when: Some(ArgCheck::AllBits { index, mask: bit }),
                    errno: libc::EPERM as u32,
                });
            }
        }
    }
    let mut plan = SeccompPlan {
        default_action: p.seccomp.default_action,
        rules,
        refused,
    };
    // A program that starts no processes runs as its jail's pid 1, tied to
    // its caller by its parent-death signal alone: it may not clear it.
    if !plan.creates_processes()
        && let Some(r) = plan.rules.iter_mut().find(|r| r.name == "prctl")
        && r.any_of.is_empty()
    {
        r.any_of.push(ArgCheck::Low32Ne {
            index: 0,
            value: libc::PR_SET_PDEATHSIG as u64,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{SearchPath, resolve};

    fn shipped(name: &str) -> Plan {
        plan(&resolve(name, &SearchPath::from_env()).unwrap().profile).unwrap()
    }

    #[test]
    fn guest_relay_plan_has_its_namespaces_and_guarded_calls() {
        let p = shipped("guest-relay");
        assert!(p.clone_flags() & libc::CLONE_NEWUSER as u64 != 0);
        // The host's network namespace: the relay cannot make a socket.
        assert!(p.clone_flags() & libc::CLONE_NEWNET as u64 == 0);
        assert!(p.clone_flags() & libc::CLONE_NEWPID as u64 != 0);
        let s = p.seccomp.unwrap();
        assert!(!s.rules.iter().any(|r| r.name == "socket"));
        let ioctl = s.rules.iter().find(|r| r.name == "ioctl").unwrap();
        assert!(
            !ioctl.any_of.is_empty(),
            "ioctl must be limited to requests"
        );
        let tiocsti = names::ioctl_number("TIOCSTI").unwrap() & 0xffff_ffff;
        assert!(!ioctl.any_of.contains(&ArgCheck::Low32Eq {
            index: 1,
            value: tiocsti
        }));
        if let Some(clone) = s.rules.iter().find(|r| r.name == "clone") {
            assert_eq!(
                clone.any_of,
                [ArgCheck::NoBits {
                    index: 0,
                    mask: all_namespace_flags()
                }]
            );
        }
    }

    #[test]
    fn only_a_program_that_cannot_start_processes_goes_without_a_reaper() {
        // The relay and tmux clients of jailed sessions start no programs.
        for name in ["guest-relay", "session-client"] {
            let p = shipped(name);
            assert!(!p.needs_reaper(), "{name}");
            // Nor may it cut its tie to its caller.
            let s = p.seccomp.unwrap();
            let prctl = s.rules.iter().find(|r| r.name == "prctl").unwrap();
            assert_eq!(
                prctl.any_of,
                [ArgCheck::Low32Ne {
                    index: 0,
                    value: libc::PR_SET_PDEATHSIG as u64
                }],
                "{name}"
            );
        }
        assert!(shipped("workspace").needs_reaper());
        let mut p = resolve("guest-relay", &SearchPath::from_env())
            .unwrap()
            .profile;
        p.seccomp.default_action = Action::Log;
        assert!(
            plan(&p).unwrap().needs_reaper(),
            "a log default allows clone"
        );
        p.seccomp.default_action = Action::KillProcess;
        p.seccomp.allow.push("vfork".into());
        assert!(plan(&p).unwrap().needs_reaper(), "vfork");
        p.seccomp.allow.pop();
        p.seccomp.enabled = false;
        assert!(plan(&p).unwrap().needs_reaper(), "no seccomp");
    }

    #[test]
    fn forbidden_and_unknown_names_are_errors() {
        let mut p = resolve("guest-relay", &SearchPath::from_env())
            .unwrap()
            .profile;
        p.seccomp.ioctl.push("TIOCSTI".into());
        assert_eq!(plan(&p), Err(PlanError::ForbiddenIoctl("TIOCSTI".into())));
        p.seccomp.ioctl.pop();
        p.seccomp.socket_families = vec!["AF_NOPE".into()];
        p.seccomp.allow.push("socket".into());
        assert_eq!(plan(&p), Err(PlanError::Family("AF_NOPE".into())));
    }

    #[test]
    fn cpu_weight_maps_to_shares() {
        let c = CgroupLimits {
            cpu_weight: Some(100),
            ..Default::default()
        };
        assert_eq!(c.cpu_shares(), Some(1024));
        let tiny = CgroupLimits {
            cpu_weight: Some(1),
            ..Default::default()
        };
        assert_eq!(tiny.cpu_shares(), Some(10));
    }
}
