//! Settings that are valid but that a security reviewer should see said
//! out loud: `profile check` prints them for a resolved profile.

use super::Action;
use super::model::{Mount, Profile, Scope};

/// Host paths whose writable bind lets a guest change the machine.
const SYSTEM: [&str; 12] = [
    "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/var", "/root", "/home",
    "/opt",
];

/// One line per dangerous-but-valid setting.
pub fn of(p: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    for cap in &p.capabilities.keep {
        out.push(format!(
            "capabilities.keep has {cap}: the jailed program holds it inside its namespaces (and against the host, wherever the kernel checks the initial namespace only)"
        ));
    }
    for m in &p.mounts {
        if let Mount::Bind { src, rw: true, .. } = m {
            let s = src.trim_end_matches('/');
            let s = if s.is_empty() { "/" } else { s };
            if SYSTEM.contains(&s) {
                out.push(format!(
                    "a writable bind of {src}: the guest can change the host's {src}"
                ));
            }
        }
    }
    for m in &p.mounts {
        if let Mount::Tmpfs {
            dst, size: None, ..
        } = m
        {
            out.push(format!(
                "the tmpfs on {dst} has no size: the jail can fill half of the machine's memory there"
            ));
        }
    }
    for w in &p.landlock.write {
        let s = w.trim_end_matches('/');
        if s.is_empty() || SYSTEM.contains(&s) {
            out.push(format!(
                "landlock.write has {w}: Landlock lets the jail write anywhere under it"
            ));
        }
        // Landlock grants a writable directory whole (split, it would
        // refuse new files at its top): only the hide's mount covers a
        // hidden path there, and a file saved again by rename, which drops
        // that mount, or made after entry is readable.
        for h in &p.hide {
            if h == s || h.strip_prefix(s).is_some_and(|rest| rest.starts_with('/')) {
                out.push(format!(
                    "hide has {h}, under landlock.write's {w}: only its mount hides it there (Landlock grants a writable directory whole), so a file saved again by rename or made after entry is readable"
                ));
            }
        }
    }
    if !p.namespaces.net {
        if !p.landlock.scopes.contains(&Scope::AbstractUnixSocket) {
            out.push("the host's network (namespaces.net = false) without landlock scope abstract-unix-socket: the jail can reach the host's abstract sockets (X11, D-Bus, tmux-like servers)".into());
        } else if opens_network_sockets(p) {
            out.push("the host's network (namespaces.net = false) with sockets beyond unix ones: the jail reaches the host's UDP ports, netlink and every other family it may open (Landlock keeps only TCP out)".into());
        }
    }
    if !p.seccomp.enabled {
        out.push(
            "seccomp is off: TIOCSTI, ptrace and the rest of the filter's list are allowed".into(),
        );
    }
    if p.seccomp.enabled && p.seccomp.default_action == Action::Log {
        out.push("seccomp default_action = \"log\": every call outside the allowlist runs (only TIOCSTI, TIOCLINUX, new namespaces, setuid and setgid modes, openat2 and io_uring stay refused); use it to learn what a program needs, never for guests".into());
    }
    // `[probe] allowed` turns an escape into "allowed by the profile":
    // these are escapes for any profile.
    const NEVER: [&str; 14] = [
        "read-home-secrets",
        "read-caller-ssh",
        "read-etc-shadow",
        "tiocsti",
        "tiocsti-high-bits",
        "tioclinux",
        "seccomp-mode",
        "no-new-privs",
        "capabilities-left",
        "setuid-root",
        "ptrace-host",
        "signal-host",
        "unshare-user",
        "clone-newuser",
    ];
    for name in p
        .probe
        .allowed
        .iter()
        .filter(|n| NEVER.contains(&n.as_str()))
    {
        out.push(format!(
            "probe.allowed lists {name}: `pairjail probe` will call that escape \"allowed by the profile\""
        ));
    }
    if !p.landlock.enabled {
        out.push("landlock is off: the mounts alone limit the files the jail reaches".into());
    }
    out
}

/// Can the jail make a socket of a family other than AF_UNIX? (With none,
/// the host's network namespace gives it nothing to reach: unix sockets
/// are files, which Landlock and the mounts limit, or abstract names, which
/// the scope keeps in.)
fn opens_network_sockets(p: &Profile) -> bool {
    // "log" lets every call through; io_uring makes sockets without the
    // `socket` call and its family check.
    if !p.seccomp.enabled || p.seccomp.default_action == Action::Log {
        return true;
    }
    let allowed = p.allowed_syscalls();
    if allowed.iter().any(|s| s == "io_uring_setup") {
        return true;
    }
    let makes_sockets = allowed.iter().any(|s| s == "socket");
    let families = &p.seccomp.socket_families;
    makes_sockets && (families.is_empty() || families.iter().any(|f| f != "AF_UNIX"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_guest_profiles_have_nothing_to_say_and_a_risky_one_does() {
        let search = crate::profile::SearchPath::only(vec![]);
        for name in ["guest-relay", "guest-direct"] {
            let p = crate::profile::resolve(name, &search).unwrap().profile;
            assert_eq!(of(&p), Vec::<String>::new(), "{name}");
        }
        let mut p = crate::profile::resolve("guest-relay", &search)
            .unwrap()
            .profile;
        p.capabilities.keep = vec!["CAP_SYS_ADMIN".into()];
        p.mounts.push(Mount::Bind {
            src: "/".into(),
            dst: "/host".into(),
            rw: true,
            optional: false,
            overlay: false,
        });
        p.namespaces.net = false;
        p.landlock.scopes.clear();
        let w = of(&p).join("\n");
        assert!(w.contains("CAP_SYS_ADMIN"), "{w}");
        assert!(w.contains("a writable bind of /"), "{w}");
        assert!(
            w.contains("without landlock scope abstract-unix-socket"),
            "{w}"
        );
        // The host's network with sockets beyond unix ones: every port.
        let mut p = crate::profile::resolve("guest-relay", &search)
            .unwrap()
            .profile;
        p.seccomp.allow.push("@unix-client".into());
        assert!(of(&p).is_empty(), "unix sockets only: {:?}", of(&p));
        let reaches = |p: &Profile| of(p).join("\n").contains("reaches the host's UDP ports");
        let mut inet = p.clone();
        inet.seccomp.socket_families.push("AF_INET".into());
        assert!(reaches(&inet), "{:?}", of(&inet));
        let mut log = p.clone();
        log.seccomp.default_action = Action::Log;
        assert!(reaches(&log), "{:?}", of(&log));
        let mut uring = p.clone();
        uring.seccomp.allow.push("io_uring_setup".into());
        assert!(reaches(&uring), "{:?}", of(&uring));
        // A hidden path under a writable rule is hidden by its mount only.
        let mut p = crate::profile::resolve("workspace", &search)
            .unwrap()
            .profile;
        assert!(!of(&p).join("\n").contains("hide has"), "{:?}", of(&p));
        p.landlock.write.push("{home}".into());
        let w = of(&p).join("\n");
        assert!(
            w.contains("hide has {home}/.ssh, under landlock.write's {home}"),
            "{w}"
        );
        // A tmpfs without a size.
        p.mounts.push(Mount::Tmpfs {
            dst: "/scratch".into(),
            size: None,
            mode: None,
        });
        let w = of(&p).join("\n");
        assert!(w.contains("the tmpfs on /scratch has no size"), "{w}");
    }
}
