//! What this machine can and cannot do for pairjail, each problem with
//! its fix (`pairjail doctor` prints them).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::broker::paths;
use crate::jail::landlock;

#[derive(Serialize, schemars::JsonSchema)]
pub struct Check {
    pub name: &'static str,
    /// ok, warn or fail.
    pub status: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: "ok",
        detail,
        fix: None,
    }
}
fn warn(name: &'static str, detail: String, fix: &str) -> Check {
    Check {
        name,
        status: "warn",
        detail,
        fix: Some(fix.into()),
    }
}
fn fail(name: &'static str, detail: String, fix: &str) -> Check {
    Check {
        name,
        status: "fail",
        detail,
        fix: Some(fix.into()),
    }
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Every check, in the order printed.
pub fn checks(pair_user: &str, runtime_dir: Option<&Path>) -> Vec<Check> {
    let mut checks = Vec::new();

    let max_ns = read("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let clone = read("/proc/sys/kernel/unprivileged_userns_clone");
    checks.push(if max_ns == "0" || clone.as_deref() == Some("0") {
        fail(
            "user namespaces",
            format!(
                "max_user_namespaces={max_ns}, unprivileged_userns_clone={}",
                clone.unwrap_or("-".into())
            ),
            "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1",
        )
    } else {
        ok("user namespaces", format!("max_user_namespaces={max_ns}"))
    });
    let abi = landlock::kernel_abi();
    checks.push(if abi >= 6 {
        ok("landlock", format!("ABI {abi}"))
    } else {
        fail("landlock", format!("ABI {abi}; the shipped profiles pin ABI 6"), "use Linux 6.12 or newer (Landlock ABI 6) with lsm=…,landlock, or set compat = \"best-effort\" in your profiles")
    });
    checks.push(match read("/proc/sys/kernel/seccomp/actions_avail") {
        Some(a) if a.contains("kill_process") => ok("seccomp", a),
        _ => fail(
            "seccomp",
            "no seccomp filter support".into(),
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        ),
    });
    checks.push(match read("/proc/sys/dev/tty/legacy_tiocsti").as_deref() {
        Some("1") => warn("dev.tty.legacy_tiocsti", "1: any process sharing a terminal can inject keystrokes (guest jails block it with seccomp)".into(), "sysctl -w dev.tty.legacy_tiocsti=0 (defence in depth)"),
        Some(v) => ok("dev.tty.legacy_tiocsti", v.to_string()),
        None => ok("dev.tty.legacy_tiocsti", "absent (kernel before 6.2: TIOCSTI is always allowed; guest jails block it with seccomp)".into()),
    });
    checks.push(match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if tmux_version(&v).is_some_and(|have| have >= (3, 3)) {
                ok("tmux", v)
            } else {
                fail("tmux", v, "install tmux 3.3 or newer")
            }
        }
        _ => fail("tmux", "not found".into(), "apt-get install tmux"),
    });
    checks.push(match crate::exe::own() {
        Ok(exe) => ok(
            "binary",
            format!("forced commands will run {}", exe.display()),
        ),
        Err(e) => fail(
            "binary",
            e.to_string(),
            "run pairjail from its installed path",
        ),
    });
    match paths::runtime_dir(runtime_dir) {
        Ok(rt) => {
            use std::os::unix::fs::MetadataExt;
            checks.push(match std::fs::metadata(&rt) {
                Ok(m)
                    if m.mode() & 0o1777 == 0o1777
                        || m.uid() == nix::unistd::Uid::effective().as_raw() =>
                {
                    ok(
                        "runtime directory",
                        format!("{} mode {:o}", rt.display(), m.mode() & 0o7777),
                    )
                }
                Ok(m) => fail(
                    "runtime directory",
                    format!(
                        "{} mode {:o}, owner {}",
                        rt.display(),
                        m.mode() & 0o7777,
                        m.uid()
                    ),
                    "sudo pairjail setup --pair-user pair (makes it 1777)",
                ),
                Err(_) => warn(
                    "runtime directory",
                    format!("{} does not exist yet", rt.display()),
                    "pairjail start creates it, or sudo pairjail setup --pair-user pair",
                ),
            });
        }
        Err(e) => checks.push(fail(
            "runtime directory",
            e,
            "sudo pairjail setup --pair-user pair",
        )),
    }
    let spec = format!("user={pair_user},host=localhost,addr=127.0.0.1");
    checks.push(
        match Command::new("sshd").args(["-T", "-C", &spec]).output() {
            Ok(o) if o.status.success() => {
                let t = String::from_utf8_lossy(&o.stdout);
                let akc = t
                    .lines()
                    .find(|l| l.starts_with("authorizedkeyscommand "))
                    .unwrap_or("authorizedkeyscommand none");
                let fwd = t.lines().any(|l| l == "disableforwarding yes");
                if akc.contains("authorized-keys") && fwd {
                    ok(
                        "sshd (pair-user mode)",
                        format!("{akc}; disableforwarding yes"),
                    )
                } else {
                    warn(
                        "sshd (pair-user mode)",
                        format!("not set up for {pair_user} ({akc}); no-root mode still works"),
                        "sudo pairjail setup --pair-user pair",
                    )
                }
            }
            _ => warn(
                "sshd (pair-user mode)",
                "cannot read sshd's effective config (sshd -T needs root)".into(),
                "run pairjail doctor as root, or install openssh-server",
            ),
        },
    );

    checks
}

/// `tmux 3.3a` → (3, 3); `tmux next-3.5` → (3, 5); `tmux 3.10` → (3, 10).
/// Compared as numbers: as a float, 3.10 would be older than 3.3.
pub fn tmux_version(v: &str) -> Option<(u32, u32)> {
    let num = v.rsplit([' ', '-']).next()?;
    let (major, rest) = num.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::tmux_version;

    #[test]
    fn tmux_versions_compare_as_numbers() {
        assert_eq!(tmux_version("tmux 3.3a"), Some((3, 3)));
        assert_eq!(tmux_version("tmux next-3.5"), Some((3, 5)));
        assert!(tmux_version("tmux 3.10").unwrap() > (3, 3));
        assert!(tmux_version("tmux 2.9a").unwrap() < (3, 3));
        assert_eq!(tmux_version("tmux master"), None);
    }
}
