//! Steps 11 and 13: the profile's allowlist compiled to BPF in the parent.
//! `ioctl` is allowed only for the listed requests, compared on the low 32
//! bits (the kernel ignores the high ones, so TIOCSTI | 1<<32 is TIOCSTI).
//! x32 and i386 syscall numbers match no rule and kill the process.
//!
//! The profile's filter is built by libseccomp with its binary-tree
//! optimiser: seccompiler's linear chain (about 290 instructions for
//! guest-relay) made the kernel walk it for every syscall number when it
//! built its action cache at load, 0.28 ms of every jail entry; the tree
//! (181 instructions, most of them the `prctl` rule below) loads in 0.16. The small fixed filters of the reaper and the waiter
//! stay with seccompiler.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

use super::error::JailError;
use crate::profile::plan::SeccompPlan;

fn err(e: impl std::fmt::Display) -> JailError {
    JailError::msg("seccomp: compile", e.to_string())
}

/// The jailed program's filter: the built-in profile's, built ahead of
/// time, when the plan is exactly one of theirs; else built now.
pub fn compile(plan: &SeccompPlan) -> Result<BpfProgram, JailError> {
    let built;
    let bytes = match crate::profile::compiled::filter(plan) {
        Some(b) => b,
        None => {
            built = super::bpf::tree(plan).map_err(err)?;
            &built[..]
        }
    };
    Ok(bytes
        .chunks_exact(8)
        .map(|i| seccompiler::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect())
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

    /// What became of `call` under `prog`, in a forked child.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Killed,
        Refused(i32),
        Returned,
    }

    fn outcome(prog: &BpfProgram, call: fn() -> libc::c_long) -> Outcome {
        // SAFETY: the child only makes raw syscalls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if seccompiler::apply_filter(prog).is_err() {
                    // SAFETY: leaving the child without unwinding.
                    unsafe { libc::_exit(3) }
                }
                let code = if call() < 0 {
                    100 + nix::errno::Errno::last_raw().min(150)
                } else {
                    0
                };
                // SAFETY: as above (a clone that got through leaves too).
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::SIGSYS, _) => {
                        Outcome::Killed
                    }
                    nix::sys::wait::WaitStatus::Exited(_, 0) => Outcome::Returned,
                    nix::sys::wait::WaitStatus::Exited(_, n) if n >= 100 => {
                        Outcome::Refused(n - 100)
                    }
                    other => panic!("unexpected child status {other:?}"),
                }
            }
        }
    }

    /// A profile whose default is an errno, not a kill: other ABIs are
    /// still killed, and clone's namespace rule refuses with that errno.
    #[test]
    fn under_an_errno_default_other_abis_die_and_clone_rules_hold() {
        let prog = filter("workspace");
        // SAFETY: getpid takes no argument.
        assert_eq!(
            outcome(&prog, || unsafe {
                libc::syscall(0x4000_0000 | libc::SYS_getpid)
            }),
            Outcome::Killed
        );
        // An unlisted syscall gets the default.
        // SAFETY: acct(NULL) turns accounting off; refused before it runs.
        assert_eq!(
            outcome(&prog, || unsafe { libc::syscall(libc::SYS_acct, 0) }),
            Outcome::Refused(libc::ENOSYS)
        );
        // clone without a namespace flag runs (both sides return and
        // leave); with CLONE_NEWUSER it is refused.
        // SAFETY: clone with a NULL stack behaves like fork.
        assert_eq!(
            outcome(&prog, || unsafe {
                libc::syscall(libc::SYS_clone, libc::SIGCHLD as u64, 0, 0, 0, 0)
            }),
            Outcome::Returned
        );
        // SAFETY: as above; refused before it runs.
        assert_eq!(
            outcome(&prog, || unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
                    0,
                    0,
                    0,
                    0,
                )
            }),
            Outcome::Refused(libc::ENOSYS)
        );
    }

    /// A file of this test's own that setuid may be tried on: (the
    /// directory kept alive, the path as a C string).
    fn scratch_file() -> (tempfile::TempDir, std::ffi::CString) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("prog");
        std::fs::write(&f, b"#!/bin/sh\n").unwrap();
        let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        (d, c)
    }

    #[test]
    fn no_filter_sets_the_setuid_or_setgid_bit_even_under_log() {
        let (_d, path) = scratch_file();
        static PATH: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
        static MADE: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
        let mut made = path.as_bytes().to_vec();
        made.extend_from_slice(b"-made");
        let made_path = std::path::PathBuf::from(String::from_utf8(made.clone()).unwrap());
        MADE.set(std::ffi::CString::new(made).unwrap()).unwrap();
        PATH.set(path).unwrap();
        let workspace = filter("workspace");
        // A log default that lists none of the mode calls: every other call
        // runs, these still do not.
        let mut p = resolve("guest-relay", &SearchPath::from_env())
            .unwrap()
            .profile;
        p.seccomp.default_action = crate::profile::Action::Log;
        let log = compile(plan(&p).unwrap().seccomp.as_ref().unwrap()).unwrap();
        static FD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        let file = std::fs::File::open(PATH.get().unwrap().to_str().unwrap()).unwrap();
        FD.set(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap();
        // Every call that sets a mode, with the setuid or setgid bit. The
        // pointers are live C strings; a file or descriptor that got through
        // is found below, or closed with the child.
        let setting: [(&str, Call); 9] = [
            // SAFETY: chmod on a live C string or an open descriptor.
            ("chmod", || unsafe {
                libc::syscall(libc::SYS_chmod, PATH.get().unwrap().as_ptr(), 0o4755)
            }),
            // SAFETY: fchmod on a live C string or an open descriptor.
            ("fchmod", || unsafe {
                libc::syscall(libc::SYS_fchmod, *FD.get().unwrap(), 0o2755)
            }),
            // SAFETY: fchmodat on a live C string or an open descriptor.
            ("fchmodat", || unsafe {
                libc::syscall(
                    libc::SYS_fchmodat,
                    libc::AT_FDCWD,
                    PATH.get().unwrap().as_ptr(),
                    0o2755,
                )
            }),
            // SAFETY: fchmodat2 on a live C string or an open descriptor.
            ("fchmodat2", || unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    libc::AT_FDCWD,
                    PATH.get().unwrap().as_ptr(),
                    0o4755,
                    0,
                )
            }),
            // SAFETY: creat on a live C string or an open descriptor.
            ("creat", || unsafe {
                libc::syscall(libc::SYS_creat, MADE.get().unwrap().as_ptr(), 0o4755)
            }),
            // SAFETY: open on a live C string or an open descriptor.
            ("open", || unsafe {
                libc::syscall(
                    libc::SYS_open,
                    MADE.get().unwrap().as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY,
                    0o6755,
                )
            }),
            // SAFETY: openat on a live C string or an open descriptor.
            ("openat", || unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    MADE.get().unwrap().as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL,
                    0o4755,
                )
            }),
            // SAFETY: mknod on a live C string or an open descriptor.
            ("mknod", || unsafe {
                libc::syscall(
                    libc::SYS_mknod,
                    MADE.get().unwrap().as_ptr(),
                    libc::S_IFREG | 0o4755,
                    0,
                )
            }),
            // SAFETY: mknodat on a live C string or an open descriptor.
            ("mknodat", || unsafe {
                libc::syscall(
                    libc::SYS_mknodat,
                    libc::AT_FDCWD,
                    MADE.get().unwrap().as_ptr(),
                    libc::S_IFREG | 0o2755,
                    0,
                )
            }),
        ];
        for prog in [&workspace, &log] {
            for (name, call) in setting {
                // EPERM where listed (or under log); the default (ENOSYS)
                // for a call the workspace does not list.
                assert!(
                    matches!(
                        outcome(prog, call),
                        Outcome::Refused(libc::EPERM | libc::ENOSYS)
                    ),
                    "{name} was not refused"
                );
            }
            // What the filter cannot see is refused too: openat2 (its mode
            // in a struct) and io_uring. Allowed, they would fail with
            // EINVAL or EFAULT on these null arguments.
            // SAFETY: raw syscalls with null pointers, refused before use.
            let unseen: [fn() -> libc::c_long; 2] = [
                || unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, 0, 0, 0) },
                || unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) },
            ];
            for call in unseen {
                assert_eq!(outcome(prog, call), Outcome::Refused(libc::ENOSYS));
            }
            // A plain mode still changes.
            // SAFETY: chmod of a live C string.
            let plain: fn() -> libc::c_long =
                || unsafe { libc::syscall(libc::SYS_chmod, PATH.get().unwrap().as_ptr(), 0o755) };
            assert_eq!(outcome(prog, plain), Outcome::Returned);
        }
        // Under log, the calls the profile lists give EPERM by name.
        assert_eq!(outcome(&log, setting[0].1), Outcome::Refused(libc::EPERM));
        drop(file);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(PATH.get().unwrap().to_str().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o6000, 0, "{mode:o}");
        assert!(!made_path.exists());
    }

    /// A jail without a pid namespace (the host's tmux clients of a jailed
    /// session) sees the caller's other processes: with `prlimit64` on any
    /// pid it could set their limits (RLIMIT_CPU 0 has the kernel kill
    /// them), a way out of Landlock's signal scope. Only its own.
    #[test]
    fn a_jail_that_sees_the_hosts_processes_sets_only_its_own_limits() {
        let prog = filter("session-client");
        fn parent() -> u64 {
            u64::from(nix::unistd::getppid().as_raw().unsigned_abs())
        }
        assert_eq!(outcome(&prog, || read_nofile_of(0)), Outcome::Returned);
        // The test process itself (the child's parent), and the same pid
        // with high bits set (the kernel reads a pid as 32 bits).
        assert_ne!(
            outcome(&prog, || read_nofile_of(parent())),
            Outcome::Returned
        );
        assert_ne!(
            outcome(&prog, || read_nofile_of((1 << 32) | parent())),
            Outcome::Returned
        );
    }

    /// `prlimit64` reading (setting nothing) the open-file limit of `pid`.
    fn read_nofile_of(pid: u64) -> libc::c_long {
        let mut old = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let no_new: *const libc::rlimit64 = std::ptr::null();
        // SAFETY: prlimit64 with no new limit, writing into a live local.
        unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                pid,
                libc::RLIMIT_NOFILE,
                no_new,
                &mut old as *mut libc::rlimit64,
            )
        }
    }

    /// A raw syscall tried in a child.
    type Call = fn() -> libc::c_long;

    /// True if the filter killed `call` (SIGSYS), false if it returned.
    fn killed(prog: &BpfProgram, call: fn() -> libc::c_long) -> bool {
        outcome(prog, call) == Outcome::Killed
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

    /// libseccomp compares 64-bit arguments: every 32-bit rule must also
    /// hold with high bits set, which the kernel ignores for int arguments.
    #[test]
    fn rules_on_32_bit_arguments_hold_with_high_bits_and_other_abis_die() {
        let prog = filter("guest-relay");
        // The relay is pid 1 without a reaper: it may not clear its
        // parent-death signal, with or without high bits.
        // SAFETY: prctl with integer arguments only.
        assert!(killed(&prog, || unsafe {
            libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, 0, 0, 0, 0)
        }));
        // SAFETY: as above.
        assert!(killed(&prog, || unsafe {
            libc::syscall(
                libc::SYS_prctl,
                (1u64 << 32) | libc::PR_SET_PDEATHSIG as u64,
                0,
                0,
                0,
                0,
            )
        }));
        // Every other prctl is allowed, whatever its bits.
        // SAFETY: PR_GET_DUMPABLE takes no pointer.
        assert!(!killed(&prog, || unsafe {
            libc::syscall(libc::SYS_prctl, libc::PR_GET_DUMPABLE, 0, 0, 0, 0)
        }));
        // SAFETY: as above.
        assert!(!killed(&prog, || unsafe {
            libc::syscall(
                libc::SYS_prctl,
                (1u64 << 40) | libc::PR_GET_DUMPABLE as u64,
                0,
                0,
                0,
                0,
            )
        }));
        // x32's getpid: another ABI, killed.
        // SAFETY: getpid takes no argument.
        assert!(killed(&prog, || unsafe {
            libc::syscall(0x4000_0000 | libc::SYS_getpid)
        }));
        let direct = filter("guest-direct");
        // An AF_INET socket hidden under high bits is still AF_INET.
        // SAFETY: socket takes integers; a socket that got through is
        // closed with the child.
        assert!(killed(&direct, || unsafe {
            libc::syscall(
                libc::SYS_socket,
                (1u64 << 32) | libc::AF_INET as u64,
                libc::SOCK_STREAM,
                0,
            )
        }));
        // SAFETY: as above.
        assert!(!killed(&direct, || unsafe {
            libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0)
        }));
    }

    #[test]
    fn disabled_seccomp_plans_nothing() {
        let mut p = Profile::default();
        p.seccomp.enabled = false;
        assert!(plan(&p).unwrap().seccomp.is_none());
    }
}
