//! The few ways pairjail writes files: whole files replaced atomically, and
//! the 0711 directories guests pass through. One place for each, so every
//! writer gets the same guarantees (no half-written file, ever).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::stat::{Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Removes `path` and, for a directory, everything in it, following no
/// link. Made for a tree others wrote (a jail's guests, once the jail is
/// gone): a directory they made unreadable (`chmod 000`) is given back its
/// owner's rights first, where `remove_dir_all` alone would stop, and a
/// tree of any depth goes with a few descriptors and no path longer than a
/// name (a guest can nest directories past PATH_MAX, and past the
/// descriptor limit `remove_dir_all` needs, one per level).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    if !fs::symlink_metadata(path)?.is_dir() {
        return fs::remove_file(path);
    }
    let mut dir = open_dir(AT_FDCWD, path.as_os_str(), false)?;
    // The walk down: each level's name in its parent, its identity (to
    // check the way back up), and the subdirectories it still holds.
    let mut levels = vec![Level {
        name: OsString::new(),
        id: identity(&dir)?,
        pending: clear(&dir)?,
    }];
    while let Some(top) = levels.last_mut() {
        if let Some(name) = top.pending.pop() {
            let child = open_dir(dir.as_fd(), &name, true)?;
            levels.push(Level {
                name,
                id: identity(&child)?,
                pending: clear(&child)?,
            });
            dir = child;
            continue;
        }
        let Some(done) = levels.pop() else { break };
        let Some(parent_level) = levels.last() else {
            break;
        };
        let parent = openat(
            &dir,
            "..",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        if identity(&parent)? != parent_level.id {
            return Err(io::Error::other(format!(
                "{} changed while it was being removed",
                path.display()
            )));
        }
        unlinkat(&parent, done.name.as_os_str(), UnlinkatFlags::RemoveDir)
            .map_err(io::Error::from)?;
        dir = parent;
    }
    drop(dir);
    fs::remove_dir(path)
}

/// One directory on the way down `remove_tree`'s walk.
struct Level {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
}

fn identity(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = fstat(fd).map_err(io::Error::from)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// The directory `name` under `at`, never through a link, opened for
/// reading after its owner's rights are given back when it lacks them.
/// `beneath`: never onto another mount either (EXDEV): a local user's
/// FUSE mount in a tree root removes (`setup --undo`'s runtime
/// directory) would hold root for good at the first look inside.
fn open_dir(at: BorrowedFd, name: &OsStr, beneath: bool) -> io::Result<OwnedFd> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let handle = if beneath {
        open_beneath(at, Path::new(name), OFlag::O_PATH | OFlag::O_DIRECTORY)
    } else {
        openat(at, name, flags | OFlag::O_PATH, Mode::empty())
    }
    .map_err(io::Error::from)?;
    let mode = fstat(&handle).map_err(io::Error::from)?.st_mode;
    if mode & 0o700 != 0o700 {
        // By descriptor: never where a link swapped in since would lead.
        fs::set_permissions(
            format!("/proc/self/fd/{}", handle.as_raw_fd()),
            fs::Permissions::from_mode((mode | 0o700) & 0o7777),
        )?;
    }
    openat(&handle, ".", OFlag::O_RDONLY | flags, Mode::empty()).map_err(io::Error::from)
}

/// Removes everything in `dir` but its subdirectories, and names those.
fn clear(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let listing = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut entries = Dir::from_fd(listing).map_err(io::Error::from)?;
    let mut subdirs = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == Type::Directory,
            None => {
                let st =
                    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io::Error::from)?;
                st.st_mode & libc::S_IFMT == libc::S_IFDIR
            }
        };
        if is_dir {
            subdirs.push(name.to_os_string());
        } else {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)?;
        }
    }
    Ok(subdirs)
}

/// Opens `name` (one part or more) beneath `dir`, following no link and
/// crossing onto no other mount: a local user's FUSE mount on a file or
/// directory there, which could hold the caller for good (a process
/// waiting on FUSE cannot even be killed), is refused with EXDEV before
/// anything asks it. Unknown to kernels before 5.6 (ENOSYS): refused too.
pub fn open_beneath(dir: BorrowedFd, name: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    // openat2 refuses any flag O_PATH does not take (EINVAL).
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
    } else {
        OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    let how = OpenHow::new().flags(flags | extra).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_XDEV
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    nix::fcntl::openat2(dir, name, how)
}

/// Opens `path`'s directory (following links, as a path does) and then
/// its last part beneath it with [`open_beneath`].
pub fn open_in_dir(path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    let dir = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    open_beneath(dir.as_fd(), Path::new(name), flags)
}

/// Replaces `path` with `bytes` (mode `mode`): a temp file beside it,
/// synced, then renamed over it. On any error the old file is untouched
/// and the temp file is gone.
///
/// A write past `RLIMIT_FSIZE` would raise SIGXFSZ and kill the process
/// half-way; rather than change that signal for the whole process, the
/// size is checked against the limit first.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (soft, _) = getrlimit(Resource::RLIMIT_FSIZE).map_err(io::Error::from)?;
    if bytes.len() as u64 > soft {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "{} bytes is over this process's file-size limit",
                bytes.len()
            ),
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".pairjail-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // After the write: an umask cannot narrow it, and nobody else could
    // read the file while it was being filled.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// Only root can change what is in this directory: root's, and not
/// writable by group or others unless sticky (where nobody replaces
/// root's entries). The rule for the directories above what root trusts.
pub fn only_root_changes(m: &fs::Metadata) -> bool {
    m.uid() == 0 && (m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0)
}

/// Creates `dir` (and its parents) if missing and makes it 0711: others
/// may reach a socket inside by name but list nothing. chmod only if
/// needed: a chmod by an owner outside the directory's group would drop
/// the setgid bit it inherited (pair-user mode relies on it).
///
/// Only a real directory of the caller's is ever changed: one a link leads
/// to, or someone else's, is refused before any chmod (in a shared, sticky
/// runtime directory another user can plant either where the host's
/// directory goes, and a chmod through a link would open a directory of
/// the host's own to everyone).
pub fn dir_711(dir: &Path) -> io::Result<()> {
    // Not even a look at one with a filesystem mounted on it, which
    // could say any owner, or hang.
    crate::mountinfo::refuse(dir).map_err(io::Error::other)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)?;
    let m = fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() || !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} is a link, not a directory, or not yours (someone else made it first); ask root to remove it",
            dir.display()
        )));
    }
    if m.mode() & 0o777 != 0o711 {
        let setgid = m.mode() & 0o2000;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711 | setgid))?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) 0700 if missing; an existing one is
/// left as its owner made it (what is written inside is 0600), if nobody
/// else can remove what goes in.
pub fn dir_700(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // One that was there already must not let anyone else remove or
    // replace what goes in: the caller's or root's, not a link, and
    // writable by others only if sticky (like /tmp).
    let m = fs::symlink_metadata(dir)?;
    let owner_ok = m.uid() == nix::unistd::Uid::effective().as_raw() || m.uid() == 0;
    let shared_ok = m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0;
    if !m.is_dir() || !owner_ok || !shared_ok {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory where only you can remove what you put (a link, someone else's, or mode {:o}); pick another, or chmod go-w it",
                dir.display(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Bind-mounts `src` on `dst`; false (the test is skipped) for anyone
    /// but root outside CI.
    fn bind(src: &Path, dst: &Path) -> bool {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "needs root in CI");
            return false;
        }
        let mounted = std::process::Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(dst)
            .status()
            .unwrap();
        assert!(mounted.success());
        true
    }

    fn unbind(dst: &Path) {
        let _ = std::process::Command::new("umount").arg(dst).status();
    }

    /// A mount inside a tree being removed (a local user's FUSE mount in
    /// the runtime directory `setup --undo` removes) is refused, and
    /// nothing of what is mounted there goes.
    #[test]
    fn remove_tree_never_goes_onto_another_mount() {
        let d = tempfile::tempdir().unwrap();
        let (tree, other) = (d.path().join("tree"), d.path().join("other"));
        fs::create_dir_all(tree.join("theirs")).unwrap();
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("keep"), "x").unwrap();
        if !bind(&other, &tree.join("theirs")) {
            return;
        }
        let removed = remove_tree(&tree);
        unbind(&tree.join("theirs"));
        assert_eq!(
            removed.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EXDEV)),
            "removed a tree with a mount in it"
        );
        assert!(other.join("keep").exists(), "removed what was mounted");
    }

    /// What a local user's FUSE mount on their invites file would do to
    /// sshd's keys command, with a bind mount (root only) that answers.
    #[test]
    fn nothing_mounted_beneath_a_directory_is_opened() {
        let d = tempfile::tempdir().unwrap();
        let (file, other) = (d.path().join("invites.toml"), d.path().join("other"));
        fs::write(&file, "mine").unwrap();
        fs::write(&other, "mounted").unwrap();
        assert!(open_in_dir(&file, OFlag::O_RDONLY).is_ok());
        if !bind(&other, &file) {
            return;
        }
        let opened = open_in_dir(&file, OFlag::O_RDONLY | OFlag::O_NONBLOCK);
        unbind(&file);
        assert_eq!(opened.err(), Some(nix::errno::Errno::EXDEV));
        std::os::unix::fs::symlink(&other, d.path().join("link")).unwrap();
        assert_eq!(
            open_in_dir(&d.path().join("link"), OFlag::O_RDONLY).err(),
            Some(nix::errno::Errno::ELOOP)
        );
    }
    #[test]
    fn a_711_directory_is_never_one_a_link_leads_to() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // What another local user plants where the host's directory goes
        // (a sticky 3777 runtime directory): a link to a directory of the
        // host's, whose mode the chmod would change.
        let home = d.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o750)).unwrap();
        let planted = d.path().join("host");
        std::os::unix::fs::symlink(&home, &planted).unwrap();
        assert!(super::dir_711(&planted).is_err());
        assert_eq!(fs::metadata(&home).unwrap().mode() & 0o7777, 0o750);
        // A real directory is made, or made 0711.
        let real = d.path().join("real");
        super::dir_711(&real).unwrap();
        assert_eq!(fs::symlink_metadata(&real).unwrap().mode() & 0o777, 0o711);
    }

    #[test]
    fn a_tree_others_made_unreadable_is_removed_and_no_link_followed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let tree = d.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        // root ignores directory modes: the walk is checked by what it
        // leaves, as for anyone.
        super::remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        assert!(matches!(
            super::remove_tree(&tree),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    use super::*;

    #[test]
    fn a_record_directory_must_be_the_callers_own() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        dir_700(&d.path().join("new/deeper")).unwrap();
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(dir_700(&open).is_err());
        // Sticky, like /tmp: nobody removes another's files there.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(dir_700(&open).is_ok());
        std::os::unix::fs::symlink(d.path().join("new"), d.path().join("link")).unwrap();
        assert!(dir_700(&d.path().join("link")).is_err());
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, "old").unwrap();
        // The target's directory vanishes: the write cannot succeed.
        let missing = d.path().join("gone/f");
        assert!(write_atomic(&missing, b"new", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn dir_711_fixes_a_wide_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        dir_711(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        dir_711(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o711);
    }
}
