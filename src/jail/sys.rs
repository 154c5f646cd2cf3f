//! The kernel calls of the child's setup (mounts, ids, hostname, rlimits,
//! capabilities, descriptors) behind a trait, so the logic that sequences
//! them is unit-tested without root (the youki way).

#[cfg(test)]
use std::cell::RefCell;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::error::JailError;
use super::fs::FileId;
use crate::profile::plan::Rlimit;

pub type SysResult = Result<(), JailError>;

pub trait Sys {
    fn mount(
        &self,
        src: Option<&Path>,
        dst: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult;
    fn umount_detach(&self, target: &Path) -> SysResult;
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult;
    /// Creates an empty file to bind a file onto.
    fn touch(&self, path: &Path) -> SysResult;
    fn chdir(&self, path: &Path) -> SysResult;
    /// `pivot_root(".", ".")`: the old root ends up stacked under the new one.
    fn pivot_root_here(&self) -> SysResult;
    fn pivot_root(&self, new: &Path, old: &Path) -> SysResult;
    /// The mount flags a read-only remount must keep (they are locked in a
    /// user namespace): nosuid, nodev, noexec, noatime and friends.
    fn locked_flags(&self, path: &Path) -> Result<MsFlags, JailError>;
    fn drop_bounding(&self, cap: caps::Capability) -> SysResult;
    fn set_caps(&self, set: caps::CapSet, keep: &caps::CapsHashSet) -> SysResult;
    /// A prctl that takes one integer argument.
    fn prctl(&self, option: libc::c_int, arg: u64, name: &str) -> SysResult;
    /// setresgid then setresuid, all three ids each.
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult;
    fn sethostname(&self, name: &str) -> SysResult;
    fn setrlimit(&self, limit: Rlimit, value: u64) -> SysResult;
    /// close_range(lo, hi, 0).
    fn close_range(&self, lo: u32, hi: u32) -> SysResult;
    /// Fails unless `path` is the file `id` names.
    fn same_file(&self, path: &Path, id: FileId) -> SysResult;
    /// Makes the mount at `path` and every mount below it read-only.
    fn read_only_below(&self, path: &Path) -> SysResult;
}

pub struct Real;

impl Sys for Real {
    fn mount(
        &self,
        src: Option<&Path>,
        dst: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        nix::mount::mount(src, dst, fstype, flags, data).map_err(|e| {
            JailError::sys(
                format!(
                    "mount({}, {}, {}, {flags:?})",
                    src.map_or("none".into(), |s| s.display().to_string()),
                    dst.display(),
                    fstype.unwrap_or("none")
                ),
                e,
            )
        })
    }
    fn umount_detach(&self, target: &Path) -> SysResult {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| JailError::sys(format!("umount2({}, MNT_DETACH)", target.display()), e))
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(|e| JailError::sys(format!("mkdir({})", path.display()), io_errno(&e)))
    }
    fn touch(&self, path: &Path) -> SysResult {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| JailError::sys(format!("create({})", path.display()), io_errno(&e)))
    }
    fn chdir(&self, path: &Path) -> SysResult {
        nix::unistd::chdir(path)
            .map_err(|e| JailError::sys(format!("chdir({})", path.display()), e))
    }
    fn pivot_root_here(&self) -> SysResult {
        nix::unistd::pivot_root(".", ".").map_err(|e| JailError::sys("pivot_root(., .)", e))
    }
    fn pivot_root(&self, new: &Path, old: &Path) -> SysResult {
        nix::unistd::pivot_root(new, old).map_err(|e| {
            JailError::sys(
                format!("pivot_root({}, {})", new.display(), old.display()),
                e,
            )
        })
    }
    fn locked_flags(&self, path: &Path) -> Result<MsFlags, JailError> {
        use nix::sys::statvfs::{FsFlags, statvfs};
        let st =
            statvfs(path).map_err(|e| JailError::sys(format!("statvfs({})", path.display()), e))?;
        let f = st.flags();
        let mut out = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                out |= ms;
            }
        }
        Ok(out)
    }
    fn drop_bounding(&self, cap: caps::Capability) -> SysResult {
        caps::drop(None, caps::CapSet::Bounding, cap)
            .map_err(|e| JailError::msg(format!("prctl(PR_CAPBSET_DROP, {cap})"), e.to_string()))
    }
    fn set_caps(&self, set: caps::CapSet, keep: &caps::CapsHashSet) -> SysResult {
        // Emptying the ambient set is one prctl; the caps crate would test
        // and lower each of the 41 capabilities, 82 syscalls of every entry.
        if matches!(set, caps::CapSet::Ambient) && keep.is_empty() {
            return super::process::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
                "PR_CAP_AMBIENT_CLEAR_ALL",
            );
        }
        caps::set(None, set, keep)
            .map_err(|e| JailError::msg(format!("capset({set:?})"), e.to_string()))
    }
    fn prctl(&self, option: libc::c_int, arg: u64, name: &str) -> SysResult {
        super::process::prctl(option, arg, name)
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        use nix::unistd::{Gid, Uid, setresgid, setresuid};
        let g = Gid::from_raw(gid);
        setresgid(g, g, g).map_err(|e| JailError::sys(format!("setresgid({gid})"), e))?;
        let u = Uid::from_raw(uid);
        setresuid(u, u, u).map_err(|e| JailError::sys(format!("setresuid({uid})"), e))
    }
    fn sethostname(&self, name: &str) -> SysResult {
        nix::unistd::sethostname(name)
            .map_err(|e| JailError::sys(format!("sethostname({name})"), e))
    }
    fn setrlimit(&self, limit: Rlimit, value: u64) -> SysResult {
        super::limits::set(limit, value)
    }
    fn close_range(&self, lo: u32, hi: u32) -> SysResult {
        // SAFETY: close_range only closes descriptors in [lo, hi]; the
        // caller keeps what it still needs outside that range.
        let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        if r < 0 {
            return Err(JailError::sys(
                format!("close_range({lo}, {hi})"),
                Errno::last(),
            ));
        }
        Ok(())
    }
    fn read_only_below(&self, path: &Path) -> SysResult {
        use std::os::unix::ffi::OsStrExt;
        /// The kernel's `struct mount_attr` (linux/mount.h).
        #[repr(C)]
        struct MountAttr {
            attr_set: u64,
            attr_clr: u64,
            propagation: u64,
            userns_fd: u64,
        }
        const MOUNT_ATTR_RDONLY: u64 = 0x1;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| JailError::msg("mount_setattr", "a path with NUL"))?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr reads `attr` (its size is passed) and the
        // NUL-terminated path; both live across the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(JailError::sys(
                format!("mount_setattr({}, AT_RECURSIVE, RDONLY)", path.display()),
                Errno::last(),
            ));
        }
        Ok(())
    }
    fn same_file(&self, path: &Path, id: FileId) -> SysResult {
        let meta = std::fs::metadata(path)
            .map_err(|e| JailError::sys(format!("stat({})", path.display()), io_errno(&e)))?;
        if FileId::of(&meta) != id {
            return Err(JailError::msg(
                format!("bind onto {}", path.display()),
                "the source was replaced by another file between the plan and the mount",
            ));
        }
        Ok(())
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Records every call instead of making it, failing with EPERM on the first
/// call that starts with `fail_on`. For unit tests of the setup sequence.
#[cfg(test)]
#[derive(Default)]
pub struct Recording {
    pub calls: RefCell<Vec<String>>,
    pub fail_on: Option<String>,
    /// What every source mount has locked (default: nosuid and nodev).
    pub locked: Option<MsFlags>,
}

#[cfg(test)]
impl Recording {
    fn log(&self, call: String) -> SysResult {
        let fail = self
            .fail_on
            .as_ref()
            .is_some_and(|f| call.starts_with(f.as_str()));
        self.calls.borrow_mut().push(call.clone());
        if fail {
            return Err(JailError::sys(call, Errno::EPERM));
        }
        Ok(())
    }
}

#[cfg(test)]
impl Sys for Recording {
    fn mount(
        &self,
        src: Option<&Path>,
        dst: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        let flags = format!("{flags:?}");
        let flags = flags.trim_start_matches("MsFlags(").trim_end_matches(')');
        self.log(format!(
            "mount {} {} {} {flags} {}",
            src.map_or("-".into(), |s| s.display().to_string()),
            dst.display(),
            fstype.unwrap_or("-"),
            data.unwrap_or("-")
        ))
    }
    fn umount_detach(&self, target: &Path) -> SysResult {
        self.log(format!("umount {}", target.display()))
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult {
        self.log(format!("mkdir {} {mode:o}", path.display()))
    }
    fn touch(&self, path: &Path) -> SysResult {
        self.log(format!("touch {}", path.display()))
    }
    fn chdir(&self, path: &Path) -> SysResult {
        self.log(format!("chdir {}", path.display()))
    }
    fn pivot_root_here(&self) -> SysResult {
        self.log("pivot_root . .".into())
    }
    fn pivot_root(&self, new: &Path, old: &Path) -> SysResult {
        self.log(format!("pivot_root {} {}", new.display(), old.display()))
    }
    fn locked_flags(&self, _: &Path) -> Result<MsFlags, JailError> {
        Ok(self
            .locked
            .unwrap_or(MsFlags::MS_NOSUID | MsFlags::MS_NODEV))
    }
    fn drop_bounding(&self, cap: caps::Capability) -> SysResult {
        self.log(format!("drop-bounding {cap}"))
    }
    fn prctl(&self, _: libc::c_int, arg: u64, name: &str) -> SysResult {
        self.log(format!("prctl {name} {arg}"))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        self.log(format!("set_ids {uid} {gid}"))
    }
    fn sethostname(&self, name: &str) -> SysResult {
        self.log(format!("sethostname {name}"))
    }
    fn setrlimit(&self, limit: Rlimit, value: u64) -> SysResult {
        self.log(format!("setrlimit {} {value}", limit.name()))
    }
    fn close_range(&self, lo: u32, hi: u32) -> SysResult {
        self.log(format!("close_range {lo} {hi}"))
    }
    fn same_file(&self, path: &Path, id: FileId) -> SysResult {
        self.log(format!(
            "same_file {} {}:{}",
            path.display(),
            id.dev,
            id.ino
        ))
    }
    fn read_only_below(&self, path: &Path) -> SysResult {
        self.log(format!("read_only_below {}", path.display()))
    }
    fn set_caps(&self, set: caps::CapSet, keep: &caps::CapsHashSet) -> SysResult {
        let mut names: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
        names.sort();
        self.log(format!("capset {set:?} [{}]", names.join(",")))
    }
}
