//! The escape attempts, run inside the jail one per process. Each returns
//! what it observed and whether the jail held. A syscall the filter kills
//! never returns: the host side reads that as SIGSYS, blocked by seccomp.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;

use nix::errno::Errno;

/// What an attempt saw: `Ok(observation)` if the jail held.
pub type Seen = Result<String, Finding>;

/// An attempt that did not see the jail hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The jail let it through.
    Escaped(String),
    /// It could not be carried out here, so it proves nothing.
    Untested(String),
}

/// Secrets the probe plants in the home it gives a profile with a `home`
/// parameter; the shipped workspace profiles hide every one.
pub const SECRET_FILES: &[&str] = &[
    ".ssh/id_ed25519",
    ".gnupg/private-keys-v1.d/probe.key",
    ".aws/credentials",
    ".azure/accessTokens.json",
    ".config/gcloud/credentials.db",
    ".kube/config",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".config/gh/hosts.yml",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".password-store/probe.gpg",
    ".local/share/keyrings/login.keyring",
    ".mozilla/firefox/probe/cookies.sqlite",
    ".config/google-chrome/Default/Cookies",
    ".bash_history",
    ".zsh_history",
    ".vault-token",
];

pub struct Attempt {
    pub name: &'static str,
    pub expected: &'static str,
    pub run: fn(&Ctx) -> Seen,
}

/// Facts from outside the jail the attempts aim at.
pub struct Ctx {
    pub vars: BTreeMap<String, String>,
}

impl Ctx {
    fn get(&self, k: &str) -> &str {
        self.vars.get(k).map_or("", String::as_str)
    }
}

/// A raw syscall's outcome: blocked if it failed.
fn sys(name: &str, ret: libc::c_long) -> Seen {
    if ret < 0 {
        Ok(format!("{name}: {:?}", Errno::last()))
    } else {
        Err(Finding::Escaped(format!("{name} succeeded ({ret})")))
    }
}

fn path(p: &str) -> CString {
    CString::new(p).unwrap_or_default()
}

fn read_file(p: &str) -> Seen {
    match std::fs::File::open(p) {
        Err(e) => Ok(format!("open({p}): {}", errno_of(&e))),
        Ok(mut f) => {
            let mut buf = [0u8; 64];
            match f.read(&mut buf) {
                Ok(n) => Err(Finding::Escaped(format!("read {n} bytes of {p}"))),
                Err(e) => Ok(format!("opened {p} but read failed: {}", errno_of(&e))),
            }
        }
    }
}

fn list_dir(p: &str) -> Seen {
    match std::fs::read_dir(p) {
        Err(e) => Ok(format!("opendir({p}): {}", errno_of(&e))),
        Ok(d) => {
            let n = d.count();
            if n == 0 {
                Ok(format!("{p} is empty"))
            } else {
                Err(Finding::Escaped(format!("listed {n} entries of {p}")))
            }
        }
    }
}

fn errno_of(e: &std::io::Error) -> String {
    format!("{:?}", Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn create(p: &str) -> Seen {
    // Never through a link: the bait directory is open to every local
    // user, who could put one where `pwned` goes, aimed at a file of the
    // user's that a write the jail lets through would empty.
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
    {
        Err(e) => Ok(format!("create({p}): {}", errno_of(&e))),
        Ok(_) => Err(Finding::Escaped(format!("created {p}"))),
    }
}

/// If the exec works, the new program prints `ran` and the host side
/// reports the escape from that output.
fn exec(p: &str) -> Seen {
    exec_how(p, false)
}

/// `exec`, by `execveat` (the call the jail's own last step makes, so the
/// one a profile allows) when `at`.
fn exec_how(p: &str, at: bool) -> Seen {
    let prog = path(p);
    let (dash_c, script, version) = (path("-c"), path("echo ran"), path("--version"));
    let argv = if p.ends_with("sh") {
        [
            prog.as_ptr(),
            dash_c.as_ptr(),
            script.as_ptr(),
            std::ptr::null(),
        ]
    } else {
        [
            prog.as_ptr(),
            version.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        ]
    };
    let envp = [std::ptr::null::<libc::c_char>()];
    if at {
        // SAFETY: as below; AT_FDCWD and a NUL-terminated path.
        let r = unsafe {
            libc::syscall(
                libc::SYS_execveat,
                libc::AT_FDCWD,
                prog.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                0,
            )
        };
        return sys(&format!("execveat({p})"), r);
    }
    // SAFETY: NUL-terminated argv/envp arrays of live C strings.
    let r = unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    sys(&format!("execve({p})"), r as libc::c_long)
}

fn socket(domain: i32, ty: i32) -> Result<i32, String> {
    // SAFETY: socket takes only integers.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    if fd < 0 {
        Err(format!("{:?}", Errno::last()))
    } else {
        Ok(fd)
    }
}

fn try_socket(name: &str, domain: i32, ty: i32) -> Seen {
    match socket(domain, ty) {
        Err(e) => Ok(format!("socket({name}): {e}")),
        Ok(_) => Err(Finding::Escaped(format!("socket({name}) created"))),
    }
}

fn unix_addr(addr: &[u8]) -> (libc::sockaddr_un, u32) {
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as u16;
    let n = addr.len().min(sa.sun_path.len() - 1);
    for (i, b) in addr[..n].iter().enumerate() {
        sa.sun_path[i] = *b as libc::c_char;
    }
    (sa, (std::mem::size_of::<libc::sa_family_t>() + n) as u32)
}

fn connect_unix(addr: &[u8]) -> Seen {
    let fd = match socket(libc::AF_UNIX, libc::SOCK_STREAM) {
        Err(e) => return Ok(format!("socket(AF_UNIX): {e}")),
        Ok(fd) => fd,
    };
    let (sa, len) = unix_addr(addr);
    // SAFETY: sa is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), len) };
    sys("connect", r as libc::c_long)
}

/// A datagram to the address, without connecting first (sendto is checked
/// on its own, apart from connect).
fn send_unix_datagram(addr: &[u8]) -> Seen {
    let fd = match socket(libc::AF_UNIX, libc::SOCK_DGRAM) {
        Err(e) => return Ok(format!("socket(AF_UNIX, SOCK_DGRAM): {e}")),
        Ok(fd) => fd,
    };
    let (sa, len) = unix_addr(addr);
    let msg = b"probe";
    // SAFETY: msg and sa are live, of the lengths given.
    let r = unsafe {
        libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    sys("sendto", r as libc::c_long)
}

/// 127.0.0.1:`port`, where the bait listens on the host.
fn localhost_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

/// A datagram to the bait's UDP port on the host's 127.0.0.1, over IPv4
/// or as the IPv4-mapped IPv6 address, by sendto or by connect and write
/// (a profile may allow one and not the other).
fn udp_to_host(c: &Ctx, family: i32, connected: bool) -> Seen {
    let port: u16 = c.get("udp_port").parse().unwrap_or(0);
    let fd = match socket(family, libc::SOCK_DGRAM) {
        Err(e) => return Ok(format!("socket(SOCK_DGRAM): {e}")),
        Ok(fd) => fd,
    };
    let v4 = localhost_v4(port);
    let mut mapped = [0u8; 16];
    mapped[10..12].copy_from_slice(&[0xff, 0xff]);
    mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
    let v6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as u16,
        sin6_port: port.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: mapped },
        sin6_scope_id: 0,
    };
    let (sa, len): (*const libc::sockaddr, u32) = if family == libc::AF_INET6 {
        (
            (&v6 as *const libc::sockaddr_in6).cast(),
            std::mem::size_of_val(&v6) as u32,
        )
    } else {
        (
            (&v4 as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&v4) as u32,
        )
    };
    let msg = b"probe";
    if connected {
        // SAFETY: sa points at a live address of `len` bytes.
        let r = unsafe { libc::connect(fd, sa, len) };
        if r < 0 {
            return Ok(format!("connect(127.0.0.1:{port}): {:?}", Errno::last()));
        }
        // SAFETY: msg is live, of the length given.
        let r = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
        return sys(&format!("write to 127.0.0.1:{port}"), r as libc::c_long);
    }
    // SAFETY: msg and sa are live, of the lengths given.
    let r = unsafe { libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, sa, len) };
    sys(&format!("sendto(127.0.0.1:{port})"), r as libc::c_long)
}

fn ptrace_attach(pid: i32) -> Seen {
    // SAFETY: PTRACE_ATTACH takes a pid and no memory.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) };
    sys(&format!("ptrace(ATTACH, {pid})"), r)
}

fn ioctl_tty(req: u64, arg: *const libc::c_void, name: &str) -> Seen {
    // SAFETY: isatty only queries fd 0.
    if unsafe { libc::isatty(0) } != 1 {
        return Err(Finding::Untested(format!(
            "{name}: stdin is not a terminal, cannot test"
        )));
    }
    // SAFETY: the request's argument points at a live byte.
    let r = unsafe { libc::syscall(libc::SYS_ioctl, 0, req, arg) };
    sys(name, r)
}

/// # Safety
/// Any pointer among `args` must be NULL or point at a live buffer of the
/// size the syscall `nr` expects.
unsafe fn raw(nr: libc::c_long, args: [usize; 5]) -> libc::c_long {
    // SAFETY: the caller vouches for the arguments (see above).
    unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) }
}

pub const ATTEMPTS: &[Attempt] = &[
    Attempt {
        name: "read-etc-shadow",
        expected: "/etc/shadow cannot be read",
        run: |_| read_file("/etc/shadow"),
    },
    Attempt {
        name: "read-caller-ssh",
        expected: "the caller's ~/.ssh is invisible",
        run: |c| list_dir(c.get("ssh_dir")),
    },
    Attempt {
        name: "read-caller-home",
        expected: "the caller's home is invisible",
        run: |c| list_dir(c.get("home")),
    },
    Attempt {
        name: "read-proc-1-environ",
        expected: "no process environment can be read",
        run: |_| read_file("/proc/1/environ"),
    },
    Attempt {
        name: "read-sys",
        expected: "/sys is absent",
        run: |_| list_dir("/sys/kernel"),
    },
    Attempt {
        name: "read-host-bait",
        expected: "a file the probe wrote on the host is invisible",
        run: |c| read_file(c.get("bait_file")),
    },
    Attempt {
        name: "write-root",
        expected: "/ is not writable",
        run: |_| create("/pwned"),
    },
    Attempt {
        name: "write-tmp",
        expected: "/tmp is not writable",
        run: |_| create("/tmp/pwned"),
    },
    Attempt {
        name: "write-host-dir",
        expected: "a host directory cannot be written",
        run: |c| create(&format!("{}/pwned", c.get("bait_dir"))),
    },
    Attempt {
        name: "read-home-secrets",
        expected: "no secret in the home's hidden places can be read",
        run: |c| {
            let home = c.get("home");
            let mut read = Vec::new();
            for rel in SECRET_FILES {
                let p = format!("{home}/{rel}");
                if let Ok(text) = std::fs::read_to_string(&p)
                    && !text.is_empty()
                {
                    read.push(rel.to_string());
                }
            }
            if read.is_empty() {
                Ok(format!("none of {} secret files read", SECRET_FILES.len()))
            } else {
                Err(Finding::Escaped(format!("read {}", read.join(", "))))
            }
        },
    },
    Attempt {
        name: "reach-agent-socket",
        expected: "the host's gpg/ssh agent socket is unreachable",
        run: |c| connect_unix(c.get("agent_path").as_bytes()),
    },
    Attempt {
        name: "reach-run-user",
        expected: "/run/user (D-Bus, agents, desktop sockets) is absent",
        run: |_| list_dir("/run/user"),
    },
    Attempt {
        name: "write-home",
        expected: "the home directory cannot be written",
        run: |c| create(&format!("{}/pwned", c.get("home"))),
    },
    Attempt {
        name: "exec-setuid",
        expected: "a setuid program runs without its owner's rights",
        run: |_| {
            // no_new_privs makes exec ignore setuid bits; a nosuid mount
            // does too. Either is enough.
            // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointer.
            let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
            let nosuid = nix::sys::statvfs::statvfs("/usr/bin")
                .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
                .unwrap_or(false);
            if nnp == 1 || nosuid {
                Ok(format!("no_new_privs = {nnp}, /usr/bin nosuid = {nosuid}"))
            } else {
                Err(Finding::Escaped(
                    "setuid bits would be honoured on exec".into(),
                ))
            }
        },
    },
    Attempt {
        name: "exec-shell",
        expected: "/bin/sh cannot be executed",
        run: |_| exec("/bin/sh"),
    },
    Attempt {
        name: "execveat-shell",
        expected: "/bin/sh cannot be executed by execveat either",
        run: |_| exec_how("/bin/sh", true),
    },
    Attempt {
        name: "exec-proc-self",
        expected: "the program cannot re-execute itself by path",
        run: |_| exec("/proc/self/exe"),
    },
    Attempt {
        name: "socket-inet",
        expected: "no AF_INET socket",
        run: |_| try_socket("AF_INET", libc::AF_INET, libc::SOCK_STREAM),
    },
    Attempt {
        name: "socket-inet6",
        expected: "no AF_INET6 socket",
        run: |_| try_socket("AF_INET6", libc::AF_INET6, libc::SOCK_DGRAM),
    },
    Attempt {
        name: "socket-netlink",
        expected: "no AF_NETLINK socket",
        run: |_| try_socket("AF_NETLINK", libc::AF_NETLINK, libc::SOCK_RAW),
    },
    Attempt {
        name: "socket-packet",
        expected: "no AF_PACKET socket",
        run: |_| try_socket("AF_PACKET", libc::AF_PACKET, libc::SOCK_RAW),
    },
    Attempt {
        name: "tcp-localhost",
        expected: "the host's 127.0.0.1 listener is unreachable",
        run: |c| {
            let port: u16 = c.get("tcp_port").parse().unwrap_or(0);
            let fd = match socket(libc::AF_INET, libc::SOCK_STREAM) {
                Err(e) => return Ok(format!("socket(AF_INET): {e}")),
                Ok(fd) => fd,
            };
            let sa = localhost_v4(port);
            // SAFETY: sa is a valid sockaddr_in.
            let r = unsafe {
                libc::connect(
                    fd,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&sa) as u32,
                )
            };
            sys(&format!("connect(127.0.0.1:{port})"), r as libc::c_long)
        },
    },
    Attempt {
        name: "udp-localhost",
        expected: "no datagram reaches the host's 127.0.0.1",
        // Landlock has no UDP rule: only seccomp's socket families or a
        // network namespace of the jail's own (its loopback down) stop it.
        run: |c| udp_to_host(c, libc::AF_INET, false),
    },
    Attempt {
        name: "udp-localhost-connected",
        expected: "no datagram reaches the host's 127.0.0.1 through connect and write",
        run: |c| udp_to_host(c, libc::AF_INET, true),
    },
    Attempt {
        name: "udp6-localhost",
        expected: "no datagram reaches the host's 127.0.0.1 as ::ffff:127.0.0.1",
        run: |c| udp_to_host(c, libc::AF_INET6, false),
    },
    Attempt {
        name: "abstract-unix-datagram",
        expected: "no datagram reaches the host's abstract unix socket",
        run: |c| {
            send_unix_datagram(&[b"\0".as_slice(), c.get("abstract_dgram").as_bytes()].concat())
        },
    },
    Attempt {
        name: "abstract-unix-socket",
        expected: "the host's abstract unix socket is unreachable",
        run: |c| connect_unix(&[b"\0".as_slice(), c.get("abstract").as_bytes()].concat()),
    },
    Attempt {
        name: "path-unix-socket",
        expected: "the host's unix socket file is unreachable",
        run: |c| connect_unix(c.get("unix_path").as_bytes()),
    },
    Attempt {
        name: "ptrace-pid1",
        expected: "the jail's pid 1 cannot be traced",
        run: |_| ptrace_attach(1),
    },
    Attempt {
        name: "ptrace-host",
        expected: "a host process cannot be traced",
        run: |c| ptrace_attach(c.get("host_pid").parse().unwrap_or(1)),
    },
    Attempt {
        name: "process-vm-readv",
        expected: "pid 1's memory cannot be read",
        run: |_| {
            let mut buf = [0u8; 8];
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 8,
            };
            let remote = libc::iovec {
                iov_base: 0x400000 as *mut libc::c_void,
                iov_len: 8,
            };
            // SAFETY: local points at an 8-byte buffer; remote is only read by the kernel.
            let r = unsafe { libc::process_vm_readv(1, &local, 1, &remote, 1, 0) };
            sys("process_vm_readv(1)", r as libc::c_long)
        },
    },
    Attempt {
        name: "pidfd-getfd",
        expected: "no descriptor can be stolen from pid 1",
        run: |_| {
            // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
            let pidfd = unsafe { raw(libc::SYS_pidfd_open, [1, 0, 0, 0, 0]) };
            if pidfd < 0 {
                return Ok(format!("pidfd_open(1): {:?}", Errno::last()));
            }
            sys(
                "pidfd_getfd(pid 1, fd 0)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_pidfd_getfd, [pidfd as usize, 0, 0, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "signal-host",
        expected: "host processes can be neither seen nor signalled",
        run: |c| {
            let pid: i32 = c.get("host_pid").parse().unwrap_or(1);
            // SAFETY: signal 0 only checks existence.
            let r = unsafe { libc::kill(pid, 0) };
            sys(&format!("kill({pid}, 0)"), r as libc::c_long)
        },
    },
    Attempt {
        name: "tiocsti",
        expected: "no keystroke can be injected into the terminal",
        run: |_| {
            let b = b'x';
            ioctl_tty(libc::TIOCSTI, (&b as *const u8).cast(), "ioctl(0, TIOCSTI)")
        },
    },
    Attempt {
        name: "tiocsti-high-bits",
        expected: "TIOCSTI with the high 32 bits set is refused too",
        run: |_| {
            let b = b'x';
            ioctl_tty(
                libc::TIOCSTI | (1u64 << 32),
                (&b as *const u8).cast(),
                "ioctl(0, 1<<32 | TIOCSTI)",
            )
        },
    },
    Attempt {
        name: "tioclinux",
        expected: "TIOCLINUX is refused",
        run: |_| {
            let sub = [3u8; 1]; // TIOCL_PASTESEL
            ioctl_tty(libc::TIOCLINUX, sub.as_ptr().cast(), "ioctl(0, TIOCLINUX)")
        },
    },
    Attempt {
        name: "setuid-root",
        expected: "uid 0 cannot be taken",
        // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
        run: |_| sys("setuid(0)", unsafe { raw(libc::SYS_setuid, [0; 5]) }),
    },
    Attempt {
        name: "mount",
        expected: "nothing can be mounted",
        run: |_| {
            let (src, dst, ty) = (path("none"), path("/"), path("tmpfs"));
            sys(
                "mount(tmpfs, /)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_mount,
                        [
                            src.as_ptr() as usize,
                            dst.as_ptr() as usize,
                            ty.as_ptr() as usize,
                            0,
                            0,
                        ],
                    )
                },
            )
        },
    },
    Attempt {
        name: "umount-root",
        expected: "/ cannot be unmounted",
        run: |_| {
            let root = path("/");
            sys(
                "umount2(/, MNT_DETACH)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_umount2,
                        [root.as_ptr() as usize, libc::MNT_DETACH as usize, 0, 0, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "pivot-root",
        expected: "pivot_root is refused",
        run: |_| {
            let dot = path(".");
            sys(
                "pivot_root(., .)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_pivot_root,
                        [dot.as_ptr() as usize, dot.as_ptr() as usize, 0, 0, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "chroot",
        expected: "chroot is refused",
        run: |_| {
            let root = path("/");
            sys(
                "chroot(/)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_chroot, [root.as_ptr() as usize, 0, 0, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "unshare-user",
        expected: "no nested user namespace",
        run: |_| {
            sys(
                "unshare(CLONE_NEWUSER)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_unshare,
                        [libc::CLONE_NEWUSER as usize, 0, 0, 0, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "clone-newuser",
        expected: "clone cannot create a user namespace",
        run: |_| {
            // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
            let r = unsafe {
                raw(
                    libc::SYS_clone,
                    [(libc::CLONE_NEWUSER | libc::SIGCHLD) as usize, 0, 0, 0, 0],
                )
            };
            if r == 0 {
                // SAFETY: the clone child leaves at once.
                unsafe { libc::_exit(0) }
            }
            sys("clone(CLONE_NEWUSER)", r)
        },
    },
    Attempt {
        name: "clone3",
        expected: "clone3 is refused",
        run: |_| {
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls
            let args: [u64; 8] = [
                libc::CLONE_NEWUSER as u64,
                0,
                0,
                0,
                libc::SIGCHLD as u64,
                0,
                0,
                0,
            ];
            // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
            let r = unsafe {
                raw(
                    libc::SYS_clone3,
                    [
                        args.as_ptr() as usize,
                        std::mem::size_of_val(&args),
                        0,
                        0,
                        0,
                    ],
                )
            };
            if r == 0 {
                // SAFETY: the clone child leaves at once.
                unsafe { libc::_exit(0) }
            }
            sys("clone3(CLONE_NEWUSER)", r)
        },
    },
    Attempt {
        name: "keyctl",
        expected: "the session keyring is out of reach",
        run: |_| {
            sys(
                "keyctl(GET_KEYRING_ID, session)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_keyctl, [0, (-3i64) as usize, 0, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "add-key",
        expected: "no key can be added",
        run: |_| {
            let (ty, desc) = (path("user"), path("pairjail-probe"));
            let data = b"x";
            sys(
                "add_key(user)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_add_key,
                        [
                            ty.as_ptr() as usize,
                            desc.as_ptr() as usize,
                            data.as_ptr() as usize,
                            1,
                            (-2i64) as usize,
                        ],
                    )
                },
            )
        },
    },
    Attempt {
        name: "bpf",
        expected: "no BPF map or program",
        run: |_| {
            // union bpf_attr for BPF_MAP_CREATE: type=ARRAY(2), key 4, value 4, 1 entry.
            let attr: [u32; 16] = [2, 4, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            sys(
                "bpf(BPF_MAP_CREATE)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_bpf,
                        [
                            0,
                            attr.as_ptr() as usize,
                            std::mem::size_of_val(&attr),
                            0,
                            0,
                        ],
                    )
                },
            )
        },
    },
    Attempt {
        name: "perf-event-open",
        expected: "perf_event_open is refused",
        run: |_| {
            // struct perf_event_attr: type SOFTWARE(1), size 128, config CPU_CLOCK(0).
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
            attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
            sys(
                "perf_event_open",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_perf_event_open,
                        [attr.as_ptr() as usize, 0, usize::MAX, usize::MAX, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "userfaultfd",
        expected: "userfaultfd is refused",
        // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
        run: |_| sys("userfaultfd", unsafe { raw(libc::SYS_userfaultfd, [0; 5]) }),
    },
    Attempt {
        name: "io-uring",
        expected: "io_uring is refused",
        run: |_| {
            let params = [0u8; 120];
            sys(
                "io_uring_setup",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_io_uring_setup,
                        [1, params.as_ptr() as usize, 0, 0, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "personality",
        expected: "the execution domain cannot be changed",
        run: |_| {
            sys(
                "personality(ADDR_NO_RANDOMIZE)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_personality, [0x0040000, 0, 0, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "open-by-handle-at",
        expected: "open_by_handle_at is refused",
        run: |_| {
            // struct file_handle: handle_bytes 8, type 1 (FILEID_INO32_GEN), inode 2 (a root).
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&8u32.to_ne_bytes());
            h[4..8].copy_from_slice(&1i32.to_ne_bytes());
            h[8..12].copy_from_slice(&2u32.to_ne_bytes());
            sys(
                "open_by_handle_at",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_open_by_handle_at,
                        [
                            (libc::AT_FDCWD as isize) as usize,
                            h.as_ptr() as usize,
                            0,
                            0,
                            0,
                        ],
                    )
                },
            )
        },
    },
    Attempt {
        name: "syslog",
        expected: "the kernel log cannot be read",
        run: |_| {
            let mut buf = [0u8; 64];
            sys(
                "syslog(READ_ALL)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_syslog,
                        [3, buf.as_mut_ptr() as usize, buf.len(), 0, 0],
                    )
                },
            )
        },
    },
    Attempt {
        name: "reboot",
        expected: "reboot is refused",
        run: |_| {
            sys(
                "reboot(CAD_OFF)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_reboot, [0xfee1dead, 672274793, 0, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "iopl",
        expected: "no I/O port access",
        // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
        run: |_| sys("iopl(3)", unsafe { raw(libc::SYS_iopl, [3, 0, 0, 0, 0]) }),
    },
    Attempt {
        name: "init-module",
        expected: "no kernel module can be loaded",
        run: |_| {
            let args = path("");
            sys(
                "init_module",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(libc::SYS_init_module, [0, 0, args.as_ptr() as usize, 0, 0]) },
            )
        },
    },
    Attempt {
        name: "mknod",
        expected: "no device node can be made",
        run: |_| {
            let p = path("/tmp/null");
            sys(
                "mknod(char 1:3)",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe {
                    raw(
                        libc::SYS_mknodat,
                        [
                            (libc::AT_FDCWD as isize) as usize,
                            p.as_ptr() as usize,
                            (libc::S_IFCHR | 0o666) as usize,
                            0x103,
                            0,
                        ],
                    )
                },
            )
        },
    },
    Attempt {
        name: "x32-syscall",
        expected: "x32 syscall numbers are refused",
        run: |_| {
            sys(
                "getpid via x32",
                // SAFETY: integer arguments, or pointers to live buffers of the size the call expects.
                unsafe { raw(0x4000_0000 | libc::SYS_getpid, [0; 5]) },
            )
        },
    },
    Attempt {
        name: "capabilities-left",
        expected: "no capability in any of the five sets",
        run: |_| {
            let mut held = Vec::new();
            for set in [
                caps::CapSet::Effective,
                caps::CapSet::Permitted,
                caps::CapSet::Inheritable,
                caps::CapSet::Ambient,
                caps::CapSet::Bounding,
            ] {
                match caps::read(None, set) {
                    Ok(s) if !s.is_empty() => held.push(format!("{set:?}: {} caps", s.len())),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Finding::Untested(format!("could not read {set:?}: {e}")));
                    }
                }
            }
            if held.is_empty() {
                Ok("all five sets empty".into())
            } else {
                Err(Finding::Escaped(held.join(", ")))
            }
        },
    },
    Attempt {
        name: "no-new-privs",
        expected: "no_new_privs is set",
        run: |_| {
            // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointer.
            let r = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
            if r == 1 {
                Ok("no_new_privs = 1".into())
            } else {
                Err(Finding::Escaped(format!("no_new_privs = {r}")))
            }
        },
    },
    Attempt {
        name: "seccomp-mode",
        expected: "a seccomp filter is loaded",
        run: |_| {
            // SAFETY: PR_GET_SECCOMP takes no pointer.
            let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
            if r == 2 {
                Ok("seccomp mode 2 (filter)".into())
            } else {
                Err(Finding::Escaped(format!("seccomp mode {r}")))
            }
        },
    },
    Attempt {
        name: "leaked-fds",
        expected: "only stdio is open (the probe leaked a host file on purpose)",
        run: |_| {
            let open: Vec<i32> = (3..1024)
                // SAFETY: F_GETFD only tests the number.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
                .collect();
            if open.is_empty() {
                Ok("descriptors 3..1024 closed".into())
            } else {
                Err(Finding::Escaped(format!("open descriptors: {open:?}")))
            }
        },
    },
    Attempt {
        name: "fork-bomb",
        expected: "process creation is stopped well before 1000",
        run: |_| {
            for n in 0..1000 {
                // SAFETY: the child only pauses until the jail ends.
                match unsafe { libc::fork() } {
                    0 => loop {
                        // SAFETY: pause has no arguments.
                        unsafe { libc::pause() };
                    },
                    r if r < 0 => {
                        return Ok(format!("fork #{} failed: {:?}", n + 1, Errno::last()));
                    }
                    _ => {}
                }
            }
            Err(Finding::Escaped("1000 processes created".into()))
        },
    },
    Attempt {
        name: "memory-bomb",
        expected: "address space is capped well before 64 GiB",
        run: |_| {
            for n in 0..64usize {
                // SAFETY: an anonymous mapping that is never touched.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        1 << 30,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Ok(format!(
                        "mmap of GiB #{} failed: {:?}",
                        n + 1,
                        Errno::last()
                    ));
                }
            }
            Err(Finding::Escaped("mapped 64 GiB".into()))
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The bait directory is open to every local user: a link one of them
    /// put where a write attempt goes is never written through, so a jail
    /// that lets the write out still empties none of the user's files.
    #[test]
    fn a_write_attempt_never_follows_a_link() {
        let d = tempfile::tempdir().expect("tempdir");
        let target = d.path().join("authorized_keys");
        std::fs::write(&target, "the user's own\n").expect("write");
        let planted = d.path().join("pwned");
        std::os::unix::fs::symlink(&target, &planted).expect("symlink");
        let seen = create(planted.to_str().expect("utf-8"));
        assert!(
            matches!(&seen, Ok(said) if said.contains("ELOOP")),
            "{seen:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "the user's own\n"
        );
    }
}
