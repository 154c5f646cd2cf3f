//! Semantic checks a type system cannot express, each with its own message.
//! Value checks run on every file of the chain so the error points at the
//! file and line that wrote the value; cross-field checks run on the merge.

use std::path::{Component, Path};

use super::error::{ProfileError, ProfileErrors};
use super::locate::Seg;
use super::model::{Compat, Mount, Profile, Scope};
use super::names;
use super::source::Source;

/// Highest Landlock ABI this build knows how to enforce.
pub const MAX_LANDLOCK_ABI: u8 = 9;

pub fn check(merged: &Profile, sources: &[Source]) -> Result<(), ProfileErrors> {
    let mut errors = Vec::new();
    for src in sources {
        if let Some(own) = &src.own {
            check_values(own, merged, src, &mut errors);
        }
    }
    check_combination(merged, sources, &mut errors);
    errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    errors.dedup();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ProfileErrors(errors))
    }
}

fn path(parts: &[Seg]) -> Vec<Seg> {
    parts.to_vec()
}

fn check_values(own: &Profile, merged: &Profile, src: &Source, errors: &mut Vec<ProfileError>) {
    let mut err = |p: Vec<Seg>, msg: String| errors.push(src.error_at(&p, false, msg));

    let host = &own.namespaces.hostname;
    let host_ok = !host.is_empty()
        && host.len() <= 64
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host_ok {
        err(
            path(&["namespaces".into(), "hostname".into()]),
            format!(
                "invalid hostname '{host}' in [namespaces]: use 1-64 letters, digits, '-' or '.'"
            ),
        );
    }

    for (i, m) in own.mounts.iter().enumerate() {
        let at = |field: &str| vec![Seg::from("mount"), Seg::from(i), Seg::from(field)];
        match expand(m.dst(), &merged.params) {
            Err(e) => err(at("dst"), format!("[[mount]] #{}: {e}", i + 1)),
            Ok(dst) => {
                if let Some(why) = bad_jail_path(&dst) {
                    err(
                        at("dst"),
                        format!("[[mount]] #{}: dst '{dst}' {why}", i + 1),
                    );
                } else if dst == "/" {
                    err(
                        at("dst"),
                        format!(
                            "[[mount]] #{}: dst must not be '/': the root is always a fresh tmpfs",
                            i + 1
                        ),
                    );
                }
            }
        }
        match m {
            Mount::Bind {
                rw: true,
                overlay: true,
                ..
            } => err(
                at("overlay"),
                format!(
                    "[[mount]] #{}: overlay = true shows src read-only: drop rw, or overlay",
                    i + 1
                ),
            ),
            Mount::Bind { src: s, .. } => match expand(s, &merged.params) {
                Err(e) => err(at("src"), format!("[[mount]] #{}: {e}", i + 1)),
                Ok(s) => {
                    if let Some(why) = bad_jail_path(&s) {
                        err(at("src"), format!("[[mount]] #{}: src '{s}' {why}", i + 1));
                    }
                }
            },
            Mount::Tmpfs {
                mode: Some(mode), ..
            } if *mode > 0o7777 => err(
                at("mode"),
                format!(
                    "[[mount]] #{}: mode {mode:#o} is not a permission mode (0o0..0o7777)",
                    i + 1
                ),
            ),
            _ => {}
        }
    }

    for (i, h) in own.hide.iter().enumerate() {
        let at = vec![Seg::from("hide"), Seg::from(i)];
        match expand(h, &merged.params) {
            Err(e) => err(at, format!("hide: {e}")),
            Ok(h) => {
                if let Some(why) = bad_jail_path(&h) {
                    err(at, format!("hide: path '{h}' {why}"));
                } else if h == "/" {
                    err(
                        at,
                        "hide: '/' would hide everything; list what to hide".into(),
                    );
                }
            }
        }
    }

    let ll = &own.landlock;
    if !(1..=MAX_LANDLOCK_ABI).contains(&ll.abi) {
        err(
            path(&["landlock".into(), "abi".into()]),
            format!(
                "landlock abi {} is out of range: supported ABIs are 1..={MAX_LANDLOCK_ABI}",
                ll.abi
            ),
        );
    }
    for (field, list) in [
        ("read", &ll.read),
        ("read_exec", &ll.read_exec),
        ("write", &ll.write),
    ] {
        for (i, p) in list.iter().enumerate() {
            let at = vec![Seg::from("landlock"), Seg::from(field), Seg::from(i)];
            match expand(p, &merged.params) {
                Err(e) => err(at, format!("[landlock] {field}: {e}")),
                Ok(p) => {
                    if let Some(why) = bad_jail_path(&p) {
                        err(at, format!("[landlock] {field}: path '{p}' {why}"));
                    }
                }
            }
        }
    }

    for (i, name) in own.seccomp.allow.iter().enumerate() {
        let at = vec![Seg::from("seccomp"), Seg::from("allow"), Seg::from(i)];
        if name == "ioctl" {
            err(
                at,
                "[seccomp] allow must not list ioctl: name the allowed requests in [seccomp] ioctl instead".into(),
            );
        } else if NEVER_ALLOWED.contains(&name.as_str()) {
            err(at, never_allowed_message(name));
        } else if let Some(group) = name.strip_prefix('@') {
            if !merged.seccomp.groups.contains_key(group) {
                let known: Vec<_> = merged
                    .seccomp
                    .groups
                    .keys()
                    .map(|g| format!("@{g}"))
                    .collect();
                err(
                    at,
                    format!(
                        "unknown syscall group '{name}' in [seccomp] allow, defined groups: {}",
                        if known.is_empty() {
                            "none (extend \"base\")".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        } else if names::syscall_number(name).is_none() {
            err(at, format!("unknown syscall '{name}' in [seccomp] allow"));
        }
    }
    for (group, list) in &own.seccomp.groups {
        for (i, name) in list.iter().enumerate() {
            if NEVER_ALLOWED.contains(&name.as_str()) {
                err(
                    vec![
                        "seccomp".into(),
                        "groups".into(),
                        group.as_str().into(),
                        i.into(),
                    ],
                    never_allowed_message(name),
                );
            } else if name == "ioctl" {
                err(
                    vec![
                        "seccomp".into(),
                        "groups".into(),
                        group.as_str().into(),
                        i.into(),
                    ],
                    format!(
                        "[seccomp.groups] {group} must not list ioctl: name the allowed requests in [seccomp] ioctl instead"
                    ),
                );
            } else if names::syscall_number(name).is_none() {
                err(
                    vec![
                        "seccomp".into(),
                        "groups".into(),
                        group.as_str().into(),
                        i.into(),
                    ],
                    format!("unknown syscall '{name}' in [seccomp.groups] {group}"),
                );
            }
        }
    }
    for (i, name) in own.seccomp.ioctl.iter().enumerate() {
        let at = vec![Seg::from("seccomp"), Seg::from("ioctl"), Seg::from(i)];
        if names::FORBIDDEN_IOCTLS.contains(&name.as_str()) {
            err(
                at,
                format!("ioctl {name} can never be allowed: it injects input into the terminal"),
            );
        } else if names::ioctl_number(name).is_none() {
            let known: Vec<_> = names::ioctl_names().collect();
            err(
                at,
                format!(
                    "unknown ioctl '{name}' in [seccomp] ioctl, known: {}",
                    known.join(", ")
                ),
            );
        }
    }

    for (i, name) in own.seccomp.socket_families.iter().enumerate() {
        if names::socket_family(name).is_none() {
            let known: Vec<_> = names::socket_family_names().collect();
            err(
                vec!["seccomp".into(), "socket_families".into(), i.into()],
                format!(
                    "unknown address family '{name}' in [seccomp] socket_families, known: {}",
                    known.join(", ")
                ),
            );
        }
    }

    for (i, name) in own.capabilities.keep.iter().enumerate() {
        if names::capability(name).is_none() {
            err(
                vec!["capabilities".into(), "keep".into(), i.into()],
                format!(
                    "unknown capability '{name}' in [capabilities] keep (e.g. CAP_NET_BIND_SERVICE)"
                ),
            );
        }
    }

    if let Some(w) = own.cgroup.cpu_weight
        && !(1..=10000).contains(&w)
    {
        err(
            path(&["cgroup".into(), "cpu_weight".into()]),
            format!("cgroup cpu_weight {w} is out of range 1..=10000"),
        );
    }

    for (i, name) in own.env.keep.iter().enumerate() {
        if !env_name_ok(name) {
            err(
                vec!["env".into(), "keep".into(), i.into()],
                format!("invalid variable name '{name}' in [env] keep"),
            );
        }
    }
    for (name, value) in &own.env.set {
        if let Err(e) = expand(value, &merged.params) {
            errors.push(src.error_at(
                &["env".into(), "set".into(), name.as_str().into()],
                false,
                format!("[env] set {name}: {e}"),
            ));
        }
    }
    for name in own.env.set.keys() {
        if !env_name_ok(name) {
            errors.push(src.error_at(
                &["env".into(), "set".into(), name.as_str().into()],
                true,
                format!("invalid variable name '{name}' in [env.set]"),
            ));
        }
    }
}

/// Checks that only make sense on the merged profile.
fn check_combination(p: &Profile, sources: &[Source], errors: &mut Vec<ProfileError>) {
    let at = |parts: &[Seg], msg: String| -> ProfileError {
        let src = sources
            .iter()
            .find(|s| super::locate::span_of(&s.text, parts, false).is_some())
            .unwrap_or(&sources[0]);
        src.error_at(parts, false, msg)
    };
    let ns = &p.namespaces;
    if !ns.user && (ns.mount || ns.pid || ns.net || ns.ipc || ns.uts || ns.cgroup) {
        errors.push(at(
            &["namespaces".into(), "user".into()],
            "namespaces.user = false needs every other namespace off too: without a user namespace pairjail has no privilege to create them and never keeps host root".into(),
        ));
    }
    if !ns.mount && !p.mounts.is_empty() {
        errors.push(at(
            &["namespaces".into(), "mount".into()],
            "[[mount]] entries need namespaces.mount = true".into(),
        ));
    }
    for (i, m) in p.mounts.iter().enumerate() {
        if matches!(m, Mount::Proc { .. }) && !ns.pid {
            errors.push(at(
                &["mount".into(), i.into()],
                "a proc mount needs namespaces.pid = true, or it would show every host process"
                    .into(),
            ));
        }
    }
    if p.landlock.enabled {
        if !ns.net && !p.landlock.scopes.contains(&Scope::AbstractUnixSocket) {
            errors.push(at(
                &["namespaces".into(), "net".into()],
                "a shared network namespace (net = false) needs [landlock] scopes to include \"abstract-unix-socket\", or the jail can reach the host's abstract unix sockets".into(),
            ));
        }
        if !ns.net && p.landlock.compat != Compat::Hard {
            errors.push(at(
                &["landlock".into(), "compat".into()],
                "a shared network namespace (net = false) needs [landlock] compat = \"hard\": best-effort drops the abstract-socket scope and the TCP rules on a kernel without them".into(),
            ));
        }
        if !p.landlock.scopes.is_empty() && p.landlock.abi < 6 {
            errors.push(at(
                &["landlock".into(), "scopes".into()],
                format!(
                    "[landlock] scopes need abi >= 6 (abi is {})",
                    p.landlock.abi
                ),
            ));
        }
    } else if !ns.net {
        errors.push(at(
            &["namespaces".into(), "net".into()],
            "a shared network namespace (net = false) needs Landlock enabled with scope \"abstract-unix-socket\"".into(),
        ));
    }
    if p.seccomp.enabled {
        let allowed = p.allowed_syscalls();
        if !allowed.iter().any(|s| s == "execveat" || s == "execve") {
            errors.push(at(
                &["seccomp".into(), "allow".into()],
                "[seccomp] allow must include execveat: the jail starts its program by file descriptor after the filter is loaded".into(),
            ));
        }
    }
}

/// Syscalls no jail may list: those that create or join namespaces (a
/// jail never needs them; `clone` is allowed only with no CLONE_NEW*
/// flag), and those whose work the filter cannot see: `openat2` carries
/// its mode in a struct (a setuid file, see plan.rs), and io_uring runs
/// opens, connects and more with no syscall of their own.
const NEVER_ALLOWED: &[&str] = &[
    "clone3",
    "unshare",
    "setns",
    "openat2",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

fn never_allowed_message(name: &str) -> String {
    match name {
        "clone3" => "[seccomp] allow must not list clone3: its flags cannot be filtered, so it could create namespaces; programs fall back to clone when clone3 fails with ENOSYS (use default_action = \"errno ENOSYS\")".into(),
        "openat2" => "[seccomp] allow must not list openat2: its mode is in a struct the filter cannot read, so it could make a setuid file; programs fall back to openat when openat2 fails with ENOSYS".into(),
        n if n.starts_with("io_uring") => format!(
            "[seccomp] allow must not list {name}: io_uring's operations (open, connect, …) run without a syscall the filter sees"
        ),
        _ => format!(
            "[seccomp] allow must not list {name}: nested namespaces are never allowed inside the jail"
        ),
    }
}

/// Substitutes `{name}` from `params`.
pub fn expand(
    s: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in '{s}'"))?;
        let name = &rest[open + 1..open + close];
        let value = params.get(name).ok_or_else(|| {
            format!("unknown parameter '{{{name}}}' in '{s}' (declare it in [params])")
        })?;
        out.push_str(value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a path cannot be used inside the jail, if it cannot.
fn bad_jail_path(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        return Some("must be an absolute path");
    }
    if Path::new(p).components().any(|c| c == Component::ParentDir) {
        return Some("must not contain '..'");
    }
    if p.contains('\0') {
        return Some("must not contain NUL");
    }
    None
}

fn env_name_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Profile {
    /// The allowlist with `@group`s expanded, without duplicates.
    pub fn allowed_syscalls(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in &self.seccomp.allow {
            let names: Vec<&String> = match name.strip_prefix('@') {
                Some(g) => self
                    .seccomp
                    .groups
                    .get(g)
                    .map(|l| l.iter().collect())
                    .unwrap_or_default(),
                None => vec![name],
            };
            for n in names {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}
