//! `pairjail profile oci`: a typed OCI config, and one runc actually runs
//! with the profile's identity and seccomp filter.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn export(profile: &str, cmd: &[&str]) -> serde_json::Value {
    let mut args = vec!["profile", "oci", profile, "--"];
    args.extend(cmd);
    let out = pairjail(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_export_is_a_typed_spec_with_the_profiles_rules() {
    let v = export("guest-relay", &["/relay"]);
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(v.clone()).expect("a valid OCI spec");
    assert_eq!(
        spec.process().as_ref().unwrap().args().as_ref().unwrap(),
        &["/relay"]
    );
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(
        v["process"]["capabilities"]["bounding"],
        serde_json::json!([])
    );
    assert_eq!(v["hostname"], "pairjail-guest");
    let seccomp = &v["linux"]["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_KILL_PROCESS");
    let ioctls: Vec<u64> = seccomp["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["names"] == serde_json::json!(["ioctl"]))
        .map(|s| {
            assert_eq!(s["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
            assert_eq!(s["args"][0]["value"], 0xffff_ffffu64);
            s["args"][0]["valueTwo"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ioctls, [libc::TIOCGWINSZ, libc::TCGETS]);
    assert!(!ioctls.contains(&libc::TIOCSTI));
    assert!(
        v["annotations"]["org.pairjail.landlock"]
            .as_str()
            .unwrap()
            .contains("abstract-unix-socket")
    );
    let types: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    // guest-relay shares the host's network (Landlock keeps it out), but
    // runtimes do not enforce Landlock: the export has a network namespace.
    assert_eq!(types, ["user", "mount", "pid", "ipc", "uts", "network"]);
}

#[test]
fn runc_runs_the_export_and_enforces_its_filter() {
    if !is_root() || Command::new("runc").arg("--version").output().is_err() {
        assert!(!in_ci(), "CI runs this as root with runc installed");
        eprintln!("SKIPPED: needs root and runc");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    // pairjail is static: its probe attempts serve as the container's program.
    fs::copy(env!("CARGO_BIN_EXE_pairjail"), rootfs.join("pairjail")).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The container's root is host id 100000 (the export's default base).
    for p in [rootfs.clone(), rootfs.join("pairjail")] {
        nix::unistd::chown(
            &p,
            Some(nix::unistd::Uid::from_raw(100000)),
            Some(nix::unistd::Gid::from_raw(100000)),
        )
        .unwrap();
    }
    let run = |profile: &str, attempt: &str, name: &str| {
        let v = export(profile, &["/pairjail", "__probe-attempt", attempt]);
        fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&v).unwrap(),
        )
        .unwrap();
        Command::new("runc")
            .args(["run", name])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let pid = std::process::id();
    let out = run("guest-direct", "no-new-privs", &format!("pjoci-a-{pid}"));
    assert_eq!(
        text(&out.stdout).trim(),
        "trying no-new-privs\nblocked: no_new_privs = 1",
        "{}",
        text(&out.stderr)
    );
    let out = run("guest-direct", "seccomp-mode", &format!("pjoci-b-{pid}"));
    assert_eq!(
        text(&out.stdout).trim(),
        "trying seccomp-mode\nblocked: seccomp mode 2 (filter)",
        "{}",
        text(&out.stderr)
    );
    let out = run(
        "guest-direct",
        "capabilities-left",
        &format!("pjoci-c-{pid}"),
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "trying capabilities-left\nblocked: all five sets empty",
        "{}",
        text(&out.stderr)
    );
    // An AF_INET socket is outside guest-relay's allowlist: runc's filter kills it.
    let out = run("guest-relay", "socket-inet", &format!("pjoci-d-{pid}"));
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
