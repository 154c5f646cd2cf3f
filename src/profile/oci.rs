//! A profile as an OCI runtime `config.json`, for security teams that run
//! or review containers with runc/crun. Built as JSON, then checked by
//! deserializing into `oci_spec::runtime::Spec`, so only a well-typed spec
//! is ever printed.
//!
//! What does not translate: Landlock (no OCI field; carried as the
//! `org.pairjail.landlock` annotation and NOT enforced by runtimes), the
//! fresh tmpfs root (OCI uses `root.path`, read-only), and execution by
//! file descriptor (runtimes exec by path, so `execve` and what a runtime's
//! init calls after loading the filter join the allowlist: see
//! [`RUNTIME_SYSCALLS`]), and no /proc (runtimes need one; it is added).

use std::collections::BTreeMap;

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::model::{Mount, Profile};
use super::{expand, names};

/// What a runtime's own init needs between loading the filter and exec:
/// `execve` (runtimes exec by path), and runc's Go init closing descriptors
/// (`fstatfs`, `getdents64`) and polling (`epoll_*`), seen with
/// SCMP_ACT_LOG. The pairjail jail itself needs none of them.
pub const RUNTIME_SYSCALLS: &[&str] = &[
    "execve",
    "fstatfs",
    "getdents64",
    "epoll_ctl",
    "epoll_pwait",
    "tgkill",
    "getpid",
    "sched_yield",
];

fn err(e: impl std::fmt::Display) -> String {
    format!("oci: {e}")
}

fn seccomp(p: &Profile) -> Result<Value, String> {
    let (action, errno) = match p.seccomp.default_action {
        super::Action::Errno(n) => ("SCMP_ACT_ERRNO", Some(n)),
        super::Action::KillProcess => ("SCMP_ACT_KILL_PROCESS", None),
        super::Action::Trap => ("SCMP_ACT_TRAP", None),
        super::Action::Log => ("SCMP_ACT_LOG", None),
    };
    let mut plain: Vec<String> = p.allowed_syscalls();
    for extra in RUNTIME_SYSCALLS {
        if !plain.iter().any(|s| s == extra) {
            plain.push(extra.to_string());
        }
    }
    let conditional = ["clone", "socket", "socketpair"];
    let mut syscalls = vec![];
    let names_plain: Vec<&String> = plain
        .iter()
        .filter(|s| !conditional.contains(&s.as_str()))
        .collect();
    syscalls.push(json!({"names": names_plain, "action": "SCMP_ACT_ALLOW"}));
    for name in &p.seccomp.ioctl {
        let req = names::ioctl_number(name).ok_or_else(|| err(format!("unknown ioctl {name}")))?;
        // The kernel reads the request as 32 bits; compare only those.
        syscalls.push(json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 1, "value": 0xffff_ffffu64, "valueTwo": req & 0xffff_ffff, "op": "SCMP_CMP_MASKED_EQ"}]}));
    }
    if plain.iter().any(|s| s == "clone") {
        let ns = (libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP) as u64;
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": ns, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
    }
    for call in ["socket", "socketpair"] {
        if !plain.iter().any(|s| s == call) {
            continue;
        }
        if p.seccomp.socket_families.is_empty() {
            syscalls.push(json!({"names": [call], "action": "SCMP_ACT_ALLOW"}));
        }
        for fam in &p.seccomp.socket_families {
            let af = names::socket_family(fam)
                .ok_or_else(|| err(format!("unknown address family {fam}")))?;
            syscalls.push(json!({"names": [call], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": af, "op": "SCMP_CMP_EQ"}]}));
        }
    }
    let mut s = json!({"defaultAction": action, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": syscalls});
    if let Some(n) = errno {
        s["defaultErrnoRet"] = json!(n);
    }
    Ok(s)
}

fn mounts(p: &Profile, params: &BTreeMap<String, String>) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for m in &p.mounts {
        let dst = expand(m.dst(), params).map_err(err)?;
        out.push(match m {
            Mount::Bind { src, rw, optional, .. } => {
                let src = expand(src, params).map_err(err)?;
                // As in the jail: an optional bind whose source is absent is left out.
                if *optional && !std::path::Path::new(&src).exists() {
                    continue;
                }
                let mut opts = vec!["rbind", "nosuid", "nodev"];
                opts.push(if *rw { "rw" } else { "ro" });
                json!({"destination": dst, "type": "bind", "source": src, "options": opts})
            }
            Mount::Tmpfs { size, mode, .. } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".into(), format!("mode={:o}", mode.unwrap_or(0o755))];
                if let Some(s) = size {
                    opts.push(format!("size={}", s.0));
                }
                json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
            Mount::Proc { .. } => json!({"destination": dst, "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]}),
            Mount::Dev { .. } => json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "mode=755", "size=65536k"]}),
        });
    }
    Ok(out)
}

/// The OCI config for running `args` under profile `p`.
pub fn export(
    p: &Profile,
    params: &BTreeMap<String, String>,
    args: &[String],
    host_id_base: u32,
) -> Result<Value, String> {
    let ns = &p.namespaces;
    let mut namespaces = vec![];
    for (on, kind) in [
        (ns.user, "user"),
        (ns.mount, "mount"),
        (ns.pid, "pid"),
        (ns.net, "network"),
        (ns.ipc, "ipc"),
        (ns.uts, "uts"),
        (ns.cgroup, "cgroup"),
    ] {
        if on {
            namespaces.push(json!({"type": kind}));
        }
    }

    let keep = &p.capabilities.keep;
    let caps = json!({"bounding": keep, "effective": keep, "permitted": keep, "inheritable": keep, "ambient": keep});
    let r = &p.rlimits;
    let mut rlimits = vec![];
    for (kind, v) in [
        ("RLIMIT_NOFILE", r.nofile),
        ("RLIMIT_NPROC", r.nproc),
        ("RLIMIT_AS", r.address_space.map(|s| s.0)),
        ("RLIMIT_CPU", r.cpu),
        ("RLIMIT_FSIZE", r.fsize.map(|s| s.0)),
        ("RLIMIT_CORE", r.core.map(|s| s.0)),
    ] {
        if let Some(v) = v {
            rlimits.push(json!({"type": kind, "hard": v, "soft": v}));
        }
    }
    let env: Vec<String> = p.env.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut resources = json!({});
    if let Some(m) = p.cgroup.memory_max {
        resources["memory"] = json!({"limit": m.0});
    }
    if let Some(n) = p.cgroup.pids_max {
        resources["pids"] = json!({"limit": n});
    }
    if let Some(w) = p.cgroup.cpu_weight {
        resources["cpu"] = json!({"shares": (w * 1024 / 100).max(2)});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    if ns.user {
        // Runtimes set the container up as its uid 0 before switching to
        // process.user, so both need a mapping: 0 → base, the profile's
        // id → base + 1 (pick base from /etc/subuid for your runtime user).
        let map = |id: u32| {
            if id == 0 {
                json!([{"containerID": 0, "hostID": host_id_base, "size": 1}])
            } else {
                json!([{"containerID": 0, "hostID": host_id_base, "size": 1}, {"containerID": id, "hostID": host_id_base + 1, "size": 1}])
            }
        };
        linux["uidMappings"] = map(p.ids.uid);
        linux["gidMappings"] = map(p.ids.gid);
    }
    if p.seccomp.enabled {
        linux["seccomp"] = seccomp(p)?;
    }
    if resources.as_object().is_some_and(|o| !o.is_empty()) {
        linux["resources"] = resources;
    }
    let mut mounts = mounts(p, params)?;
    let mut annotations = BTreeMap::new();
    // runc and crun need /proc inside the container (to close descriptors
    // and set up the process); the pairjail jail itself has none.
    if !p.mounts.iter().any(|m| matches!(m, Mount::Proc { .. })) {
        mounts.push(json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]}));
        annotations.insert(
            "org.pairjail.proc".to_string(),
            "added for OCI runtimes; not in the pairjail jail".to_string(),
        );
    }
    annotations.insert(
        "org.pairjail.landlock".to_string(),
        serde_json::to_string(&p.landlock).map_err(err)?,
    );
    annotations.insert("org.pairjail.env.keep".to_string(), p.env.keep.join(","));
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": true},
        "process": {
            "terminal": false,
            "user": {"uid": p.ids.uid, "gid": p.ids.gid},
            "args": args,
            "env": env,
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": caps,
            "rlimits": rlimits,
        },
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    });
    if ns.uts {
        spec["hostname"] = json!(ns.hostname);
    }
    // Only a spec oci-spec accepts leaves this function.
    let typed: Spec = serde_json::from_value(spec).map_err(err)?;
    serde_json::to_value(&typed).map_err(err)
}
