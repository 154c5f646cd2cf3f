//! Names a profile may use: syscalls, ioctl requests, capabilities.

use std::str::FromStr;

/// ioctl requests that inject input into a terminal. No profile may allow them.
pub const FORBIDDEN_IOCTLS: &[&str] = &["TIOCSTI", "TIOCLINUX"];

/// ioctl requests a profile may name, with their numbers (x86_64).
const IOCTLS: &[(&str, u64)] = &[
    ("TCGETS", libc::TCGETS),
    ("TCSETS", libc::TCSETS),
    ("TCSETSW", libc::TCSETSW),
    ("TCSETSF", libc::TCSETSF),
    ("TCFLSH", libc::TCFLSH),
    ("TCXONC", libc::TCXONC),
    ("TCSBRK", libc::TCSBRK),
    ("TIOCGWINSZ", libc::TIOCGWINSZ),
    ("TIOCSWINSZ", libc::TIOCSWINSZ),
    ("TIOCGPGRP", libc::TIOCGPGRP),
    ("TIOCSPGRP", libc::TIOCSPGRP),
    ("TIOCGSID", libc::TIOCGSID),
    ("TIOCSCTTY", libc::TIOCSCTTY),
    ("TIOCNOTTY", libc::TIOCNOTTY),
    ("TIOCGPTN", libc::TIOCGPTN),
    ("TIOCSPTLCK", libc::TIOCSPTLCK),
    ("TIOCOUTQ", libc::TIOCOUTQ),
    ("FIONREAD", libc::FIONREAD),
    ("FIONBIO", libc::FIONBIO),
    ("FIOCLEX", libc::FIOCLEX),
    ("FIONCLEX", libc::FIONCLEX),
    ("TIOCSTI", libc::TIOCSTI),
    ("TIOCLINUX", libc::TIOCLINUX),
];

/// Address families `socket_families` may name.
const FAMILIES: &[(&str, i32)] = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
    ("AF_NETLINK", libc::AF_NETLINK),
    ("AF_PACKET", libc::AF_PACKET),
    ("AF_VSOCK", libc::AF_VSOCK),
];

pub fn socket_family(name: &str) -> Option<i32> {
    FAMILIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn socket_family_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(n, _)| *n)
}

pub fn ioctl_number(name: &str) -> Option<u64> {
    IOCTLS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn ioctl_names() -> impl Iterator<Item = &'static str> {
    IOCTLS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !FORBIDDEN_IOCTLS.contains(n))
}

/// The syscall number on the running architecture.
pub fn syscall_number(name: &str) -> Option<i64> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id() as i64)
}

pub fn capability(name: &str) -> Option<caps::Capability> {
    caps::Capability::from_str(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_resolve() {
        assert_eq!(syscall_number("read"), Some(libc::SYS_read));
        assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3));
        assert_eq!(syscall_number("nope"), None);
        assert_eq!(ioctl_number("TIOCSTI"), Some(libc::TIOCSTI));
        assert!(!ioctl_names().any(|n| n == "TIOCSTI" || n == "TIOCLINUX"));
        assert!(capability("CAP_SYS_ADMIN").is_some());
        assert!(capability("CAP_NOPE").is_none());
    }
}
