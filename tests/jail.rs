//! The jail, attacked through the real binary: every test is its own
//! process tree, so seccomp and Landlock never leak between tests.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn probe_as_unprivileged(profile: &str, extra: &[&str]) -> serde_json::Value {
    if !require_kernel() {
        return serde_json::Value::Null;
    }
    let mut args = vec!["probe", "--profile", profile, "--json"];
    args.extend(extra);
    let out = pairjail_unprivileged(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe output is not JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let attempts = report["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 40, "only {} attempts", attempts.len());
    let failed: Vec<_> = attempts
        .iter()
        .filter(|a| a["verdict"] != "blocked")
        .collect();
    assert!(failed.is_empty(), "{profile}: not blocked: {failed:#?}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    report
}

#[test]
fn probe_finds_no_escape_from_guest_relay() {
    probe_as_unprivileged("guest-relay", &[]);
}

/// A guest's relay is pairjail's own code called in the jail, without an
/// exec: the same attempts, made that way.
#[test]
fn probe_finds_no_escape_from_guest_relay_called_as_the_relay_is() {
    let report = probe_as_unprivileged("guest-relay", &["--called"]);
    if report.is_null() {
        return;
    }
    // A called program makes no exec: the filter has no exec call left,
    // so an attempt is not just refused (by Landlock) but fatal.
    let observed = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attempt"] == "execveat-shell")
        .map(|a| a["observed"].clone());
    assert_eq!(
        observed,
        Some(serde_json::json!("killed by seccomp (SIGSYS)")),
        "execveat in the called relay's jail"
    );
}

#[test]
fn probe_finds_no_escape_from_guest_direct() {
    probe_as_unprivileged("guest-direct", &[]);
}

/// guest-relay runs in the host's network namespace (one of its own cost
/// 0.4 ms a join): seccomp refuses every socket but a unix one, Landlock
/// refuses TCP and its scope keeps the host's abstract sockets out. The
/// attack: the shipped profile, then the same with `socket` allowed for
/// AF_INET(6) and netlink, which then open in the host's namespace, and UDP
/// (which Landlock does not cover) reaches the host's 127.0.0.1; TCP and
/// abstract sockets, stream or datagram, stay blocked by Landlock. Without
/// the scope, or with Landlock best-effort, such a profile is refused
/// (tests/profiles.rs).
#[test]
fn guest_relay_reaches_no_network_without_a_network_namespace() {
    if !require_kernel() {
        return;
    }
    let shown = pairjail(&["profile", "show", "guest-relay", "--resolved", "--json"]);
    let resolved: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        resolved["namespaces"]["net"], false,
        "this test is about guest-relay without a network namespace"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let variant = |name: &str, extra: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("extends = [\"guest-relay\"]\n{extra}")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        file.to_str().unwrap().to_string()
    };
    let verdicts = |profile: &str| {
        let out = pairjail_unprivileged(&[
            "probe",
            "--profile",
            profile,
            "--json",
            "--only",
            "tcp-localhost",
            "--only",
            "abstract-unix-socket",
            "--only",
            "socket-netlink",
            "--only",
            "socket-inet",
            "--only",
            "udp-localhost",
            "--only",
            "udp-localhost-connected",
            "--only",
            "udp6-localhost",
            "--only",
            "abstract-unix-datagram",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stderr)));
        let mut v: Vec<(String, String)> = report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["attempt"].as_str().unwrap().to_string(),
                    a["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        verdicts("guest-relay"),
        pairs(&[
            ("abstract-unix-datagram", "blocked"),
            ("abstract-unix-socket", "blocked"),
            ("socket-inet", "blocked"),
            ("socket-netlink", "blocked"),
            ("tcp-localhost", "blocked"),
            ("udp-localhost", "blocked"),
            ("udp-localhost-connected", "blocked"),
            ("udp6-localhost", "blocked"),
        ])
    );
    // `socket` allowed for AF_INET, AF_INET6 and netlink: all open, and
    // UDP over either reaches the host.
    let any_socket = variant(
        "any-socket",
        "[seccomp]\nallow = [\"@unix-client\"]\nsocket_families = [\"AF_INET\", \"AF_INET6\", \"AF_NETLINK\"]\n",
    );
    assert_eq!(
        verdicts(&any_socket),
        pairs(&[
            ("abstract-unix-datagram", "blocked"),
            ("abstract-unix-socket", "blocked"),
            ("socket-inet", "escaped"),
            ("socket-netlink", "escaped"),
            ("tcp-localhost", "blocked"),
            ("udp-localhost", "escaped"),
            ("udp-localhost-connected", "escaped"),
            ("udp6-localhost", "escaped"),
        ])
    );
}

/// The session's workspace jail: every secret, agent, host-reach and
/// privilege attempt blocked; only what a workspace allows by design
/// (shells, its home, its /tmp and network namespace, builds) gets through,
/// reported as allowed. With the hide list emptied, the secrets escape.
#[test]
fn probe_blocks_every_secret_and_host_reach_from_workspace() {
    if !require_kernel() {
        return;
    }
    let run = |profile: &str| {
        let out = pairjail_unprivileged(&["probe", "--profile", profile, "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stderr)));
        let by = |verdict: &str| -> Vec<String> {
            report["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["verdict"] == verdict)
                .map(|a| a["attempt"].as_str().unwrap().to_string())
                .collect()
        };
        (
            out.status.code(),
            by("blocked"),
            by("allowed"),
            by("escaped"),
        )
    };
    let (code, blocked, allowed, escaped) = run("workspace");
    assert!(escaped.is_empty(), "escaped: {escaped:?}");
    assert_eq!(code, Some(0));
    for must in [
        "read-home-secrets",
        "reach-agent-socket",
        "reach-run-user",
        "path-unix-socket",
        "abstract-unix-socket",
        "tcp-localhost",
        "signal-host",
        "write-home",
        "write-host-dir",
        "exec-setuid",
        "tiocsti",
        "mount",
        "unshare-user",
        "ptrace-host",
    ] {
        assert!(blocked.iter().any(|b| b == must), "{must} not blocked");
    }
    assert!(allowed.iter().any(|a| a == "exec-shell"), "{allowed:?}");
    let (code, blocked, _, escaped) = run("workspace-strict");
    assert!(escaped.is_empty(), "workspace-strict escaped: {escaped:?}");
    assert_eq!(code, Some(0));
    assert!(blocked.iter().any(|b| b == "read-home-secrets"));

    // The same profile without its hide list: the probe sees the secrets.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/workspace.toml"),
    )
    .unwrap();
    let start = shipped.find("hide = [").unwrap();
    let end = start + shipped[start..].find("]\n").unwrap() + 2;
    let open = format!("{}hide = []\n{}", &shipped[..start], &shipped[end..]);
    let file = dir.path().join("open-home.toml");
    std::fs::write(&file, open).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, _, escaped) = run(file.to_str().unwrap());
    assert_eq!(code, Some(1));
    assert!(
        escaped.iter().any(|e| e == "read-home-secrets"),
        "{escaped:?}"
    );
}

/// The probe must be able to fail: a profile with seccomp and Landlock off
/// and the host's /etc bound in lets several attempts through.
#[test]
fn probe_reports_escapes_from_a_weak_profile() {
    if !require_kernel() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.toml");
    std::fs::write(
        &weak,
        "[landlock]\nenabled = false\n[namespaces]\nnet = true\n[seccomp]\nenabled = false\n[[mount]]\ntype = \"bind\"\nsrc = \"/etc\"\ndst = \"/etc\"\n[[mount]]\ntype = \"bind\"\nsrc = \"/usr\"\ndst = \"/usr\"\n[[mount]]\ntype = \"bind\"\nsrc = \"/bin\"\ndst = \"/bin\"\noptional = true\n[[mount]]\ntype = \"bind\"\nsrc = \"/lib\"\ndst = \"/lib\"\noptional = true\n[[mount]]\ntype = \"bind\"\nsrc = \"/lib64\"\ndst = \"/lib64\"\noptional = true\n",
    )
    .unwrap();
    // Executed, and called in the jail as the relay is: both must see it.
    for extra in [None, Some("--called")] {
        let mut args = vec!["probe", "--profile", weak.to_str().unwrap(), "--json"];
        args.extend(extra);
        let out = pairjail(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let escaped: Vec<&str> = report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["verdict"] == "escaped")
            .map(|a| a["attempt"].as_str().unwrap())
            .collect();
        for expected in ["exec-shell", "seccomp-mode", "tiocsti", "socket-inet"] {
            assert!(
                escaped.contains(&expected),
                "{extra:?}: {expected} not reported as escaped: {escaped:?}"
            );
        }
    }
}

#[test]
fn exec_forwards_the_exit_status_and_isolates_identity() {
    if !require_kernel() {
        return;
    }
    let out = pairjail(&[
        "exec",
        "--profile",
        "tests/data/shell.toml",
        "--",
        "/bin/sh",
        "-c",
        "echo $(id -u):$(id -g):$(hostname):$HOME; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "1000:1000:pairjail-workspace:/work"
    );
}

#[test]
fn exec_clears_the_environment_to_the_allowlist() {
    if !require_kernel() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args([
            "exec",
            "--profile",
            "tests/data/shell.toml",
            "--",
            "/usr/bin/env",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SSH_AUTH_SOCK", "/tmp/agent.sock")
        .env("SECRET_TOKEN", "hunter2")
        .env("TERM", "xterm-test")
        .output()
        .unwrap();
    let env = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.contains("TERM=xterm-test"), "{env}");
    assert!(
        !env.contains("SSH_AUTH_SOCK") && !env.contains("hunter2"),
        "{env}"
    );
}

#[test]
fn exec_root_caller_is_nobody_outside() {
    if !require_kernel() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let param = format!("workspace={}", dir.path().display());
    let out = pairjail(&[
        "exec",
        "--profile",
        "tests/data/shell.toml",
        "--param",
        &param,
        "--",
        "/bin/sh",
        "-c",
        "echo x > /work/made",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir.path().join("made")).unwrap().uid();
    let expected = if is_root() {
        65534
    } else {
        nix::unistd::Uid::effective().as_raw()
    };
    assert_eq!(
        owner, expected,
        "a file written in the jail is owned by uid {owner} outside"
    );
}

#[test]
fn exec_passes_only_the_named_descriptors() {
    if !require_kernel() {
        return;
    }
    // fd 7 is passed, fd 8 is not; both are open in the caller.
    let script = "exec 7</etc/hostname 8</etc/hostname; pairjail exec --profile tests/data/shell.toml --pass-fd 7 -- /bin/sh -c 'ls /proc/self/fd | tr \"\\n\" \" \"'";
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_pairjail"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = Command::new("/bin/sh")
        .args(["-c", script])
        .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let fds = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert!(fds.contains(&"7"), "{fds:?}");
    assert!(!fds.contains(&"8"), "{fds:?}");
}

#[test]
fn exec_seccomp_kills_what_the_profile_does_not_allow() {
    if !require_kernel() {
        return;
    }
    // guest-relay has no getuid; a static program calling it dies by SIGSYS.
    let busybox = "/bin/busybox";
    if !std::path::Path::new(busybox).exists() {
        assert!(!in_ci(), "busybox-static must be installed in CI");
        return;
    }
    let out = pairjail(&[
        "exec",
        "--profile",
        "guest-relay",
        "--",
        busybox,
        "id",
        "-u",
    ]);
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_errors_name_the_step_for_a_missing_kernel_feature() {
    if !require_kernel() {
        return;
    }
    let have = pairjail::jail::landlock::kernel_abi();
    if have >= 9 {
        eprintln!("SKIPPED: this kernel has Landlock ABI {have}, so ABI 9 cannot be missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("future.toml");
    std::fs::write(
        &p,
        "extends = [\"guest-relay\"]\n[landlock]\nabi = 9\ncompat = \"hard\"\n",
    )
    .unwrap();
    let search = format!("{}/profiles", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args(["exec", "--profile", p.to_str().unwrap(), "--", "/bin/true"])
        .env("PAIRJAIL_PROFILE_PATH", search)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "pairjail: jail: landlock — the profile pins Landlock ABI 9 with compat = \"hard\", but this kernel offers ABI {have} (boot with lsm=…,landlock, or use compat = \"best-effort\")"
        )
    );
}

#[test]
fn exec_refuses_bad_input_with_one_line() {
    let out = pairjail(&[
        "exec",
        "--profile",
        "guest-relay",
        "--",
        "/nonexistent/prog",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "pairjail: exec: /nonexistent/prog: command not found"
    );
    let out = pairjail(&[
        "exec",
        "--profile",
        "guest-relay",
        "--pass-fd",
        "1",
        "--",
        "/bin/true",
    ]);
    assert_eq!(
        text(&out.stderr).trim(),
        "pairjail: --pass-fd 1: 0, 1 and 2 are always passed"
    );
    let out = pairjail(&[
        "exec",
        "--profile",
        "guest-relay",
        "--pass-fd",
        "99",
        "--",
        "/bin/true",
    ]);
    assert_eq!(
        text(&out.stderr).trim(),
        "pairjail: --pass-fd 99: not an open descriptor"
    );
}

#[test]
fn cgroup_limits_are_applied_where_the_tree_is_writable() {
    if !require_kernel() {
        return;
    }
    // tests/data/shell.toml sets memory_max and pids_max with required = false.
    let out = pairjail(&[
        "exec",
        "--profile",
        "tests/data/shell.toml",
        "--",
        "/bin/cat",
        "/proc/self/cgroup",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cgroups = text(&out.stdout);
    let writable = std::fs::metadata("/sys/fs/cgroup/pids").is_ok() && is_root();
    if writable {
        let line = cgroups
            .lines()
            .find(|l| l.contains(":pids:"))
            .expect("a pids cgroup");
        let path = line.rsplit(':').next().unwrap();
        assert!(path.starts_with("/pairjail/"), "{cgroups}");
        // Removed again once the jail is gone.
        assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids{path}")).exists());
    } else {
        assert!(
            text(&out.stderr).contains("warning: cgroup limits not applied"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn doctor_reports_each_check_as_json() {
    let out = pairjail(&[
        "doctor",
        "--json",
        "--pair-user",
        "pair",
        "--runtime-dir",
        "/nonexistent-pairjail-rt",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v.as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in [
        "user namespaces",
        "landlock",
        "seccomp",
        "dev.tty.legacy_tiocsti",
        "tmux",
        "runtime directory",
        "config",
        "sshd",
        "pair user",
        "sshd (pair-user mode)",
        "binary",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    for c in checks {
        if c["status"] != "ok" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix for {c}"
            );
        }
    }
    let any_fail = checks.iter().any(|c| c["status"] == "fail");
    assert_eq!(out.status.success(), !any_fail);
    // This machine has legacy TIOCSTI on: doctor must say so.
    if std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|s| s.trim() == "1") {
        let t = checks
            .iter()
            .find(|c| c["name"] == "dev.tty.legacy_tiocsti")
            .unwrap();
        assert_eq!(t["status"], "warn");
    }
}

/// `pairjail exec` forwards SIGTERM and SIGINT to the program while it
/// runs (through the jail's pid 1), the program can handle them, and its
/// exit status comes back.
#[test]
fn exec_forwards_sigterm_and_sigint_to_the_program() {
    if !require_kernel() {
        return;
    }
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGTERM, 7),
        (nix::sys::signal::Signal::SIGINT, 8),
    ] {
        let name = signal.as_str().trim_start_matches("SIG");
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        // Waits for the trap to be in place (a state, not a sleep).
        let (mut child, before) =
            jailed_until_ready("tests/data/shell.toml", &["/bin/sh", "-c", &script]);
        assert!(before.is_empty(), "{before:?}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(code),
            "{signal}: {status:?}: the program did not handle it"
        );
    }
}

/// A static program for the pid-1 test: prints its pid and "ready", then
/// waits. `handle`: SIGTERM → exit 7, SIGINT → exit 8; `ignore`: SIGTERM
/// ignored; `cut`: first tries to clear its parent-death signal; anything
/// else: default dispositions. Only calls guest-relay
/// allows (write, rt_sigaction, getpid, nanosleep).
const WAITER: &str = r#"
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
static void on(int s) { _exit(s == SIGTERM ? 7 : 8); }
int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (argc > 1 && strcmp(argv[1], "handle") == 0) {
        sa.sa_handler = on;
        sigaction(SIGTERM, &sa, 0);
        sigaction(SIGINT, &sa, 0);
    } else if (argc > 1 && strcmp(argv[1], "ignore") == 0) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGTERM, &sa, 0);
    } else if (argc > 1 && strcmp(argv[1], "cut") == 0) {
        prctl(PR_SET_PDEATHSIG, 0);
        return 0;
    }
    char line[32] = "pid=";
    int n = 4, p = getpid(), d = 1;
    while (d * 10 <= p) d *= 10;
    for (; d > 0; d /= 10) line[n++] = '0' + (p / d) % 10;
    line[n++] = '\n';
    write(1, line, n);
    write(1, "ready\n", 6);
    for (;;) {
        struct timespec t = {0, 20000000};
        nanosleep(&t, 0);
    }
}
"#;

/// `pairjail exec --profile PROFILE -- ARGV…`, once the program printed
/// `ready`: its child, and the lines it printed before.
// The child is returned for the caller to wait on.
#[allow(clippy::zombie_processes)]
fn jailed_until_ready(profile: &str, argv: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args(["exec", "--profile", profile, "--"])
        .args(argv)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut before = Vec::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "the program ended before it was ready: {before:?}");
        if line.trim() == "ready" {
            return (child, before);
        }
        before.push(line.trim().to_string());
    }
}

/// The jailed waiter under `profile`, once it said ready: its child and pid.
fn start_waiter(
    prog: &std::path::Path,
    profile: &str,
    mode: &str,
) -> (std::process::Child, String) {
    let prog = prog.to_str().unwrap();
    let (child, before) = jailed_until_ready(profile, &[prog, mode]);
    assert_eq!(before.len(), 1, "{before:?}");
    (child, before[0].clone())
}

/// The exit code of `c`, waiting up to 20 s (to catch a hang, never to
/// time anything): a signal that never arrives fails the test.
fn exit_code(c: &mut std::process::Child, what: &str) -> Option<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what}: the jailed program is still running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A program that cannot start processes (guest-relay's seccomp refuses
/// clone, clone3, fork and vfork) runs as the jail's pid 1, with no reaper
/// process; a program that can gets the reaper. As pid 1 it still gets
/// what any process would: a signal it handles, a signal it ignores is
/// ignored, and one it does not handle ends it with that signal (a
/// namespace's init would otherwise never see it).
#[test]
fn a_program_that_cannot_start_processes_is_pid_1_and_signals_still_work() {
    if !require_kernel() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("waiter.c");
    std::fs::write(&src, WAITER).unwrap();
    let prog = dir.path().join("waiter");
    let built = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&prog)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        assert!(!in_ci(), "gcc (with static libc) must be installed in CI");
        eprintln!("SKIPPED: no gcc to build the static test program");
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let signal = |c: &std::process::Child, s| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), s).unwrap()
    };
    use nix::sys::signal::Signal::{SIGINT, SIGTERM};

    // Handled: the program's own exit status.
    for (sig, code) in [(SIGTERM, 7), (SIGINT, 8)] {
        let (mut c, pid) = start_waiter(&prog, "guest-relay", "handle");
        assert_eq!(pid, "pid=1", "the program is not the jail's pid 1");
        signal(&c, sig);
        assert_eq!(exit_code(&mut c, "handled"), Some(code), "{sig}");
    }
    // Not handled: ended by it, as 128 + the signal.
    let (mut c, _) = start_waiter(&prog, "guest-relay", "default");
    signal(&c, SIGTERM);
    assert_eq!(exit_code(&mut c, "not handled"), Some(128 + libc::SIGTERM));
    // Ignored: still running, so the next (unhandled) one ends it.
    let (mut c, _) = start_waiter(&prog, "guest-relay", "ignore");
    signal(&c, SIGTERM);
    signal(&c, SIGINT);
    assert_eq!(exit_code(&mut c, "ignored"), Some(128 + libc::SIGINT));

    // Its one tie to the caller, the parent-death signal, cannot be cut.
    let out = Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args(["exec", "--profile", "guest-relay", "--"])
        .arg(&prog)
        .arg("cut")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "prctl(PR_SET_PDEATHSIG, 0) was let through: {}",
        text(&out.stdout)
    );

    // A profile that allows clone: the reaper is pid 1, the program 2.
    let (mut c, pid) = start_waiter(&prog, "tests/data/shell.toml", "handle");
    assert_eq!(pid, "pid=2");
    signal(&c, SIGTERM);
    assert_eq!(exit_code(&mut c, "with a reaper"), Some(7));
}

/// `pairjail probe --json` of a profile file holding `profile` (in a directory
/// the unprivileged prober can read): its report and exit code.
fn probe_file(tag: &str, profile: &str) -> (serde_json::Value, Option<i32>) {
    let dir = std::env::temp_dir().join(format!("pj-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join(format!("{tag}.toml"));
    std::fs::write(&file, profile).unwrap();
    let out = pairjail_unprivileged(&["probe", "--profile", file.to_str().unwrap(), "--json"]);
    let _ = std::fs::remove_dir_all(&dir);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (report, out.status.code())
}

/// `default_action = "log"` lets every call outside the allowlist run, to
/// learn what a program needs. What no profile may ever allow stays
/// refused all the same: TIOCSTI, TIOCLINUX and new namespaces.
#[test]
fn a_log_default_still_refuses_tiocsti_and_new_namespaces() {
    if !require_kernel() {
        return;
    }
    let (report, _) = probe_file(
        "learning",
        "extends = [\"guest-relay\"]\n[seccomp]\ndefault_action = \"log\"\n",
    );
    let attempts = report["attempts"].as_array().unwrap();
    let verdict = |name: &str| {
        attempts
            .iter()
            .find(|a| a["attempt"] == name)
            .map(|a| (a["verdict"].clone(), a["observed"].clone()))
            .unwrap_or_else(|| panic!("no attempt {name}"))
    };
    // The profile really lets other calls through (the check can fail).
    assert_eq!(verdict("keyctl").0, "escaped", "{:?}", verdict("keyctl"));
    for name in [
        "tiocsti",
        "tiocsti-high-bits",
        "tioclinux",
        "unshare-user",
        "clone-newuser",
        "clone3",
    ] {
        assert_eq!(verdict(name).0, "blocked", "{name}: {:?}", verdict(name));
    }
}

/// A profile the probe's own payload cannot even start in proves nothing:
/// every attempt is unknown and the probe fails, instead of reporting each
/// one blocked because seccomp killed the payload before it ran.
#[test]
fn a_profile_the_payload_cannot_start_in_is_not_reported_blocked() {
    if !require_kernel() {
        return;
    }
    let (report, code) = probe_file("narrow", "extends = [\"base\"]\n");
    let attempts = report["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 40);
    let blocked: Vec<_> = attempts
        .iter()
        .filter(|a| a["verdict"] == "blocked")
        .collect();
    assert!(blocked.is_empty(), "reported blocked: {blocked:#?}");
    assert_eq!(code, Some(1));
}

/// A read-only bind is read-only all the way down: a filesystem mounted
/// inside the bound directory (a tmpfs in the home) is read-only in the
/// jail too, even with Landlock off.
#[test]
fn a_read_only_bind_is_read_only_below_too() {
    if !require_kernel() || !root_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pj-rorec-{}", std::process::id()));
    let sub = dir.join("data/sub");
    std::fs::create_dir_all(&sub).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs"])
        .arg(&sub)
        .output()
        .unwrap();
    assert!(mount.status.success(), "{}", text(&mount.stderr));
    let profile = dir.join("ro.toml");
    std::fs::write(
        &profile,
        format!(
            "extends = [\"base\"]\n[landlock]\nenabled = false\n[seccomp]\nenabled = false\n\
             [[mount]]\ntype = \"bind\"\nsrc = \"/usr\"\ndst = \"/usr\"\n\
             [[mount]]\ntype = \"bind\"\nsrc = \"/lib\"\ndst = \"/lib\"\noptional = true\n\
             [[mount]]\ntype = \"bind\"\nsrc = \"/lib64\"\ndst = \"/lib64\"\noptional = true\n\
             [[mount]]\ntype = \"bind\"\nsrc = \"/bin\"\ndst = \"/bin\"\noptional = true\n\
             [[mount]]\ntype = \"bind\"\nsrc = \"{}\"\ndst = \"/data\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = pairjail(&[
        "exec",
        "--profile",
        profile.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "touch /data/sub/x && echo WROTE || echo REFUSED",
    ]);
    let _ = Command::new("umount").arg(&sub).output();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(text(&out.stdout).trim(), "REFUSED", "{}", text(&out.stderr));
}

/// The probe's `write-home` attempt judges by a file it looks for in the
/// home; one that was already there is the user's: kept, and the attempt
/// says it cannot judge instead of counting it.
#[test]
fn the_probe_never_removes_a_users_own_file() {
    if !require_kernel() {
        return;
    }
    let home = std::env::temp_dir().join(format!("pj-probehome-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(home.join("pwned"), "MINE\n").unwrap();
    std::fs::set_permissions(home.join("pwned"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // The prober's own home, as a real one is.
    let chown = Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(&home)
        .output()
        .unwrap();
    assert!(chown.status.success(), "{}", text(&chown.stderr));
    let param = format!("home={}", home.display());
    let out = pairjail_unprivileged(&[
        "probe",
        "--profile",
        "workspace",
        "--param",
        &param,
        "--only",
        "write-home",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let kept = std::fs::read_to_string(home.join("pwned")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&home);
    assert_eq!(kept, "MINE\n", "the user's file was removed or changed");
    assert_eq!(report["attempts"][0]["verdict"], "inconclusive", "{report}");
}

/// `probe` sets out its bait in the temporary directory, where every local
/// user can write: another user who put a link in its bait directory
/// would have had the probe write its "host secrets" over the real files
/// the link leads to (the user's own keys). Played with an attacker who
/// plants links in every bait directory it sees, as fast as it can, while
/// the user probes.
#[test]
fn a_local_user_cannot_aim_the_probes_bait_at_the_users_files() {
    if !root_or_skip() || !require_kernel() {
        return;
    }
    ensure_user(TEST_USER);
    let attacker = "pjbaiter";
    ensure_user(attacker);
    let victim = std::path::PathBuf::from(format!("/home/{TEST_USER}/pj-victim"));
    let _ = std::fs::remove_dir_all(&victim);
    std::fs::create_dir_all(victim.join(".ssh")).unwrap();
    std::fs::write(victim.join(".ssh/id_ed25519"), "the user's own key\n").unwrap();
    std::fs::write(victim.join("secret"), "the user's own file\n").unwrap();
    let owned = Command::new("chown")
        .args(["-R", &format!("{TEST_USER}:{TEST_USER}")])
        .arg(&victim)
        .status()
        .unwrap();
    assert!(owned.success());
    let stop = std::env::temp_dir().join(format!("pj-baiter-stop-{}", std::process::id()));
    let _ = std::fs::remove_file(&stop);
    // A temporary directory like /tmp (root's, 1777) for this test's
    // probes alone: the attacker would spoil other tests' probes in /tmp.
    let tmp = std::env::temp_dir().join(format!("pj-baitroom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let script = r#"
import os, sys, time
victim, stop, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
seen, planted = set(), 0
end = time.time() + 120
while time.time() < end and not os.path.exists(stop):
    for name in os.listdir(tmp):
        if name.startswith('pairjail-probe-'):
            seen.add(name)
            for what, to in (('home', victim), ('secret', victim + '/secret'), ('pwned', victim + '/secret')):
                try:
                    os.symlink(to, os.path.join(tmp, name, what))
                    planted += 1
                except OSError:
                    pass
print(len(seen), planted)
"#;
    let baiter = run_as(attacker, "/usr/bin/python3")
        .args(["-c", script])
        .arg(&victim)
        .arg(&stop)
        .arg(&tmp)
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped however the test ends.
    let stop_file = stop.clone();
    let _stop = common::OnDrop(move || {
        let _ = std::fs::write(&stop_file, "");
    });
    for _ in 0..5 {
        let out = run_as(TEST_USER, shared_binary())
            .args(["probe", "--profile", "workspace", "--json"])
            .env("HOME", format!("/home/{TEST_USER}"))
            .env("TMPDIR", &tmp)
            .env_remove("PAIRJAIL_PROFILE_PATH")
            .current_dir("/")
            .output()
            .unwrap();
        assert!(
            !out.stdout.is_empty(),
            "probe said nothing: {}",
            text(&out.stderr)
        );
    }
    std::fs::write(&stop, "").unwrap();
    let said = text(&baiter.wait_with_output().unwrap().stdout);
    let _ = std::fs::remove_file(&stop);
    // The attacker found the bait directories (five probes).
    let seen: usize = said
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(seen >= 1, "the attacker saw no bait directory: {said}");
    assert_eq!(
        std::fs::read_to_string(victim.join(".ssh/id_ed25519")).unwrap(),
        "the user's own key\n",
        "the probe wrote through a planted link (bait directories seen, links planted: {said})"
    );
    assert_eq!(
        std::fs::read_to_string(victim.join("secret")).unwrap(),
        "the user's own file\n",
        "the probe wrote through a planted link"
    );
    let _ = std::fs::remove_dir_all(&victim);
    let _ = std::fs::remove_dir_all(&tmp);
}
