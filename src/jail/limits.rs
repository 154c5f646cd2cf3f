//! Step 8 (rlimits) and step 4's cgroup placement, from the profile's plan.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, setrlimit};

use super::error::JailError;
use crate::profile::plan::{CgroupLimits, Rlimit};

fn resource(r: Rlimit) -> Resource {
    match r {
        Rlimit::Nofile => Resource::RLIMIT_NOFILE,
        Rlimit::Nproc => Resource::RLIMIT_NPROC,
        Rlimit::AddressSpace => Resource::RLIMIT_AS,
        Rlimit::Cpu => Resource::RLIMIT_CPU,
        Rlimit::Fsize => Resource::RLIMIT_FSIZE,
        Rlimit::Core => Resource::RLIMIT_CORE,
    }
}

/// One rlimit, soft = hard (`Sys::setrlimit` on a real machine).
pub fn set(r: Rlimit, v: u64) -> Result<(), JailError> {
    setrlimit(resource(r), v, v)
        .map_err(|e| JailError::sys(format!("setrlimit({}, {v})", r.name()), e))
}

/// The cgroups a jail was placed in; removed when dropped.
#[derive(Debug, Default)]
pub struct Placement {
    dirs: Vec<PathBuf>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Where the cgroup tree is mounted on a real machine.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Places `pid` in fresh cgroups under `root` carrying the limits: cgroup
/// v2 when `root` is the unified tree, else v1 controllers. When the tree
/// is not writable: an error if the profile requires cgroups, otherwise a
/// warning on stderr.
pub fn place(c: &CgroupLimits, root: &Path, pid: i32) -> Result<Placement, JailError> {
    let mut placement = Placement::default();
    if c.is_empty() {
        return Ok(placement);
    }
    let caller = nix::unistd::Uid::effective().as_raw();
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| own_v2_group(&t));
    match try_place(c, root, pid, caller, own.as_deref(), &mut placement) {
        Ok(()) => Ok(placement),
        Err(why) if c.required => Err(JailError::msg(
            "cgroup",
            format!("{why} (the profile sets [cgroup] required = true)"),
        )),
        Err(why) => {
            eprintln!("pairjail: warning: cgroup limits not applied: {why}");
            Ok(placement)
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    fs::write(dir.join(file), value)
        .map_err(|e| format!("cannot write {}/{file}: {e}", dir.display()))
}

/// The caller's own cgroup v2 group, from `/proc/self/cgroup` (`0::/a/b`).
fn own_v2_group(text: &str) -> Option<PathBuf> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(path.trim().trim_start_matches('/')))
}

/// Where a v2 jail's group goes, and the groups above it whose
/// `cgroup.subtree_control` must list the controllers: root makes
/// `pairjail/PID` at the top of the tree; anyone else uses the subtree
/// systemd delegates to them (`user@UID.service`): the nearest group above
/// their own that they own, where `pairjail-PID` goes. A group that holds
/// processes cannot enable controllers for its children, which is why it
/// is a group above the caller's own (a slice, which holds none).
fn v2_place(
    root: &Path,
    pid: i32,
    caller: u32,
    own: Option<&Path>,
) -> Result<(PathBuf, Vec<PathBuf>), String> {
    use std::os::unix::fs::MetadataExt;
    if caller == 0 {
        let parent = root.join("pairjail");
        return Ok((
            parent.join(pid.to_string()),
            vec![root.to_path_buf(), parent],
        ));
    }
    let own = own.ok_or("no cgroup v2 group of your own in /proc/self/cgroup")?;
    let delegated = own
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .map(|a| root.join(a))
        .find(|dir| fs::metadata(dir).is_ok_and(|m| m.uid() == caller));
    match delegated {
        Some(dir) => Ok((dir.join(format!("pairjail-{pid}")), vec![dir])),
        None => Err(format!(
            "no part of the cgroup tree above your own group (/{}) is yours: only root, or a session whose cgroups systemd delegates to you (user@UID.service), can set limits",
            own.display()
        )),
    }
}

fn try_place(
    c: &CgroupLimits,
    root: &Path,
    pid: i32,
    caller: u32,
    own: Option<&Path>,
    placement: &mut Placement,
) -> Result<(), String> {
    let name = format!("pairjail/{pid}");
    let mut writes: Vec<(PathBuf, &str, String)> = Vec::new();
    if root.join("cgroup.controllers").exists() {
        // v2: a controller's files exist in a child only once the parent
        // lists it in cgroup.subtree_control, at every level down to the
        // jail's own group.
        let mut wanted = Vec::new();
        let (dir, above) = v2_place(root, pid, caller, own)?;
        // The controllers the group above has to give (systemd may not
        // delegate them all): a limit without its controller is left out,
        // and said, instead of costing the others.
        let available = above
            .first()
            .and_then(|g| fs::read_to_string(g.join("cgroup.controllers")).ok());
        let has = |name: &str| {
            available
                .as_deref()
                .is_none_or(|a| a.split_whitespace().any(|c| c == name))
        };
        let mut missing = Vec::new();
        for (controller, file, value) in [
            ("memory", "memory.max", c.memory_max),
            ("pids", "pids.max", c.pids_max),
            ("cpu", "cpu.weight", c.cpu_weight),
        ] {
            let Some(value) = value else { continue };
            if !has(controller) {
                missing.push(controller);
                continue;
            }
            wanted.push(controller);
            writes.push((dir.clone(), file, value.to_string()));
        }
        if !missing.is_empty() {
            let why = format!(
                "the {} controller(s) are not available in {} (have systemd delegate them, Delegate= in user@.service, or set [cgroup] required = false)",
                missing.join(", "),
                above.first().map_or(root, |g| g.as_path()).display()
            );
            if c.required || wanted.is_empty() {
                return Err(why);
            }
            eprintln!("pairjail: warning: cgroup: {why}; the other limits apply");
        }
        let enable: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let enable = enable.join(" ");
        for group in &above {
            if !group.exists() {
                fs::create_dir(group)
                    .map_err(|e| format!("cannot create {}: {e}", group.display()))?;
            }
            write(group, "cgroup.subtree_control", &enable)?;
        }
    } else {
        if let Some(m) = c.memory_max {
            writes.push((
                root.join("memory").join(&name),
                "memory.limit_in_bytes",
                m.to_string(),
            ));
        }
        if let Some(p) = c.pids_max {
            writes.push((root.join("pids").join(&name), "pids.max", p.to_string()));
        }
        if let Some(s) = c.cpu_shares() {
            writes.push((root.join("cpu").join(&name), "cpu.shares", s.to_string()));
        }
    }
    for (dir, file, value) in writes {
        if !placement.dirs.contains(&dir) {
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            placement.dirs.push(dir.clone());
        }
        write(&dir, file, &value)?;
    }
    for dir in &placement.dirs {
        write(dir, "cgroup.procs", &pid.to_string())
            .map_err(|e| format!("cannot move pid {pid}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup v2 tree as files in a temp dir (the kernel makes a child's
    /// files itself; here the test checks what pairjail writes).
    fn fake_v2() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        d
    }

    #[test]
    fn v2_enables_the_controllers_down_to_the_jails_group() {
        let root = fake_v2();
        let c = CgroupLimits {
            memory_max: Some(64 << 20),
            pids_max: Some(32),
            cpu_weight: Some(50),
            required: true,
        };
        let placed = place(&c, root.path(), 4242).unwrap();
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +pids +cpu");
        assert_eq!(
            read("pairjail/cgroup.subtree_control"),
            "+memory +pids +cpu"
        );
        assert_eq!(read("pairjail/4242/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("pairjail/4242/pids.max"), "32");
        assert_eq!(read("pairjail/4242/cpu.weight"), "50");
        assert_eq!(read("pairjail/4242/cgroup.procs"), "4242");
        drop(placed);
    }

    /// A host who is not root: its own group is a scope in the subtree
    /// systemd delegates to it; the jail's group goes beside it, under the
    /// nearest group above that the host owns.
    #[test]
    fn v2_without_root_uses_the_subtree_delegated_to_the_caller() {
        use std::os::unix::fs::MetadataExt;
        let root = fake_v2();
        let user = "user.slice/user-4321.slice/user@4321.service";
        let own = format!("{user}/app.slice/term.scope");
        fs::create_dir_all(root.path().join(&own)).unwrap();
        // The delegated groups belong to the caller; as root (CI), a
        // made-up host owns them.
        let me = match fs::metadata(root.path()).unwrap().uid() {
            0 => {
                let mut dir = PathBuf::new();
                for part in Path::new(&own).components() {
                    dir.push(part);
                    std::os::unix::fs::chown(root.path().join(&dir), Some(4321), Some(4321))
                        .unwrap();
                }
                4321
            }
            uid => uid,
        };
        // Owned by someone else, the subtree is not the caller's.
        let other = me + 1;
        let c = CgroupLimits {
            memory_max: Some(1 << 30),
            pids_max: Some(64),
            cpu_weight: None,
            required: true,
        };
        let mut p = Placement::default();
        let e = try_place(&c, root.path(), 77, other, Some(Path::new(&own)), &mut p).unwrap_err();
        assert!(e.contains("is yours"), "{e}");
        // Its own: the group goes under app.slice, the nearest one above.
        let mut p = Placement::default();
        try_place(&c, root.path(), 77, me, Some(Path::new(&own)), &mut p).unwrap();
        let read = |rel: &str| fs::read_to_string(root.path().join(rel)).unwrap();
        let slice = format!("{user}/app.slice");
        assert_eq!(
            read(&format!("{slice}/cgroup.subtree_control")),
            "+memory +pids"
        );
        assert_eq!(
            read(&format!("{slice}/pairjail-77/memory.max")),
            (1u64 << 30).to_string()
        );
        assert_eq!(read(&format!("{slice}/pairjail-77/pids.max")), "64");
        assert_eq!(read(&format!("{slice}/pairjail-77/cgroup.procs")), "77");
        // The top of the tree is left alone.
        assert_eq!(read("cgroup.subtree_control"), "");
        drop(p);
        // A controller the slice does not have costs only its own limit.
        fs::write(
            root.path().join(&slice).join("cgroup.controllers"),
            "memory\n",
        )
        .unwrap();
        let lenient = CgroupLimits {
            required: false,
            ..c
        };
        let mut p = Placement::default();
        try_place(&lenient, root.path(), 78, me, Some(Path::new(&own)), &mut p).unwrap();
        assert_eq!(
            read(&format!("{slice}/pairjail-78/memory.max")),
            (1u64 << 30).to_string()
        );
        assert!(
            !root
                .path()
                .join(&slice)
                .join("pairjail-78/pids.max")
                .exists()
        );
        let mut p = Placement::default();
        let e = try_place(&c, root.path(), 79, me, Some(Path::new(&own)), &mut p).unwrap_err();
        assert!(e.contains("pids controller(s) are not available"), "{e}");
        assert_eq!(
            own_v2_group("12:pids:/x\n0::/user.slice/a.scope\n"),
            Some(PathBuf::from("user.slice/a.scope"))
        );
    }

    #[test]
    fn v1_uses_shares_and_per_controller_trees() {
        let root = tempfile::tempdir().unwrap();
        let c = CgroupLimits {
            cpu_weight: Some(100),
            required: true,
            ..Default::default()
        };
        let _placed = place(&c, root.path(), 7).unwrap();
        let shares = fs::read_to_string(root.path().join("cpu/pairjail/7/cpu.shares")).unwrap();
        assert_eq!(shares, "1024");
    }

    #[test]
    fn a_required_limit_that_cannot_be_placed_is_an_error() {
        let c = CgroupLimits {
            pids_max: Some(1),
            required: true,
            ..Default::default()
        };
        assert!(place(&c, Path::new("/proc/self/nonexistent"), 1).is_err());
    }
}
