//! The jail's filesystem: a fresh tmpfs root holding only the profile's
//! mounts. Planned in the parent (parameters expanded, host paths resolved),
//! built in the child through [`Sys`].

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::error::JailError;
use super::sys::{Sys, SysResult};
use crate::profile::{self, Mount, Profile};

/// Terminals one jail may open (its own devpts instance's `max`).
const PTY_MAX: u32 = 512;

/// Where the old root is reachable while the new one is assembled. The base
/// tmpfs is mounted over `/tmp` in the jail's private mount namespace only.
const BASE: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";
/// An empty file on the scratch tmpfs, bound over hidden files.
const EMPTY: &str = "/empty";
/// An overlay's second, empty lower layer, on the scratch root.
const EMPTY_DIR: &str = "/empty-dir";

/// Device nodes a `dev` mount provides, bound from the host's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Bind {
        src: PathBuf,
        dst: PathBuf,
        rw: bool,
        dir: bool,
        /// The file the source was when planned: the bind, made later by
        /// path in the child, must have brought in this very file.
        id: Option<FileId>,
    },
    Tmpfs {
        dst: PathBuf,
        options: String,
    },
    Proc {
        dst: PathBuf,
    },
    Dev {
        dst: PathBuf,
        pts: bool,
    },
    /// A directory shown through a read-only overlay (a bind with
    /// `overlay = true`): its sockets refuse connections.
    Overlay {
        src: PathBuf,
        dst: PathBuf,
        /// The directory the source was when planned.
        id: FileId,
    },
    /// An empty, read-only stand-in over a path (a profile's `hide`).
    Hide {
        dst: PathBuf,
        dir: bool,
    },
}

/// Resolves the profile's mounts against the host: `{params}` expanded, bind
/// sources canonicalized (so symlinks resolve against the host root, not the
/// half-built jail), missing optional sources dropped. A source named in
/// `pins` must be the file pinned there (its caller checked that file).
pub fn plan(
    p: &Profile,
    params: &std::collections::BTreeMap<String, String>,
    pins: &[(PathBuf, FileId)],
) -> Result<Vec<Entry>, JailError> {
    let expand =
        |s: &str| profile::expand(s, params).map_err(|e| JailError::msg("profile parameters", e));
    let mut out = Vec::new();
    for m in &p.mounts {
        let dst = PathBuf::from(expand(m.dst())?);
        out.push(match m {
            Mount::Bind {
                src,
                rw,
                optional,
                overlay,
                ..
            } => {
                let src = expand(src)?;
                let real = match std::fs::canonicalize(&src) {
                    Ok(r) => r,
                    Err(_) if *optional => continue,
                    Err(e) => {
                        return Err(JailError::msg(
                            format!("bind {src} -> {}", dst.display()),
                            format!("{e}; mark it `optional = true` if it may be absent"),
                        ));
                    }
                };
                let meta = match std::fs::metadata(&real) {
                    Ok(m) => m,
                    Err(_) if *optional => continue,
                    Err(e) => {
                        return Err(JailError::msg(
                            format!("bind {src} -> {}", dst.display()),
                            e.to_string(),
                        ));
                    }
                };
                let id = FileId::of(&meta);
                let pinned = pins.iter().find(|(p, _)| p.as_os_str() == src.as_str());
                if pinned.is_some_and(|(_, pinned)| *pinned != id) {
                    return Err(JailError::msg(
                        format!("bind {src}"),
                        "it is no longer the file that was checked (it was replaced, or leads elsewhere)",
                    ));
                }
                if *overlay {
                    overlay_source(&src, &real, meta.is_dir())?;
                    Entry::Overlay { src: real, dst, id }
                } else {
                    Entry::Bind {
                        dir: meta.is_dir(),
                        src: real,
                        dst,
                        rw: *rw,
                        id: Some(id),
                    }
                }
            }
            Mount::Tmpfs { size, mode, .. } => {
                let mut options = format!("mode={:o}", mode.unwrap_or(0o755));
                if let Some(size) = size {
                    options.push_str(&format!(",size={}", size.0));
                }
                Entry::Tmpfs { dst, options }
            }
            Mount::Proc { .. } => Entry::Proc { dst },
            Mount::Dev { pts, .. } => Entry::Dev { dst, pts: *pts },
        });
    }
    // A pin no bind used would check nothing: the caller's file would go
    // in (or not) by a spelling of the profile's own.
    for (path, _) in pins {
        let used = p.mounts.iter().any(|m| match m {
            Mount::Bind { src, .. } => expand(src).is_ok_and(|s| s.as_str() == path.as_os_str()),
            _ => false,
        });
        if !used {
            return Err(JailError::msg(
                format!("bind {}", path.display()),
                "the profile binds no such source: a profile for this use must bind it exactly (see the shipped one)",
            ));
        }
    }
    let mut hidden = Vec::new();
    // A hide path is a pattern; a parameter's value in it is literal (a
    // home named `h[x]` must not turn into a pattern matching nothing).
    let literal = glob_literal(params);
    for pattern in &p.hide {
        let pattern = profile::expand(pattern, &literal)
            .map_err(|e| JailError::msg("profile parameters", e))?;
        for dst in hidden_paths(&out, Path::new(&pattern))? {
            if !hidden
                .iter()
                .any(|e| matches!(e, Entry::Hide { dst: d, .. } if *d == dst.0))
            {
                hidden.push(Entry::Hide {
                    dst: dst.0,
                    dir: dst.1,
                });
            }
        }
    }
    out.extend(hidden);
    Ok(out)
}

/// Can `real` be shown through an overlay? A directory, with nothing
/// mounted below it, whose path the overlay's options string can hold
/// (',' and ':' separate there, '\\' escapes: such a path is refused
/// rather than escaped).
fn overlay_source(src: &str, real: &Path, dir: bool) -> Result<(), JailError> {
    let what = || format!("bind {src} (overlay)");
    if !dir {
        return Err(JailError::msg(
            what(),
            "an overlay shows a directory: bind a file without `overlay`",
        ));
    }
    // The kernel refuses an overlay over a directory with mounts below
    // it that this user cannot take apart (every mount a user namespace
    // inherits): said here, with the mounts named, not as EINVAL later.
    let below = mounts_below(real)?;
    if !below.is_empty() {
        let named: Vec<String> = below
            .iter()
            .take(5)
            .map(|m| m.display().to_string())
            .collect();
        return Err(JailError::msg(
            what(),
            format!(
                "{} has filesystems mounted below it ({}{}): an overlay cannot show it with them, and a jail cannot show it without them; unmount them while sharing, or use a session profile whose bind of it has no `overlay = true` (every Unix socket under it then answers the jail)",
                real.display(),
                named.join(", "),
                if below.len() > 5 { ", …" } else { "" }
            ),
        ));
    }
    if real
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
    {
        return Err(JailError::msg(
            what(),
            format!(
                "{} has ',', ':' or '\\', which an overlay's options cannot hold: bind it without `overlay`, or move it",
                real.display()
            ),
        ));
    }
    Ok(())
}

/// The mount points strictly below `dir`, from `/proc/self/mountinfo`.
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>, JailError> {
    let mut below = crate::mountinfo::at_or_below(dir)
        .map_err(|e| JailError::msg("read /proc/self/mountinfo", e.to_string()))?;
    below.retain(|m| m != dir);
    Ok(below)
}

/// `params` with each value escaped for use inside a glob pattern.
pub fn glob_literal(
    params: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), glob::Pattern::escape(v)))
        .collect()
}

/// A path mapped through the planned binds, host to jail (`inward`) or
/// jail to host; the last bind covering it wins, as the last mount does.
fn through_binds(entries: &[Entry], path: &Path, inward: bool) -> Option<PathBuf> {
    entries.iter().rev().find_map(|e| match e {
        Entry::Bind { src, dst, .. } | Entry::Overlay { src, dst, .. } => {
            let (from, to) = if inward { (src, dst) } else { (dst, src) };
            path.strip_prefix(from).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                }
            })
        }
        _ => None,
    })
}

/// The jail paths (and whether each is a directory) a `hide` pattern
/// covers: matched on the host through the bind that shows them; a
/// symlink is followed to what it names, hidden where that is visible.
fn hidden_paths(entries: &[Entry], pattern: &Path) -> Result<Vec<(PathBuf, bool)>, JailError> {
    // In the jail's own proc, named as it is (no pattern): kernel-wide
    // files such as /proc/keys list the keys of every uid the reader's
    // namespace maps, the host's among them. Hidden if the kernel has it.
    let in_proc = entries.iter().find_map(|e| match e {
        Entry::Proc { dst } => pattern
            .strip_prefix(dst)
            .ok()
            .filter(|r| !r.as_os_str().is_empty()),
        _ => None,
    });
    if let Some(rest) = in_proc {
        let host = Path::new("/proc").join(rest);
        return Ok(match std::fs::symlink_metadata(&host) {
            Ok(m) => vec![(pattern.to_path_buf(), m.is_dir())],
            Err(_) => vec![],
        });
    }
    let Some(host_pattern) = through_binds(entries, pattern, false) else {
        // Nothing bound there: the path does not exist inside.
        return Ok(vec![]);
    };
    let text = host_pattern.to_str().ok_or_else(|| {
        JailError::msg("hide", format!("{} is not UTF-8", host_pattern.display()))
    })?;
    let matches = glob::glob_with(
        text,
        glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        },
    )
    .map_err(|e| JailError::msg(format!("hide {}", pattern.display()), e.to_string()))?;
    let mut out = Vec::new();
    for m in matches {
        let Ok(host) = m else { continue };
        // The real object: a symlink's target, canonical.
        let Ok(real) = std::fs::canonicalize(&host) else {
            continue;
        };
        let Some(dst) = through_binds(entries, &real, true) else {
            continue;
        };
        out.push((dst, real.is_dir()));
    }
    Ok(out)
}

fn under(root: &str, p: &Path) -> PathBuf {
    Path::new(root).join(p.strip_prefix("/").unwrap_or(p))
}

/// Builds the root and pivots into it. Runs in the child, in its own user
/// and mount namespaces, before any privilege is dropped.
pub fn build(sys: &dyn Sys, entries: &[Entry]) -> SysResult {
    let base = Path::new(BASE);
    // Nothing we mount may propagate back to the host.
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    if entries.is_empty() {
        return build_empty(sys, base);
    }
    // A scratch tmpfs to pivot into, so the old root stays reachable (at
    // /oldroot) while binds are made, whatever the host's /tmp holds.
    sys.mount(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        nodev_nosuid(),
        Some("mode=0700,size=64k"),
    )?;
    sys.mkdir_all(&base.join("newroot"), 0o755)?;
    sys.mkdir_all(&base.join("oldroot"), 0o755)?;
    sys.pivot_root(base, &base.join("oldroot"))?;
    sys.chdir(Path::new("/"))?;
    if entries
        .iter()
        .any(|e| matches!(e, Entry::Hide { dir: false, .. }))
    {
        sys.touch(Path::new(EMPTY))?;
    }
    if entries.iter().any(|e| matches!(e, Entry::Overlay { .. })) {
        sys.mkdir_all(Path::new(EMPTY_DIR), 0o755)?;
    }

    let newroot = Path::new(NEWROOT);
    sys.mount(
        Some(Path::new("tmpfs")),
        newroot,
        Some("tmpfs"),
        nodev_nosuid(),
        Some("mode=0755,size=1m"),
    )?;
    for e in entries {
        mount_entry(sys, e)?;
    }
    // The root itself never takes writes: only explicit mounts are writable.
    sys.mount(
        None,
        newroot,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nodev_nosuid(),
        None,
    )?;

    // Forget the host: detach the old root, then drop the scratch tmpfs by
    // pivoting onto the new root and detaching what lies under it.
    sys.umount_detach(Path::new(OLDROOT))?;
    sys.chdir(newroot)?;
    sys.pivot_root_here()?;
    sys.umount_detach(Path::new("."))?;
    sys.chdir(Path::new("/"))
}

/// A root with nothing from the host in it: one tmpfs, read-only, and one
/// pivot straight onto it (the old root ends up stacked on the new one and
/// is detached from there).
fn build_empty(sys: &dyn Sys, base: &Path) -> SysResult {
    sys.mount(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        nodev_nosuid(),
        Some("mode=0755,size=1m"),
    )?;
    sys.mount(
        None,
        base,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nodev_nosuid(),
        None,
    )?;
    sys.chdir(base)?;
    sys.pivot_root_here()?;
    sys.umount_detach(Path::new("."))?;
    sys.chdir(Path::new("/"))
}

fn nodev_nosuid() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV
}

fn mount_entry(sys: &dyn Sys, e: &Entry) -> SysResult {
    match e {
        Entry::Bind {
            src,
            dst,
            rw,
            dir,
            id,
        } => {
            let target = under(NEWROOT, dst);
            prepare_target(sys, &target, *dir)?;
            bind(sys, &under(OLDROOT, src), &target, *rw, true)?;
            // The bind went by path: someone who can change a directory on
            // the way could have put another file there since the plan.
            match id {
                Some(id) => sys.same_file(&target, *id),
                None => Ok(()),
            }
        }
        Entry::Overlay { src, dst, id } => {
            let target = under(NEWROOT, dst);
            sys.mkdir_all(&target, 0o755)?;
            // The overlay takes its lower directory by path: checked as
            // the plan found it, just before (it is pinned once mounted).
            let lower = under(OLDROOT, src);
            sys.same_file(&lower, *id)?;
            // Without an upper layer an overlay needs two lower ones: the
            // second, empty, on the scratch root (never in the jail).
            sys.mount(
                Some(Path::new("overlay")),
                &target,
                Some("overlay"),
                nodev_nosuid() | MsFlags::MS_RDONLY,
                Some(&format!("lowerdir={}:{EMPTY_DIR}", lower.display())),
            )
        }
        Entry::Tmpfs { dst, options } => {
            let target = under(NEWROOT, dst);
            sys.mkdir_all(&target, 0o755)?;
            sys.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                nodev_nosuid(),
                Some(options),
            )
        }
        Entry::Proc { dst } => {
            let target = under(NEWROOT, dst);
            sys.mkdir_all(&target, 0o555)?;
            sys.mount(
                Some(Path::new("proc")),
                &target,
                Some("proc"),
                nodev_nosuid() | MsFlags::MS_NOEXEC,
                None,
            )
        }
        Entry::Hide { dst, dir } => {
            let target = under(NEWROOT, dst);
            if *dir {
                sys.mount(
                    Some(Path::new("tmpfs")),
                    &target,
                    Some("tmpfs"),
                    nodev_nosuid() | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                    Some("mode=0555,size=4k"),
                )
            } else {
                bind(sys, Path::new(EMPTY), &target, false, true)
            }
        }
        Entry::Dev { dst, pts } => {
            let target = under(NEWROOT, dst);
            sys.mkdir_all(&target, 0o755)?;
            sys.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("mode=0755,size=64k"),
            )?;
            // A user namespace cannot mknod: bind the host's nodes instead.
            for dev in DEVICES {
                let node = target.join(dev);
                sys.touch(&node)?;
                bind(
                    sys,
                    &Path::new(OLDROOT).join("dev").join(dev),
                    &node,
                    true,
                    false,
                )?;
            }
            if *pts {
                // A private devpts instance: the jail's terminals are its
                // own, the host's /dev/pts stays out of reach. At most
                // PTY_MAX of them: the machine has 4096 for every instance
                // but the first, and a guest took 3068, so that another
                // host's `start` failed (a read-only hunt).
                let pts_dir = target.join("pts");
                sys.mkdir_all(&pts_dir, 0o755)?;
                sys.mount(
                    Some(Path::new("devpts")),
                    &pts_dir,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(&format!(
                        "newinstance,ptmxmode=0666,mode=0620,max={PTY_MAX}"
                    )),
                )?;
                let ptmx = target.join("ptmx");
                sys.touch(&ptmx)?;
                bind(sys, &pts_dir.join("ptmx"), &ptmx, true, false)?;
            }
            Ok(())
        }
    }
}

fn prepare_target(sys: &dyn Sys, target: &Path, dir: bool) -> SysResult {
    if dir {
        sys.mkdir_all(target, 0o755)
    } else {
        if let Some(parent) = target.parent() {
            sys.mkdir_all(parent, 0o755)?;
        }
        sys.touch(target)
    }
}

/// A recursive bind, then a remount that adds read-only (unless `rw`),
/// nosuid and (unless it is a device) nodev, keeping the flags the kernel
/// locked on the source.
fn bind(sys: &dyn Sys, src: &Path, target: &Path, rw: bool, nodev: bool) -> SysResult {
    sys.mount(
        Some(src),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut flags =
        sys.locked_flags(target)? | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    if !rw {
        flags |= MsFlags::MS_RDONLY;
    }
    if nodev {
        flags |= MsFlags::MS_NODEV;
    }
    sys.mount(None, target, None, flags, None)?;
    // The remount covers the top mount only: one mounted inside the bound
    // directory (a tmpfs in the home) would stay writable.
    if !rw {
        sys.read_only_below(target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::sys::Recording;

    fn calls(entries: &[Entry]) -> Vec<String> {
        let rec = Recording::default();
        build(&rec, entries).unwrap();
        rec.calls.into_inner()
    }

    #[test]
    fn a_profile_with_mounts_pivots_onto_a_read_only_tmpfs() {
        let c = calls(&[Entry::Tmpfs {
            dst: "/tmp".into(),
            options: "size=1m".into(),
        }]);
        assert_eq!(c[0], "mount - / - MS_REC | MS_SLAVE -");
        assert!(c.contains(&"pivot_root /tmp /tmp/oldroot".to_string()));
        let ro = c
            .iter()
            .position(|l| l.starts_with("mount - /newroot - MS_RDONLY"))
            .unwrap();
        let detach = c.iter().position(|l| l == "umount /oldroot").unwrap();
        let pivot = c.iter().position(|l| l == "pivot_root . .").unwrap();
        assert!(ro < detach && detach < pivot, "{c:#?}");
        assert_eq!(c.last().unwrap(), "chdir /");
        assert_eq!(c[c.len() - 2], "umount .");
    }

    #[test]
    fn a_profile_without_mounts_pivots_once_onto_a_read_only_tmpfs() {
        let c = calls(&[]);
        assert_eq!(c[0], "mount - / - MS_REC | MS_SLAVE -");
        assert_eq!(
            c.iter().filter(|l| l.starts_with("pivot_root")).count(),
            1,
            "{c:#?}"
        );
        let ro = c
            .iter()
            .position(|l| l.starts_with("mount - /tmp - MS_RDONLY"))
            .unwrap();
        let pivot = c.iter().position(|l| l == "pivot_root . .").unwrap();
        assert!(ro < pivot, "{c:#?}");
        assert_eq!(c[pivot - 1], "chdir /tmp");
        assert_eq!(c[c.len() - 2], "umount .");
        assert_eq!(c.last().unwrap(), "chdir /");
    }

    #[test]
    fn read_only_bind_is_remounted_read_only_with_locked_flags() {
        let c = calls(&[Entry::Bind {
            src: "/usr/bin/tmux".into(),
            dst: "/usr/bin/tmux".into(),
            rw: false,
            dir: false,
            id: None,
        }]);
        let i = c
            .iter()
            .position(|l| l == "touch /newroot/usr/bin/tmux")
            .unwrap();
        assert_eq!(c[i - 1], "mkdir /newroot/usr/bin 755");
        assert_eq!(
            c[i + 1],
            "mount /oldroot/usr/bin/tmux /newroot/usr/bin/tmux - MS_BIND | MS_REC -"
        );
        assert_eq!(
            c[i + 2],
            "mount - /newroot/usr/bin/tmux - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -"
        );
    }

    #[test]
    fn an_overlay_is_read_only_over_the_checked_directory_and_an_empty_one() {
        let id = FileId { dev: 8, ino: 42 };
        let c = calls(&[Entry::Overlay {
            src: "/home/h".into(),
            dst: "/home/h".into(),
            id,
        }]);
        let i = c
            .iter()
            .position(|l| l == "same_file /oldroot/home/h 8:42")
            .expect("the lower directory is checked");
        assert!(
            c[..i].contains(&"mkdir /empty-dir 755".to_string()),
            "{c:#?}"
        );
        assert_eq!(
            c[i + 1],
            "mount overlay /newroot/home/h overlay MS_RDONLY | MS_NOSUID | MS_NODEV lowerdir=/oldroot/home/h:/empty-dir"
        );
    }

    #[test]
    fn an_overlay_of_a_file_or_of_a_path_its_options_cannot_hold_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        let odd = d.path().join("a,b");
        std::fs::write(&file, "").unwrap();
        std::fs::create_dir(&odd).unwrap();
        for (src, why) in [(&file, "shows a directory"), (&odd, "',', ':' or")] {
            let mut p = Profile::default();
            p.mounts.push(Mount::Bind {
                src: src.display().to_string(),
                dst: "/x".into(),
                rw: false,
                optional: false,
                overlay: true,
            });
            let e = plan(&p, &Default::default(), &[]).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut p = Profile::default();
        p.mounts.push(Mount::Bind {
            src: d.path().display().to_string(),
            dst: "/x".into(),
            rw: false,
            optional: false,
            overlay: true,
        });
        let planned = plan(&p, &Default::default(), &[]).unwrap();
        assert!(
            matches!(&planned[..], [Entry::Overlay { dst, .. }] if dst == Path::new("/x")),
            "{planned:?}"
        );
    }

    #[test]
    fn rw_bind_stays_writable_but_nosuid() {
        let c = calls(&[Entry::Bind {
            src: "/w".into(),
            dst: "/work".into(),
            rw: true,
            dir: true,
            id: None,
        }]);
        assert!(c.contains(&"mkdir /newroot/work 755".to_string()));
        assert!(
            c.contains(
                &"mount - /newroot/work - MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -"
                    .to_string()
            ),
            "{c:#?}"
        );
    }

    #[test]
    fn dev_binds_nodes_without_nodev() {
        // A real host /dev (devtmpfs) locks nosuid, not nodev.
        let rec = Recording {
            locked: Some(MsFlags::MS_NOSUID),
            ..Default::default()
        };
        build(
            &rec,
            &[Entry::Dev {
                dst: "/dev".into(),
                pts: false,
            }],
        )
        .unwrap();
        let c = rec.calls.into_inner();
        for d in DEVICES {
            let target = format!("/newroot/dev/{d}");
            assert!(c.contains(&format!(
                "mount /oldroot/dev/{d} {target} - MS_BIND | MS_REC -"
            )));
            let remount = c
                .iter()
                .find(|l| l.starts_with(&format!("mount - {target} - ")))
                .unwrap();
            // nodev would make /dev/null unusable: the remount keeps
            // nosuid but never adds nodev.
            assert!(remount.contains("MS_NOSUID"), "{remount}");
            assert!(!remount.contains("MS_NODEV"), "{remount}");
        }
    }

    #[test]
    fn a_failing_step_stops_the_build() {
        let rec = Recording {
            fail_on: Some("pivot_root /tmp".into()),
            ..Default::default()
        };
        let tmp = Entry::Tmpfs {
            dst: "/tmp".into(),
            options: "size=1m".into(),
        };
        let err = build(&rec, &[tmp]).unwrap_err();
        assert_eq!(err.to_string(), "jail: pivot_root /tmp /tmp/oldroot: EPERM");
        assert!(
            !rec.calls
                .borrow()
                .iter()
                .any(|l| l.starts_with("mount tmpfs /newroot"))
        );
    }

    #[test]
    fn plan_skips_missing_optional_binds_and_refuses_missing_required() {
        let mut p = Profile::default();
        p.mounts.push(Mount::Bind {
            src: "/nonexistent/x".into(),
            dst: "/x".into(),
            rw: false,
            optional: true,
            overlay: false,
        });
        assert_eq!(plan(&p, &Default::default(), &[]).unwrap(), vec![]);
        p.mounts[0] = Mount::Bind {
            src: "/nonexistent/x".into(),
            dst: "/x".into(),
            rw: false,
            optional: false,
            overlay: false,
        };
        let e = plan(&p, &Default::default(), &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("jail: bind /nonexistent/x -> /x — No such file"),
            "{e}"
        );
    }

    #[test]
    fn a_bind_brings_in_the_file_that_was_checked_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (checked, other) = (d.path().join("checked"), d.path().join("other"));
        std::fs::write(&checked, "").unwrap();
        std::fs::write(&other, "").unwrap();
        let id = |p: &Path| FileId::of(&std::fs::metadata(p).unwrap());
        let mut p = Profile::default();
        p.mounts.push(Mount::Bind {
            src: "{sock}".into(),
            dst: "/run/sock".into(),
            rw: true,
            optional: false,
            overlay: false,
        });
        let params = [("sock".to_string(), checked.display().to_string())].into();
        let pins = [(checked.clone(), id(&checked))];
        let planned = plan(&p, &params, &pins).unwrap();
        assert!(
            matches!(&planned[..], [Entry::Bind { id: Some(i), .. }] if *i == id(&checked)),
            "{planned:?}"
        );
        // A pin the profile does not bind is an error, not a silent pass.
        let elsewhere = [(d.path().join("elsewhere"), id(&checked))];
        let e = plan(&p, &params, &elsewhere).unwrap_err().to_string();
        assert!(e.contains("binds no such source"), "{e}");
        // Swapped between the caller's check and the plan: refused.
        std::fs::rename(&other, &checked).unwrap();
        let e = plan(&p, &params, &pins).unwrap_err().to_string();
        assert!(e.contains("no longer the file that was checked"), "{e}");
        // Between the plan and the mount: the child checks what it bound.
        let c = calls(&planned);
        let i = c
            .iter()
            .position(|l| l.starts_with("same_file /newroot/run/sock "))
            .unwrap();
        assert!(c[i - 1].starts_with("mount - /newroot/run/sock"), "{c:#?}");
    }
}
