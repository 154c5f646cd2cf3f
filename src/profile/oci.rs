//! A profile as an OCI runtime `config.json`, for security teams that run
//! or review containers with runc/crun. Built with `oci_spec`'s typed
//! builders from the same [`Plan`] the jail runs, so the export cannot
//! drift from what the jail enforces.
//!
//! What does not translate: Landlock (no OCI field; carried as the
//! `org.pairjail.landlock` annotation and NOT enforced by runtimes), the
//! fresh tmpfs root (OCI uses `root.path`, read-only), and execution by
//! file descriptor (runtimes exec by path, so `execve` and what a runtime's
//! init calls after loading the filter join the allowlist: see
//! [`RUNTIME_SYSCALLS`]), no /proc (runtimes need one; it is added), and
//! the host's network namespace (kept out by Landlock, so the export gets a
//! namespace of its own).

use std::collections::{BTreeMap, HashMap, HashSet};

use oci_spec::runtime::{
    Arch, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder,
    Mount as OciMount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::Action;
use super::expand;
use super::model::{Mount, Profile};
use super::plan::{self, ArgCheck, Namespace, Plan, Rlimit, SeccompPlan};

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

fn namespace(n: Namespace) -> LinuxNamespaceType {
    match n {
        Namespace::User => LinuxNamespaceType::User,
        Namespace::Mount => LinuxNamespaceType::Mount,
        Namespace::Pid => LinuxNamespaceType::Pid,
        Namespace::Net => LinuxNamespaceType::Network,
        Namespace::Ipc => LinuxNamespaceType::Ipc,
        Namespace::Uts => LinuxNamespaceType::Uts,
        Namespace::Cgroup => LinuxNamespaceType::Cgroup,
    }
}

fn rlimit(r: Rlimit) -> PosixRlimitType {
    match r {
        Rlimit::Nofile => PosixRlimitType::RlimitNofile,
        Rlimit::Nproc => PosixRlimitType::RlimitNproc,
        Rlimit::AddressSpace => PosixRlimitType::RlimitAs,
        Rlimit::Cpu => PosixRlimitType::RlimitCpu,
        Rlimit::Fsize => PosixRlimitType::RlimitFsize,
        Rlimit::Core => PosixRlimitType::RlimitCore,
    }
}

fn seccomp(s: &SeccompPlan) -> Result<LinuxSeccomp, String> {
    let mut b = LinuxSeccompBuilder::default().architectures(vec![Arch::ScmpArchX86_64]);
    b = match s.default_action {
        Action::Errno(n) => b
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(n),
        Action::KillProcess => b.default_action(LinuxSeccompAction::ScmpActKillProcess),
        Action::Trap => b.default_action(LinuxSeccompAction::ScmpActTrap),
        Action::Log => b.default_action(LinuxSeccompAction::ScmpActLog),
    };
    let allow = |names: Vec<String>| {
        LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActAllow)
    };
    // Unconditional calls in one rule, the runtime's own needs added.
    let mut plain: Vec<String> = s
        .rules
        .iter()
        .filter(|r| r.any_of.is_empty())
        .map(|r| r.name.clone())
        .collect();
    for extra in RUNTIME_SYSCALLS {
        if !s.rules.iter().any(|r| r.name == *extra) {
            plain.push(extra.to_string());
        }
    }
    let mut syscalls = vec![allow(plain).build().map_err(err)?];
    // Each alternative check is a rule of its own (rules are OR-ed).
    for r in s.rules.iter().filter(|r| !r.any_of.is_empty()) {
        for check in &r.any_of {
            syscalls.push(
                allow(vec![r.name.clone()])
                    .args(vec![seccomp_arg(*check)?])
                    .build()
                    .map_err(err)?,
            );
        }
    }
    // What no jail lets through, refused by name under a `log` default.
    // Under any other, the allow rules' own conditions refuse the same
    // calls (a setuid mode), with the default action's errno rather than
    // EPERM: runc's libseccomp crashes exporting an errno rule beside a
    // conditional allow of the same call.
    let by_name = s.default_action == Action::Log;
    for r in s.refused.iter().filter(|_| by_name) {
        let mut rule = LinuxSyscallBuilder::default()
            .names(vec![r.name.to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(r.errno);
        if let Some(check) = r.when {
            rule = rule.args(vec![seccomp_arg(check)?]);
        }
        syscalls.push(rule.build().map_err(err)?);
    }
    b.syscalls(syscalls).build().map_err(err)
}

fn seccomp_arg(check: ArgCheck) -> Result<LinuxSeccompArg, String> {
    match check {
        // MASKED_EQ: (arg & value) == valueTwo.
        ArgCheck::Low32Eq { index, value } => LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .value(0xffff_ffffu64)
            .value_two(value)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq),
        ArgCheck::NoBits { index, mask } => LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .value(mask)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq),
        ArgCheck::AllBits { index, mask } => LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .value(mask)
            .value_two(mask)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq),
        // OCI has no masked "not equal": this compares all 64 bits, so a
        // value with high bits set passes where pairjail's own filter (low
        // 32 bits, as the kernel reads the int) stops it.
        ArgCheck::Low32Ne { index, value } => LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .value(value)
            .op(LinuxSeccompOperator::ScmpCmpNe),
    }
    .build()
    .map_err(err)
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Result<OciMount, String> {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(err)
}

fn mounts(p: &Profile, params: &BTreeMap<String, String>) -> Result<Vec<OciMount>, String> {
    let mut out = Vec::new();
    for m in &p.mounts {
        let dst = expand(m.dst(), params).map_err(err)?;
        let made = match m {
            Mount::Bind {
                src,
                rw,
                optional,
                overlay,
                ..
            } => {
                let src = expand(src, params).map_err(err)?;
                // A bind in its place would let the container connect to
                // the sockets the profile closes: no export at all.
                if *overlay {
                    return Err(format!(
                        "the bind of {src} has overlay = true, which has no OCI form (an overlay without an upper layer needs an empty host directory, which a spec cannot name): copy the profile without it (the sockets under {src} are then reachable) and export that"
                    ));
                }
                // As in the jail: an optional bind whose source is absent is left out.
                if *optional && !std::path::Path::new(&src).exists() {
                    continue;
                }
                let access = if *rw { "rw" } else { "ro" };
                mount(&dst, "bind", &src, &["rbind", "nosuid", "nodev", access])?
            }
            Mount::Tmpfs { size, mode, .. } => {
                let mode = format!("mode={:o}", mode.unwrap_or(0o755));
                let size = size.map(|s| format!("size={}", s.0));
                let mut opts = vec!["nosuid", "nodev", mode.as_str()];
                opts.extend(size.as_deref());
                mount(&dst, "tmpfs", "tmpfs", &opts)?
            }
            Mount::Proc { .. } => mount(&dst, "proc", "proc", &["nosuid", "nodev", "noexec"])?,
            Mount::Dev { pts, .. } => {
                let dev = mount(
                    &dst,
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "noexec", "mode=755", "size=65536k"],
                )?;
                if !*pts {
                    out.push(dev);
                    continue;
                }
                out.push(dev);
                // Runtimes make /dev/ptmx a link to pts/ptmx themselves.
                mount(
                    &format!("{dst}/pts"),
                    "devpts",
                    "devpts",
                    &[
                        "nosuid",
                        "noexec",
                        "newinstance",
                        "ptmxmode=0666",
                        "mode=0620",
                        "max=512",
                    ],
                )?
            }
        };
        out.push(made);
    }
    Ok(out)
}

/// The profile's `hide` list: literal paths become `maskedPaths` (runtimes
/// mask them the same way); patterns with `*` or `?` cannot, and are
/// carried in the `org.pairjail.hide` annotation, NOT enforced by runtimes.
fn hidden(
    p: &Profile,
    params: &BTreeMap<String, String>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut literal = Vec::new();
    let mut patterns = Vec::new();
    for h in &p.hide {
        let h = expand(h, params).map_err(err)?;
        if h.contains(['*', '?', '[']) {
            patterns.push(h);
        } else {
            literal.push(h);
        }
    }
    Ok((literal, patterns))
}

fn capabilities(keep: &[String]) -> Result<HashSet<Capability>, String> {
    keep.iter()
        .map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).map_err(err))
        .collect()
}

/// Runtimes set the container up as its uid 0 before switching to
/// process.user, so both need a mapping: 0 → base, the profile's id →
/// base + 1 (pick base from /etc/subuid for your runtime user).
fn id_map(id: u32, base: u32) -> Result<Vec<oci_spec::runtime::LinuxIdMapping>, String> {
    let one = |container: u32, host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(container)
            .host_id(host)
            .size(1u32)
            .build()
            .map_err(err)
    };
    let mut v = vec![one(0, base)?];
    if id != 0 {
        v.push(one(id, base + 1)?);
    }
    Ok(v)
}

/// The OCI config for running `args` under profile `p`.
/// What a `config.json` from [`export`] cannot carry of pairjail's own
/// jail: said to the user at export (runc enforces none of it).
pub fn losses(p: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    if p.landlock.enabled {
        out.push("Landlock (path rules, exec of the program file only, no TCP, the abstract-socket and signal scopes, and hide's hold on secrets saved after the start) travels only as an annotation: runc does not apply it".into());
    }
    if !p.hide.is_empty() {
        out.push("hide patterns with * or ? travel only as an annotation".into());
    }
    if !p.env.keep.is_empty() {
        out.push("env.keep travels only as an annotation: the variables are not copied".into());
    }
    out.push("OCI has no masked \"not equal\": an argument check of that kind compares all 64 bits (a value with high bits set passes)".into());
    out.push("the filter is the executed program's: a relay that pairjail calls without an exec has no execve or execveat, this config has them".into());
    let allows = |name: &str| p.allowed_syscalls().iter().any(|s| s == name);
    if !allows("execve") {
        out.push("the profile allows no execve (its program can start no other), but this config does: runtimes execute the program by path".into());
    }
    if p.cgroup.cpu_weight.is_some() {
        out.push("cgroup.cpu_weight is exported as cpu.shares (weight × 1024 ÷ 100), which a runtime on cgroup v2 turns back into a weight by its own formula, not always the same weight".into());
    }
    out.push("read-only binds are read-only at their top mount only (pairjail makes mounts below them read-only too)".into());
    out.push("the root is the rootfs directory, not an empty tmpfs; optional binds are included as this machine has them".into());
    out
}

pub fn export(
    p: &Profile,
    params: &BTreeMap<String, String>,
    args: &[String],
    host_id_base: u32,
) -> Result<Spec, String> {
    let plan: Plan = plan::plan(p).map_err(err)?;
    let caps = capabilities(&p.capabilities.keep)?;
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(caps.clone())
        .ambient(caps)
        .build()
        .map_err(err)?;
    let rlimits = plan
        .rlimits
        .iter()
        .map(|&(r, v)| {
            PosixRlimitBuilder::default()
                .typ(rlimit(r))
                .hard(v)
                .soft(v)
                .build()
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let env = p
        .env
        .set
        .iter()
        .map(|(k, v)| Ok(format!("{k}={}", expand(v, params).map_err(err)?)))
        .collect::<Result<Vec<String>, String>>()?;
    // `caller` ids: the one id mapped besides 0 maps to itself.
    let (uid, gid) = p.ids.inside(host_id_base + 1, host_id_base + 1);
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .build()
                .map_err(err)?,
        )
        .args(args.to_vec())
        .env(env)
        .cwd("/")
        .no_new_privileges(true)
        .capabilities(caps)
        .rlimits(rlimits)
        .build()
        .map_err(err)?;

    // A profile shares the host's network namespace only where Landlock
    // (its abstract-socket scope, its TCP rules) keeps the host's network
    // out, and runtimes do not enforce Landlock: the container gets a
    // network namespace of its own instead, stronger than the profile.
    let mut wanted = plan.namespaces.clone();
    if !wanted.contains(&Namespace::Net) {
        wanted.push(Namespace::Net);
    }
    let namespaces = wanted
        .iter()
        .map(|&n| {
            LinuxNamespaceBuilder::default()
                .typ(namespace(n))
                .build()
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (hide, hide_patterns) = hidden(p, params)?;
    let mut masked = oci_spec::runtime::get_default_maskedpaths();
    masked.extend(hide);
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    if p.namespaces.user {
        linux = linux
            .uid_mappings(id_map(uid, host_id_base)?)
            .gid_mappings(id_map(gid, host_id_base)?);
    }
    if let Some(s) = &plan.seccomp {
        linux = linux.seccomp(seccomp(s)?);
    }
    let c = plan.cgroup;
    if !c.is_empty() {
        let mut r = LinuxResourcesBuilder::default();
        if let Some(m) = c.memory_max {
            let limit = i64::try_from(m).map_err(err)?;
            r = r.memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .build()
                    .map_err(err)?,
            );
        }
        if let Some(n) = c.pids_max {
            let limit = i64::try_from(n).map_err(err)?;
            r = r.pids(
                LinuxPidsBuilder::default()
                    .limit(limit)
                    .build()
                    .map_err(err)?,
            );
        }
        if let Some(shares) = c.cpu_shares() {
            r = r.cpu(
                LinuxCpuBuilder::default()
                    .shares(shares)
                    .build()
                    .map_err(err)?,
            );
        }
        linux = linux.resources(r.build().map_err(err)?);
    }
    let mut linux = linux.build().map_err(err)?;
    if c.is_empty() {
        // The builder's defaults would add runc's device rules.
        linux.set_resources(None);
    }

    let mut mounts = mounts(p, params)?;
    let mut annotations = HashMap::new();
    // runc and crun need /proc inside the container (to close descriptors
    // and set up the process); the pairjail jail itself has none.
    if !p.mounts.iter().any(|m| matches!(m, Mount::Proc { .. })) {
        mounts.push(mount(
            "/proc",
            "proc",
            "proc",
            &["nosuid", "nodev", "noexec"],
        )?);
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
    if !hide_patterns.is_empty() {
        annotations.insert(
            "org.pairjail.hide".to_string(),
            format!(
                "patterns expanded at pairjail jail entry; NOT masked by OCI runtimes: {}",
                hide_patterns.join(",")
            ),
        );
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()
                .map_err(err)?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(err)?;
    // Unset fields take the builder's defaults (a hostname among them):
    // only the UTS namespace gives the container a name.
    spec.set_hostname(p.namespaces.uts.then(|| p.namespaces.hostname.clone()));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What runc will not enforce is said at export, never dropped quietly.
    #[test]
    fn the_export_names_what_it_cannot_carry() {
        let search = crate::profile::SearchPath::only(vec![]);
        let p = crate::profile::resolve("guest-relay", &search)
            .unwrap()
            .profile;
        let losses = losses(&p);
        assert!(
            losses.iter().any(|l| l.starts_with("Landlock")),
            "{losses:?}"
        );
        assert!(losses.iter().any(|l| l.contains("execve")), "{losses:?}");
        // session-client's point is that its program starts nothing.
        let mut p = crate::profile::resolve("session-client", &search)
            .unwrap()
            .profile;
        let said = super::losses(&p);
        assert!(
            said.iter()
                .any(|l| l.starts_with("the profile allows no execve")),
            "{said:?}"
        );
        assert!(!said.iter().any(|l| l.starts_with("cgroup.cpu_weight")));
        p.cgroup.cpu_weight = Some(100);
        let said = super::losses(&p);
        assert!(
            said.iter().any(|l| l.starts_with("cgroup.cpu_weight")),
            "{said:?}"
        );
    }
}
