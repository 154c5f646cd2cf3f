//! One profile file's text and the name it is shown under in errors.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::ProfileError;
use super::locate::{self, Seg};
use super::model::Profile;

/// The largest profile file read (the shipped ones are under 10 KiB).
pub const MAX_BYTES: u64 = 1 << 20;

/// One file's text and the name it is shown under in errors.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// The directory its own `extends` are looked up in first.
    pub dir: Option<PathBuf>,
    /// The file's own values, once parsed.
    pub own: Option<Profile>,
}

/// Why `file` (opened from `named`) is not one only the caller or root can
/// change, if it is not: it must be theirs and writable by nobody else
/// (a group that looks private can have other members), and so must every
/// directory it lies in and is named in, up to `/` (or be sticky, where
/// nobody replaces another's file; a link in a directory others can
/// write is theirs to drop or point elsewhere). `what` says what the file
/// decides, in the messages.
///
/// `own_group`: writable by its group too, when that group is the
/// caller's own (the user-private group a umask of 002 gives every file
/// and directory on Ubuntu and Fedora) and the caller owns it. Profiles
/// do not take that (a group that looks private can have other members).
pub fn only_caller_or_root_changes(
    file: &std::fs::File,
    named: &Path,
    what: &str,
    own_group: bool,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let me = nix::unistd::Uid::effective().as_raw();
    let my_group = nix::unistd::Gid::effective().as_raw();
    // Write bits that let anyone but the owner in.
    let foreign_write = |m: &std::fs::Metadata| {
        let group_ok = own_group && m.uid() == me && m.gid() == my_group;
        m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && !group_ok)
    };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "owned by uid {}, neither you nor root: {what}, so only you or root may own it (copy it, or chown it)",
            meta.uid()
        ));
    }
    if foreign_write(&meta) {
        return Err(format!(
            "writable by others (mode {:o}): {what}; fix: chmod go-w {}",
            meta.mode() & 0o7777,
            named.display()
        ));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("cannot read: {e}"))?;
    let named = std::path::absolute(named).map_err(|e| format!("cannot read: {e}"))?;
    for dir in real.ancestors().skip(1).chain(named.ancestors().skip(1)) {
        let m = std::fs::metadata(dir).map_err(|e| format!("in {}: {e}", dir.display()))?;
        let owner_ok = m.uid() == 0 || m.uid() == me;
        let others_write = foreign_write(&m) && m.mode() & 0o1000 == 0;
        if !owner_ok || others_write {
            return Err(format!(
                "in {}, a directory {} (owner uid {}, mode {:o}), who could swap the file for another: {what}; keep it in a directory only you or root can change (chmod go-w {})",
                dir.display(),
                if owner_ok {
                    "others can write"
                } else {
                    "someone else owns"
                },
                m.uid(),
                m.mode() & 0o7777,
                dir.display()
            ));
        }
    }
    Ok(())
}

impl Source {
    /// Reads a profile file, which must be a regular file of at most
    /// [`MAX_BYTES`] that only its owner, root or the caller, can change: a
    /// profile decides what a jail lets through.
    pub fn read(path: &Path) -> Result<Source, ProfileError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let name = path.display().to_string();
        let fail = |message: String| ProfileError {
            file: name.clone(),
            line: 0,
            col: 0,
            message,
        };
        // Non-blocking: a FIFO planted under a profile's name must not hang.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        only_caller_or_root_changes(&file, path, "a profile decides what a jail allows", false)
            .map_err(fail)?;
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(fail(format!("larger than {MAX_BYTES} bytes")));
        }
        Ok(Source {
            name,
            text,
            dir: path.parent().map(Path::to_path_buf),
            own: None,
        })
    }

    /// An error at the start of `path`'s key (or value) in this file,
    /// or at 1:1 when the file does not set it.
    pub fn error_at(&self, path: &[Seg], key: bool, message: String) -> ProfileError {
        let offset = locate::span_of(&self.text, path, key).map_or(0, |s| s.start);
        self.error_at_offset(offset, message)
    }

    pub fn error_at_offset(&self, offset: usize, message: String) -> ProfileError {
        let (line, col) = locate::line_col(&self.text, offset);
        ProfileError {
            file: self.name.clone(),
            line,
            col,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A profile decides what a jail allows: one others could change, a
    /// FIFO planted under its name or a huge file is never read.
    #[test]
    fn only_a_profile_only_its_owner_can_change_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.toml");
        fs::write(&p, "description = \"x\"\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Source::read(&p).is_ok());
        for mode in [0o664, 0o646] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let e = Source::read(&p).unwrap_err().message;
            assert!(
                e.contains("writable by others") && e.contains("chmod go-w"),
                "{e}"
            );
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::chown(&p, Some(4321), None).unwrap();
            let e = Source::read(&p).unwrap_err().message;
            assert!(e.contains("owned by uid 4321"), "{e}");
        }
        let fifo = d.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(
            Source::read(&fifo)
                .unwrap_err()
                .message
                .contains("not a regular file")
        );
        let big = d.path().join("big.toml");
        fs::write(&big, vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
        assert!(
            Source::read(&big)
                .unwrap_err()
                .message
                .contains("larger than")
        );
        // A directory others can write (a team's, group-writable): any of
        // them could swap the file for one of their own; sticky is fine.
        let team = d.path().join("team");
        fs::create_dir(&team).unwrap();
        let q = team.join("q.toml");
        fs::write(&q, "description = \"x\"\n").unwrap();
        fs::set_permissions(&q, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Source::read(&q).is_ok());
        fs::set_permissions(&team, fs::Permissions::from_mode(0o775)).unwrap();
        let e = Source::read(&q).unwrap_err().message;
        assert!(e.contains("others can write") && e.contains("team"), "{e}");
        fs::set_permissions(&team, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Source::read(&q).is_ok());
        // Reached through a link: the directories where the file lies
        // count, and so do those of the link.
        fs::set_permissions(&team, fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(&q, d.path().join("via.toml")).unwrap();
        assert!(Source::read(&d.path().join("via.toml")).is_err());
        fs::set_permissions(&team, fs::Permissions::from_mode(0o755)).unwrap();
        let lobby = d.path().join("lobby");
        fs::create_dir(&lobby).unwrap();
        std::os::unix::fs::symlink(&q, lobby.join("q.toml")).unwrap();
        assert!(Source::read(&lobby.join("q.toml")).is_ok());
        fs::set_permissions(&lobby, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Source::read(&lobby.join("q.toml")).unwrap_err().message;
        assert!(e.contains("lobby"), "{e}");
        if nix::unistd::Uid::effective().is_root() {
            fs::set_permissions(&team, fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&team, Some(4321), None).unwrap();
            let e = Source::read(&q).unwrap_err().message;
            assert!(e.contains("someone else owns"), "{e}");
        }
    }
}
