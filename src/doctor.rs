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
pub fn checks(pair_user: Option<&str>, runtime_dir: Option<&Path>) -> Vec<Check> {
    let root = nix::unistd::Uid::effective().is_root();
    // A fix that needs root, said the way the caller can act on it.
    let admin = |cmd: &str| {
        if root {
            cmd.to_string()
        } else {
            format!("ask an admin to run: sudo {cmd}")
        }
    };
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
            &admin("sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1"),
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
        Some("1") => warn("dev.tty.legacy_tiocsti", "1: any process sharing a terminal can inject keystrokes (guest jails block it with seccomp)".into(), &admin("sysctl -w dev.tty.legacy_tiocsti=0 (defence in depth)")),
        Some(v) => ok("dev.tty.legacy_tiocsti", v.to_string()),
        None => ok("dev.tty.legacy_tiocsti", "absent (kernel before 6.2: TIOCSTI is always allowed; guest jails block it with seccomp)".into()),
    });
    checks.push(
        match Command::new(tmux_outside_workspaces()).arg("-V").output() {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if tmux_version(&v).is_some_and(|have| have >= (3, 3)) {
                    ok("tmux", v)
                } else {
                    fail("tmux", v, &admin("apt-get install tmux (3.3 or newer)"))
                }
            }
            _ => fail("tmux", "not found".into(), &admin("apt-get install tmux")),
        },
    );
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
    let config = crate::config::load();
    let config = match config {
        Ok(c) => {
            checks.push(match &c {
                Some(c) => ok(
                    "config",
                    format!(
                        "{}: pair user {}, runtime {}",
                        crate::config::path().display(),
                        c.pair_user,
                        c.runtime_dir.display()
                    ),
                ),
                None if crate::config::legacy_setup() => fail(
                    "config",
                    format!(
                        "{} is absent but {} exists: set up by an older pairjail",
                        crate::config::path().display(),
                        crate::config::LEGACY_DROPIN
                    ),
                    &admin("pairjail setup (writes the config)"),
                ),
                None => ok(
                    "config",
                    format!(
                        "{} absent: no-root mode (guests log in to your own account)",
                        crate::config::path().display()
                    ),
                ),
            });
            c
        }
        Err(e) => {
            checks.push(fail(
                "config",
                e.to_string(),
                &admin("pairjail setup (writes it again)"),
            ));
            None
        }
    };
    let rt = paths::runtime_dir(runtime_dir);
    match rt.clone() {
        Ok(rt) => {
            use std::os::unix::fs::MetadataExt;
            checks.push(match std::fs::metadata(&rt) {
                Ok(m)
                    if (m.mode() & 0o1000 != 0 && m.mode() & 0o777 == 0o777 && m.uid() == 0)
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
                    &admin("pairjail setup (makes it 3777)"),
                ),
                Err(_) => ok(
                    "runtime directory",
                    format!("{} (made by the first `pairjail start`)", rt.display()),
                ),
            });
        }
        Err(e) => checks.push(fail(
            "runtime directory",
            e,
            "remove the directory named, or set PAIRJAIL_RUNTIME_DIR to one only you can enter",
        )),
    }
    checks.push(sshd_listens(config.as_ref(), &admin));
    let pair_user = pair_user
        .map(str::to_string)
        .or_else(|| config.as_ref().map(|c| c.pair_user.clone()));
    if let Some(u) = pair_user {
        checks.push(pair_user_usable(&u, root, &admin));
        checks.push(sshd_config_for(&u, root, &admin));
    }
    if let (Ok(rt), Ok((_, host))) = (rt, paths::mine(runtime_dir)) {
        checks.push(plain_keys(&rt, &host));
    }
    checks
}

/// Something answers as sshd on this machine's port (the config's, else
/// sshd_config's): guests need it, and it needs no root to ask.
fn sshd_listens(
    config: Option<&crate::config::SystemConfig>,
    admin: &dyn Fn(&str) -> String,
) -> Check {
    use std::io::Read;
    let port = config
        .and_then(|c| c.port)
        .unwrap_or_else(crate::reach::sshd_port);
    let installed = ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"]
        .iter()
        .any(|p| Path::new(p).exists());
    let banner = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(2),
    )
    .ok()
    .and_then(|mut s| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    });
    match banner {
        Some(b) if b.starts_with("SSH-") => ok(
            "sshd",
            // Whoever listens there wrote it: shown, never obeyed.
            format!(
                "listening on port {port} ({})",
                crate::terminal::printable(&b)
            ),
        ),
        _ if !installed => fail(
            "sshd",
            "not installed".into(),
            &admin("apt-get install openssh-server"),
        ),
        _ => fail(
            "sshd",
            format!("nothing answers as sshd on 127.0.0.1:{port}"),
            &format!(
                "{}; if sshd uses another port, give `start --ssh-port`",
                admin("systemctl start ssh")
            ),
        ),
    }
}

/// The pair user exists, logs in through pairjail's shell, has no password.
fn pair_user_usable(user: &str, root: bool, admin: &dyn Fn(&str) -> String) -> Check {
    let Some(u) = crate::users::by_name(user) else {
        return fail(
            "pair user",
            format!("{user} does not exist"),
            &admin(&format!("pairjail setup --pair-user {user}")),
        );
    };
    let shell_ok = u.shell.file_name().and_then(|n| n.to_str())
        == Some(crate::guest::pair_shell::NAME)
        && std::fs::canonicalize(&u.shell).ok() == crate::exe::own().ok();
    if !shell_ok {
        return fail(
            "pair user",
            format!(
                "{user}'s shell is {}, not pairjail's pair-shell linked to this binary",
                u.shell.display()
            ),
            &admin("pairjail setup (links the shell again)"),
        );
    }
    if root
        && let Some(p) = crate::users::password_field(user)
        && !(p.starts_with('!') || p.starts_with('*'))
    {
        return fail(
            "pair user",
            format!("{user} has a password"),
            &format!("usermod -p '*' {user}"),
        );
    }
    ok("pair user", format!("{user}: shell {}", u.shell.display()))
}

/// sshd's effective configuration for the pair user (needs root to read).
fn sshd_config_for(pair_user: &str, root: bool, admin: &dyn Fn(&str) -> String) -> Check {
    if !root {
        return ok(
            "sshd (pair-user mode)",
            "not checked: reading sshd's effective config needs root (`sudo pairjail doctor`)"
                .into(),
        );
    }
    let spec = format!("user={pair_user},host=localhost,addr=127.0.0.1");
    match Command::new("/usr/sbin/sshd")
        .args(["-T", "-C", &spec])
        .output()
    {
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
                fail(
                    "sshd (pair-user mode)",
                    format!("not set up for {pair_user} ({akc})"),
                    &admin("pairjail setup, then systemctl reload ssh"),
                )
            }
        }
        Ok(o) => fail(
            "sshd (pair-user mode)",
            format!("sshd -T: {}", String::from_utf8_lossy(&o.stderr).trim()),
            "fix sshd's configuration (sshd -t shows the error)",
        ),
        Err(_) => fail(
            "sshd (pair-user mode)",
            "sshd is not installed".into(),
            "apt-get install openssh-server",
        ),
    }
}

/// A guest key that is also a plain line of the caller's authorized_keys
/// gets a shell there, jail or not: sshd uses the first matching line.
fn plain_keys(runtime: &Path, host: &str) -> Check {
    let Ok(path) = crate::keys::registry::authorized_keys_path() else {
        return ok("authorized_keys", "no home directory".into());
    };
    // The host's invites are read from its directory in the runtime
    // directory, which another local user may have made first (a link, or
    // a mount that never answers): checked as `start` checks it.
    // The mount table first: a look at a mount can hang.
    let checked = crate::mountinfo::refuse(&runtime.join(host))
        .map_err(|e| e.to_string())
        .and_then(|()| match std::fs::symlink_metadata(runtime.join(host)) {
            Err(_) => Ok(()),
            Ok(_) => paths::check_host_dir(runtime, host),
        });
    if let Err(e) = checked {
        return fail(
            "authorized_keys",
            format!("invites not read: {e}"),
            "ask root to remove the directory named",
        );
    }
    // sshd's default reads authorized_keys2 as well.
    let mut found = crate::keys::registry::invited_keys_without_jail(runtime, host, &path);
    let second = path.with_file_name("authorized_keys2");
    found.extend(
        crate::keys::registry::invited_keys_without_jail(runtime, host, &second)
            .into_iter()
            .map(|l| format!("{} {l}", second.display())),
    );
    if found.is_empty() {
        ok(
            "authorized_keys",
            format!("{}: no invited key has a plain line", path.display()),
        )
    } else {
        fail(
            "authorized_keys",
            format!(
                "{}: {} would let an invited guest in without the jail",
                path.display(),
                found.join(", ")
            ),
            "remove those lines (or revoke the invites)",
        )
    }
}

/// `tmux 3.3a` → (3, 3); `tmux next-3.5` → (3, 5); `tmux 3.10` → (3, 10).
/// Compared as numbers: as a float, 3.10 would be older than 3.3.
pub fn tmux_version(v: &str) -> Option<(u32, u32)> {
    let num = v.rsplit([' ', '-']).next()?;
    let (major, rest) = num.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The tmux `doctor` asks for its version: never one in a workspace ever
/// shared (a pair guest could have put a `tmux` in a `.venv/bin` on the
/// host's PATH). A list that cannot be read leaves only the system's.
fn tmux_outside_workspaces() -> std::path::PathBuf {
    match crate::workspaces::shared_of_caller() {
        Ok(shared) => crate::exe::program_outside_all("tmux", &shared),
        Err(_) => std::path::PathBuf::from("/usr/bin/tmux"),
    }
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
