//! The profile format: every shipped profile checks, every error class
//! comes back with its exact located message, round trips are lossless.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pairjail::profile::{self, Profile, SearchPath};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pairjail"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("PAIRJAIL_PROFILE_PATH");
    c
}

fn search(dir: &Path) -> SearchPath {
    SearchPath::only(vec![
        dir.to_path_buf(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles"),
    ])
}

/// Writes `files` into a temp dir and returns the error lines of resolving
/// the first one, with the temp dir's path replaced by `DIR`.
fn errors_of(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let first = dir.path().join(files[0].0);
    match profile::resolve(first.to_str().unwrap(), &search(dir.path())) {
        Ok(_) => vec![],
        Err(e) => {
            e.0.iter()
                .map(|e| e.to_string().replace(dir.path().to_str().unwrap(), "DIR"))
                .collect()
        }
    }
}

fn one_error(text: &str) -> String {
    let errs = errors_of(&[("p.toml", text)]);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    errs[0].clone()
}

#[test]
fn every_shipped_profile_checks() {
    let out = bin()
        .args([
            "profile",
            "check",
            "profiles/base.toml",
            "profiles/guest-relay.toml",
        ])
        .args(["profiles/guest-direct.toml", "profiles/workspace.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")).unwrap();
    for entry in listed {
        let path = entry.unwrap().path();
        let r = profile::resolve(path.to_str().unwrap(), &SearchPath::from_env());
        assert!(r.is_ok(), "{}: {}", path.display(), r.unwrap_err());
    }
}

#[test]
fn misspelled_field_names_file_line_column_and_field() {
    let out = bin()
        .args(["profile", "check", "tests/data/misspelled.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "tests/data/misspelled.toml:5:1: unknown field 'nett' in [namespaces], expected one of user, mount, pid, net, ipc, uts, cgroup, hostname"
    );
}

#[test]
fn wrongly_typed_value_is_located() {
    assert_eq!(
        one_error("extends = [\"base\"]\n[rlimits]\nnofile = \"many\"\n"),
        "DIR/p.toml:3:10: 'nofile' in [rlimits]: invalid type: string \"many\", expected u64"
    );
    assert_eq!(
        one_error("[namespaces]\nuser = \"yes\"\n"),
        "DIR/p.toml:2:8: 'user' in [namespaces]: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn every_error_of_a_file_is_reported_in_one_run() {
    let errs = errors_of(&[(
        "p.toml",
        "surprise = 1\n[namespaces]\nnett = true\nuser = \"yes\"\n[rlimits]\nnofile = \"many\"\n[seccmp]\nx = 1\n",
    )]);
    let lines: std::collections::BTreeSet<&str> = errs
        .iter()
        .map(|e| e.split(':').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        ["1", "3", "4", "6", "7"].into_iter().collect(),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("unknown field 'nett'")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("'nofile' in [rlimits]")),
        "{errs:#?}"
    );
}

#[test]
fn check_warns_about_dangerous_but_valid_settings() {
    let dir = tempfile::tempdir().unwrap();
    // `profile check FILE` of a profile with `text`: it passes, and says
    // this on stdout.
    let check = |name: &str, text: &str| {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        let out = bin()
            .args(["profile", "check", p.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{said}{err}");
        said
    };
    let said = check(
        "risky.toml",
        "extends = [\"guest-relay\"]\n[capabilities]\nkeep = [\"CAP_SYS_ADMIN\"]\n[[mount]]\ntype = \"bind\"\nsrc = \"/\"\ndst = \"/host\"\nrw = true\n",
    );
    assert!(
        said.contains("warning: capabilities.keep has CAP_SYS_ADMIN"),
        "{said}"
    );
    assert!(said.contains("warning: a writable bind of /"), "{said}");
    // A log default: said out loud.
    let said = check(
        "learning.toml",
        "extends = [\"guest-relay\"]\n[seccomp]\ndefault_action = \"log\"\n",
    );
    assert!(
        said.contains(
            "warning: seccomp default_action = \"log\": every call outside the allowlist runs"
        ),
        "{said}"
    );
    // A probe list that calls a real escape "allowed".
    let said = check(
        "blessing.toml",
        "extends = [\"workspace\"]\n[probe]\nallowed = [\"read-home-secrets\"]\n",
    );
    assert!(
        said.contains("warning: probe.allowed lists read-home-secrets"),
        "{said}"
    );
    // A child of workspace that reads as if it allowed less than it does.
    let said = check(
        "narrow.toml",
        "extends = [\"workspace\"]\n[seccomp]\nsocket_families = [\"AF_UNIX\"]\n",
    );
    assert!(
        said.contains("seccomp.socket_families repeats part of the list it extends")
            && said.contains("\"AF_INET\", \"AF_INET6\", \"AF_NETLINK\" stay"),
        "{said}"
    );
    let out = bin()
        .args(["profile", "check", "guest-relay"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"));
}

#[test]
fn unknown_top_level_table_and_mount_type() {
    assert!(one_error("[seccmp]\n").starts_with("DIR/p.toml:1:2: unknown field 'seccmp' in the top level, expected one of extends, description"));
    let e = one_error("[[mount]]\ntype = \"overlay\"\ndst = \"/x\"\n");
    assert!(e.starts_with("DIR/p.toml:"), "{e}");
    assert!(
        e.contains("unknown variant 'overlay', expected one of 'bind', 'tmpfs', 'proc', 'dev'"),
        "{e}"
    );
}

#[test]
fn value_errors_have_their_own_messages() {
    let base = "extends = [\"base\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "[[mount]]\ntype = \"tmpfs\"\ndst = \"tmp\"\n",
            "DIR/p.toml:4:7: [[mount]] #1: dst 'tmp' must be an absolute path",
        ),
        (
            "[[mount]]\ntype = \"bind\"\nsrc = \"/a/../etc\"\ndst = \"/etc\"\n",
            "DIR/p.toml:4:7: [[mount]] #1: src '/a/../etc' must not contain '..'",
        ),
        (
            "[[mount]]\ntype = \"tmpfs\"\ndst = \"/\"\n",
            "DIR/p.toml:4:7: [[mount]] #1: dst must not be '/': the root is always a fresh tmpfs",
        ),
        (
            "[[mount]]\ntype = \"tmpfs\"\ndst = \"/t\"\nmode = 0o17777\n",
            "DIR/p.toml:5:8: [[mount]] #1: mode 0o17777 is not a permission mode (0o0..0o7777)",
        ),
        (
            "[[mount]]\ntype = \"bind\"\nsrc = \"/x\"\ndst = \"/x\"\nrw = true\noverlay = true\n",
            "DIR/p.toml:7:11: [[mount]] #1: overlay = true shows src read-only: drop rw, or overlay",
        ),
        (
            "[[mount]]\ntype = \"bind\"\nsrc = \"{nope}\"\ndst = \"/x\"\n",
            "DIR/p.toml:4:7: [[mount]] #1: unknown parameter '{nope}' in '{nope}' (declare it in [params])",
        ),
        (
            "[seccomp]\nallow = [\"opne\"]\n",
            "DIR/p.toml:3:10: unknown syscall 'opne' in [seccomp] allow",
        ),
        (
            "[seccomp]\nallow = [\"ioctl\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list ioctl: name the allowed requests in [seccomp] ioctl instead",
        ),
        (
            "[seccomp]\nioctl = [\"TIOCSTI\"]\n",
            "DIR/p.toml:3:10: ioctl TIOCSTI can never be allowed: it injects input into the terminal",
        ),
        (
            "[seccomp]\nioctl = [\"TIOCLINUX\"]\n",
            "DIR/p.toml:3:10: ioctl TIOCLINUX can never be allowed: it injects input into the terminal",
        ),
        (
            "[seccomp]\nallow = [\"unshare\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list unshare: nested namespaces are never allowed inside the jail",
        ),
        (
            "[seccomp]\nallow = [\"setns\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list setns: nested namespaces are never allowed inside the jail",
        ),
        (
            "[seccomp]\nallow = [\"clone3\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list clone3: its flags cannot be filtered, so it could create namespaces; programs fall back to clone when clone3 fails with ENOSYS (use default_action = \"errno ENOSYS\")",
        ),
        (
            "[seccomp]\nallow = [\"openat2\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list openat2: its mode is in a struct the filter cannot read, so it could make a setuid file; programs fall back to openat when openat2 fails with ENOSYS",
        ),
        (
            "[seccomp]\nallow = [\"io_uring_setup\"]\n",
            "DIR/p.toml:3:10: [seccomp] allow must not list io_uring_setup: io_uring's operations (open, connect, …) run without a syscall the filter sees",
        ),
        (
            "[seccomp]\ndefault_action = \"explode\"\n",
            "DIR/p.toml:3:18: 'default_action' in [seccomp]: invalid seccomp action 'explode', expected one of \"kill-process\", \"trap\", \"log\", \"errno N\" (N a number or EPERM, EACCES, ENOSYS)",
        ),
        (
            "[landlock]\nabi = 12\n",
            "DIR/p.toml:3:7: landlock abi 12 is out of range: supported ABIs are 1..=9",
        ),
        (
            "[landlock]\nread = [\"etc\"]\n",
            "DIR/p.toml:3:9: [landlock] read: path 'etc' must be an absolute path",
        ),
        (
            "[capabilities]\nkeep = [\"CAP_GOD\"]\n",
            "DIR/p.toml:3:9: unknown capability 'CAP_GOD' in [capabilities] keep (e.g. CAP_NET_BIND_SERVICE)",
        ),
        (
            "[cgroup]\ncpu_weight = 0\n",
            "DIR/p.toml:3:14: cgroup cpu_weight 0 is out of range 1..=10000",
        ),
        (
            "[rlimits]\nas = \"12Q\"\n",
            "DIR/p.toml:3:6: 'as' in [rlimits]: invalid size '12Q': suffix must be K, M, G or T",
        ),
        (
            "[session]\nidle_timeout = \"soon\"\n",
            "DIR/p.toml:3:16: 'idle_timeout' in [session]: invalid duration 'soon': expected number at 0 (e.g. \"30m\", \"8h\")",
        ),
        (
            "[session]\nallowed_modes = [\"drive\"]\n",
            "DIR/p.toml:3:18: 'allowed_modes' in [session]: unknown variant 'drive', expected one of 'mirror', 'pair', 'rogue'",
        ),
        (
            "[namespaces]\nhostname = \"a b\"\n",
            "DIR/p.toml:3:12: invalid hostname 'a b' in [namespaces]: use 1-64 letters, digits, '-' or '.'",
        ),
        (
            "[env]\nkeep = [\"A=B\"]\n",
            "DIR/p.toml:3:9: invalid variable name 'A=B' in [env] keep",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            one_error(&format!("{base}{body}")),
            *expected,
            "for:\n{body}"
        );
    }
}

#[test]
fn contradictions_are_refused() {
    let base = "extends = [\"base\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "[namespaces]\nnet = false\n",
            "DIR/p.toml:4:7: a shared network namespace (net = false) needs [landlock] scopes to include \"abstract-unix-socket\", or the jail can reach the host's abstract unix sockets",
        ),
        (
            "[namespaces]\npid = false\n[[mount]]\ntype = \"proc\"\n",
            "DIR/p.toml:4:1: a proc mount needs namespaces.pid = true, or it would show every host process",
        ),
        (
            "[namespaces]\nuser = false\n",
            "DIR/p.toml:3:8: namespaces.user = false needs every other namespace off too: without a user namespace pairjail has no privilege to create them and never keeps host root",
        ),
        (
            "[namespaces]\nmount = false\n[[mount]]\ntype = \"tmpfs\"\ndst = \"/t\"\n",
            "DIR/p.toml:3:9: [[mount]] entries need namespaces.mount = true",
        ),
        (
            "[namespaces]\nnet = false\n[landlock]\ncompat = \"best-effort\"\n",
            "DIR/p.toml:5:10: a shared network namespace (net = false) needs [landlock] compat = \"hard\": best-effort drops the abstract-socket scope and the TCP rules on a kernel without them",
        ),
    ];
    for (body, expected) in &cases[1..] {
        assert_eq!(
            one_error(&format!("{base}{body}")),
            *expected,
            "for:\n{body}"
        );
    }
    // Lists append, so base's scopes cannot be removed: this one stands alone.
    let (body, expected) = cases[0];
    assert_eq!(
        one_error(&format!("[seccomp]\nallow = [\"execveat\"]\n{body}")),
        expected
    );
    // Scopes written for an ABI that has none; located in the file that set abi.
    let errs = errors_of(&[("p.toml", "extends = [\"base\"]\n[landlock]\nabi = 5\n")]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("base.toml:")
            && errs[0].ends_with("[landlock] scopes need abi >= 6 (abi is 5)"),
        "{errs:?}"
    );
}

#[test]
fn missing_execveat_is_refused() {
    assert_eq!(
        one_error("[seccomp]\nallow = [\"read\"]\n"),
        "DIR/p.toml:2:9: [seccomp] allow must include execveat: the jail starts its program by file descriptor after the filter is loaded"
    );
}

#[test]
fn include_cycles_and_unknown_includes_are_errors() {
    let errs = errors_of(&[
        ("a.toml", "extends = [\"b\"]\n"),
        ("b.toml", "extends = [\"c\"]\n"),
        ("c.toml", "extends = [\"a\"]\n"),
    ]);
    assert_eq!(
        errs,
        vec![
            "DIR/c.toml:1:12: include cycle: DIR/a.toml -> DIR/b.toml -> DIR/c.toml -> DIR/a.toml"
        ]
    );
    assert_eq!(
        errors_of(&[("a.toml", "extends = [\"a\"]\n")]),
        vec!["DIR/a.toml:1:12: include cycle: DIR/a.toml -> DIR/a.toml"]
    );
    assert_eq!(
        errors_of(&[("a.toml", "\nextends = [\"base\", \"nosuch\"]\n")]),
        vec!["DIR/a.toml:2:20: extends unknown profile 'nosuch'"]
    );
}

#[test]
fn extends_merges_lists_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("parent.toml"),
        "extends = [\"base\"]\n[env]\nkeep = [\"A\"]\nset = { X = \"1\", Y = \"1\" }\n",
    )
    .unwrap();
    fs::write(dir.path().join("child.toml"), "extends = [\"parent\"]\n[env]\nkeep = [\"B\"]\nset = { Y = \"2\" }\n[namespaces]\nhostname = \"kid\"\n").unwrap();
    let r = profile::resolve(
        dir.path().join("child.toml").to_str().unwrap(),
        &search(dir.path()),
    )
    .unwrap();
    let p = r.profile;
    assert_eq!(p.env.keep, ["TERM", "LANG", "A", "B"]);
    assert_eq!(p.env.set.get("X").map(String::as_str), Some("1"));
    assert_eq!(p.env.set.get("Y").map(String::as_str), Some("2"));
    assert_eq!(p.namespaces.hostname, "kid");
    assert!(p.namespaces.net, "base's value survives");
    assert!(p.seccomp.groups.contains_key("process"));
    assert!(p.extends.is_empty());
    assert_eq!(r.sources.len(), 3);
}

#[test]
fn resolved_profiles_round_trip_through_toml_and_json() {
    for name in ["base", "guest-relay", "guest-direct", "workspace"] {
        let p = profile::resolve(name, &SearchPath::from_env())
            .unwrap()
            .profile;
        let text = toml::to_string_pretty(&p).unwrap();
        let back: Profile = toml::from_str(&text).unwrap();
        assert_eq!(back, p, "{name} via TOML");
        let json = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p, "{name} via JSON");
    }
}

#[test]
fn show_resolved_json_merges_includes() {
    let out = bin()
        .args(["profile", "show", "guest-relay", "--resolved", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // From base.toml, merged in:
    assert!(
        v["seccomp"]["groups"]["process"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "execveat")
    );
    assert_eq!(
        v["seccomp"]["allow"],
        serde_json::json!(["@process", "@io"])
    );
    assert_eq!(
        v["landlock"]["scopes"],
        serde_json::json!(["abstract-unix-socket", "signal"])
    );
    // From guest-relay.toml itself:
    assert_eq!(v["namespaces"]["hostname"], "pairjail-guest");
    assert!(v.get("extends").is_none());

    let out = bin()
        .args(["profile", "show", "guest-relay", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["extends"], serde_json::json!(["base"]));
    assert!(v["seccomp"].get("groups").is_none());
}

#[test]
fn schema_is_json_schema_for_every_section() {
    let out = bin().args(["profile", "schema"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    let props = v["properties"].as_object().unwrap();
    for key in [
        "extends",
        "namespaces",
        "ids",
        "mount",
        "landlock",
        "seccomp",
        "capabilities",
        "rlimits",
        "cgroup",
        "env",
        "session",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
    assert_eq!(v["additionalProperties"], false);
}

/// A mistyped `--param` name would leave the profile's default in place
/// (say, a workspace of "/nonexistent/workspace") without a word.
#[test]
fn a_parameter_the_profile_does_not_declare_is_refused() {
    for args in [
        &[
            "exec",
            "--profile",
            "workspace",
            "--param",
            "worksapce=/tmp",
            "--",
            "/bin/true",
        ][..],
        &[
            "probe",
            "--profile",
            "workspace",
            "--param",
            "worksapce=/tmp",
        ][..],
        &[
            "profile",
            "oci",
            "workspace",
            "--param",
            "worksapce=/tmp",
            "--",
            "/bin/true",
        ][..],
    ] {
        let out = bin().args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("'worksapce'") && said.contains("home, socket_dir, workspace"),
            "{args:?}: {said}"
        );
    }
}

/// A mistyped `--only` name would quietly run fewer attempts (the rest
/// of a list still ran, and a report of "all blocked" meant less): it is
/// refused with the names, and `probe --help` lists them, as the error for
/// a bad `[probe] allowed` name promises.
#[test]
fn probe_refuses_an_attempt_name_it_does_not_have() {
    let out = bin()
        .args(["probe", "--profile", "guest-relay"])
        .args(["--only", "tiocsti", "--only", "tiocsti-typo"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("'tiocsti-typo'") && said.contains("tioclinux"),
        "{said}"
    );
    let help = bin().args(["probe", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in ["read-etc-shadow", "tiocsti-high-bits", "memory-bomb"] {
        assert!(help.contains(name), "probe --help does not list {name}");
    }
}

#[test]
fn cli_explains_itself() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["profile", "completions", "man"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pairjail "));
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("_pairjail"));
    // Completion and man pages offer what people type, never the internal
    // commands pairjail runs itself.
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("audit") && script.contains("kick"),
            "{shell}"
        );
        for internal in ["__broker", "__probe-attempt"] {
            assert!(
                !script.contains(internal),
                "{shell} completion offers {internal}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--out", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pages.iter().any(|p| p == "pairjail-audit.1"), "{pages:?}");
    assert!(!pages.iter().any(|p| p.contains("__")), "{pages:?}");
    let out = bin().arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH pairjail"));
    for section in ["EXAMPLES", "ENVIRONMENT", "FILES", "EXIT STATUS"] {
        assert!(
            page.contains(&format!(".SH {section}")),
            "man page without {section}"
        );
    }
    // No reference to a page that does not exist.
    assert!(!page.contains("pairjail\\-help"), "{page}");
    assert!(!pages.iter().any(|p| p == "pairjail-help.1"), "{pages:?}");
    for cmd in [
        &["--help"][..],
        &["start", "--help"],
        &["invite", "add", "--help"],
        &["status", "--help"],
        &["setup", "--help"],
        &["doctor", "--help"],
    ] {
        let out = bin().args(cmd).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{cmd:?} has no examples"
        );
    }
    let out = bin().args(["profile", "show", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("pairjail: no profile named 'nosuch'")
    );
}
