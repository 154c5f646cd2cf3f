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
    match try_place(c, root, pid, &mut placement) {
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

fn try_place(
    c: &CgroupLimits,
    root: &Path,
    pid: i32,
    placement: &mut Placement,
) -> Result<(), String> {
    let name = format!("pairjail/{pid}");
    let mut writes: Vec<(PathBuf, &str, String)> = Vec::new();
    if root.join("cgroup.controllers").exists() {
        // v2: a controller's files exist in a child only once the parent
        // lists it in cgroup.subtree_control, at every level down to the
        // jail's own group.
        let mut wanted = Vec::new();
        let dir = root.join(&name);
        if let Some(m) = c.memory_max {
            wanted.push("memory");
            writes.push((dir.clone(), "memory.max", m.to_string()));
        }
        if let Some(p) = c.pids_max {
            wanted.push("pids");
            writes.push((dir.clone(), "pids.max", p.to_string()));
        }
        if let Some(w) = c.cpu_weight {
            wanted.push("cpu");
            writes.push((dir.clone(), "cpu.weight", w.to_string()));
        }
        let parent = root.join("pairjail");
        if !parent.exists() {
            fs::create_dir(&parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let enable: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let enable = enable.join(" ");
        write(root, "cgroup.subtree_control", &enable)?;
        write(&parent, "cgroup.subtree_control", &enable)?;
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
