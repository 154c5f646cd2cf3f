//! The mount table (`/proc/self/mountinfo`): which directories have a
//! filesystem mounted on them, learnt without touching them. A mount a
//! local user made (FUSE, with `user_allow_other`) can say any owner
//! `stat` reports, and can leave every access to it hanging.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountinfoError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Read(#[from] std::io::Error),
    #[error(
        "{dir} has a filesystem mounted on {mount}: its owners are whatever it says, so it is no directory of yours to use; ask root to unmount it and remove the directory"
    )]
    Mounted { dir: String, mount: String },
}

/// The mount points of this process's mount namespace.
pub fn points() -> Result<Vec<PathBuf>, MountinfoError> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse(&table).collect())
}

/// The mount points at `dir` or below it.
pub fn at_or_below(dir: &Path) -> Result<Vec<PathBuf>, MountinfoError> {
    Ok(points()?
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect())
}

/// Refuses `dir` if a filesystem is mounted on it or below it, learnt
/// from the table without touching `dir`: a local user's mount (FUSE,
/// with `user_allow_other`) in a shared runtime directory would make the
/// host's directory theirs, and could leave every access hanging.
pub fn refuse(dir: &Path) -> Result<(), MountinfoError> {
    match at_or_below(dir)?.first() {
        Some(m) => Err(mounted(dir, m)),
        None => Ok(()),
    }
}

/// The refusal of `dir`, a filesystem being mounted on `mount`.
pub fn mounted(dir: &Path, mount: &Path) -> MountinfoError {
    MountinfoError::Mounted {
        dir: dir.display().to_string(),
        mount: mount.display().to_string(),
    }
}

/// The mount a descriptor (an `O_PATH` one too) is on, from
/// `/proc/self/fdinfo`: learnt without touching what it names, so a
/// directory opened as a FUSE mount appeared on it (after the table was
/// read) is told apart before anything `stat`s it and waits for good.
pub fn mount_id(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The mount points of a mountinfo table (the fifth field, with the
/// kernel's octal escapes for space, tab, newline and backslash undone).
pub fn parse(table: &str) -> impl Iterator<Item = PathBuf> + '_ {
    table.lines().filter_map(|line| {
        let field = line.split(' ').nth(4)?;
        let mut out = Vec::with_capacity(field.len());
        let b = field.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let octal = b.get(i + 1..i + 4).and_then(|d| {
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 8).ok())
            });
            match (b[i], octal) {
                (b'\\', Some(c)) => {
                    out.push(c);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        Some(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptors_mount_is_told_without_touching_it() {
        use std::os::fd::AsFd;
        let open = |p: &str| {
            std::fs::File::from(
                nix::fcntl::open(
                    p,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .unwrap(),
            )
        };
        let (root, etc, proc) = (open("/"), open("/etc"), open("/proc"));
        let id = |f: &std::fs::File| mount_id(f.as_fd()).unwrap();
        assert_eq!(id(&root), id(&etc));
        assert_ne!(id(&root), id(&proc));
    }

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let table = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                     40 22 0:5 / /home/h/my\\040disk rw - tmpfs t rw\n";
        let points: Vec<PathBuf> = parse(table).collect();
        assert_eq!(
            points,
            [PathBuf::from("/"), PathBuf::from("/home/h/my disk")]
        );
    }
}
