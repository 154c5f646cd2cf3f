//! Step 8 (rlimits) and step 4's cgroup placement.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, setrlimit};

use super::error::JailError;
use crate::profile::{Cgroup as CgroupPolicy, Rlimits};

pub fn apply_rlimits(r: &Rlimits) -> Result<(), JailError> {
    let set = |res: Resource, name: &str, v: Option<u64>| -> Result<(), JailError> {
        match v {
            Some(v) => setrlimit(res, v, v)
                .map_err(|e| JailError::sys(format!("setrlimit({name}, {v})"), e)),
            None => Ok(()),
        }
    };
    set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", r.nofile)?;
    set(Resource::RLIMIT_NPROC, "RLIMIT_NPROC", r.nproc)?;
    set(
        Resource::RLIMIT_AS,
        "RLIMIT_AS",
        r.address_space.map(|s| s.0),
    )?;
    set(Resource::RLIMIT_CPU, "RLIMIT_CPU", r.cpu)?;
    set(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", r.fsize.map(|s| s.0))?;
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", r.core.map(|s| s.0))
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

const ROOT: &str = "/sys/fs/cgroup";

/// Places `pid` in fresh cgroups carrying the profile's limits: cgroup v2
/// when the unified tree is mounted at /sys/fs/cgroup, else v1 controllers.
/// When the tree is not writable: an error if the profile requires cgroups,
/// otherwise a warning on stderr.
pub fn place(c: &CgroupPolicy, pid: i32) -> Result<Placement, JailError> {
    let mut placement = Placement::default();
    if c.memory_max.is_none() && c.pids_max.is_none() && c.cpu_weight.is_none() {
        return Ok(placement);
    }
    match try_place(c, pid, &mut placement) {
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

fn try_place(c: &CgroupPolicy, pid: i32, placement: &mut Placement) -> Result<(), String> {
    let name = format!("pairjail/{pid}");
    let mut writes: Vec<(PathBuf, &str, String)> = Vec::new();
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        let dir = Path::new(ROOT).join(&name);
        if let Some(m) = c.memory_max {
            writes.push((dir.clone(), "memory.max", m.0.to_string()));
        }
        if let Some(p) = c.pids_max {
            writes.push((dir.clone(), "pids.max", p.to_string()));
        }
        if let Some(w) = c.cpu_weight {
            writes.push((dir.clone(), "cpu.weight", w.to_string()));
        }
    } else {
        if let Some(m) = c.memory_max {
            writes.push((
                Path::new(ROOT).join("memory").join(&name),
                "memory.limit_in_bytes",
                m.0.to_string(),
            ));
        }
        if let Some(p) = c.pids_max {
            writes.push((
                Path::new(ROOT).join("pids").join(&name),
                "pids.max",
                p.to_string(),
            ));
        }
        if let Some(w) = c.cpu_weight {
            // v1 cpu.shares: 1024 is the default weight of 100.
            writes.push((
                Path::new(ROOT).join("cpu").join(&name),
                "cpu.shares",
                (w * 1024 / 100).max(2).to_string(),
            ));
        }
    }
    for (dir, file, value) in writes {
        if !placement.dirs.contains(&dir) {
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            placement.dirs.push(dir.clone());
        }
        fs::write(dir.join(file), &value)
            .map_err(|e| format!("cannot write {}/{file}: {e}", dir.display()))?;
    }
    for dir in &placement.dirs {
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("cannot move pid {pid} into {}: {e}", dir.display()))?;
    }
    Ok(())
}
