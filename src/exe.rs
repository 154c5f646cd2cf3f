//! Programs: pairjail's own binary (forced commands name it, jails run it)
//! and others found as the caller's shell would find them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("cannot find my own binary: {0}")]
    Own(std::io::Error),
    #[error("{name}: command not found")]
    NotFound { name: String },
}

/// This binary's canonical path.
pub fn own() -> Result<PathBuf, ExeError> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(ExeError::Own)
}

/// A path as given, or the first executable match on the caller's PATH
/// (looked up outside any jail). A file without an execute bit is not a
/// program.
pub fn find_program(name: &OsStr) -> Result<PathBuf, ExeError> {
    // A path is taken as given; a bare name only from PATH's absolute
    // directories (see `find_trusted`).
    if name.as_encoded_bytes().contains(&b'/') {
        return which::which(name).map_err(|_| ExeError::NotFound {
            name: name.to_string_lossy().into_owned(),
        });
    }
    find_trusted(&name.to_string_lossy())
}

/// The program to run for a tool pairjail needs (`tmux`, `ssh`, `sshd`):
/// from PATH's absolute directories, else `/usr/bin/NAME`, so that a
/// missing tool fails naming that path instead of being looked for where
/// pairjail runs.
pub fn program(name: &str) -> PathBuf {
    find_trusted(name).unwrap_or_else(|_| Path::new("/usr/bin").join(name))
}

/// `name` on PATH, looked up in its absolute directories only: an empty
/// or relative entry (`:`, `.`, `node_modules/.bin`) would find a file in
/// whatever directory pairjail runs from, which for a share is the
/// workspace its guests write.
pub fn find_trusted(name: &str) -> Result<PathBuf, ExeError> {
    // No PATH at all: where execvp would look.
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    find_trusted_in(name, &path)
}

/// PATH without its relative entries and without those inside `inside`
/// (a jailed share's workspace): what pairjail runs for a share is never
/// a file that share's guests could have written (an activated venv's
/// `.venv/bin`, direnv's `PATH_add bin`). A directory is inside when its
/// path is, as given or with its links resolved.
pub fn path_outside(inside: &Path) -> std::ffi::OsString {
    path_outside_of(&path_var(), inside)
}

/// This process's PATH, or the usual one when it has none.
fn path_var() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

fn path_outside_of(path: &OsStr, inside: &Path) -> std::ffi::OsString {
    let kept: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|d| d.is_absolute() && !within(d, inside))
        .collect();
    // Cannot fail: every entry came from splitting a PATH.
    std::env::join_paths(kept).unwrap_or_default()
}

/// The directories of this process's PATH that lie inside `inside`, as
/// named or through a link (`~/bin -> dotfiles/bin`): the host's own
/// shell, outside the jail, runs what pair guests put there.
pub fn path_dirs_within(inside: &Path) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute() && within(d, inside))
        .collect()
}

/// Is `p` inside `dir`, as named or where its links lead (also a place
/// not made yet, reached through a link: a guest could make it later)?
/// (`start` asks it of pairjail's own binary and the workspace.)
pub fn within(p: &Path, dir: &Path) -> bool {
    let real_dir = crate::profile::real_path(dir);
    let real = crate::profile::real_path(p);
    [Some(p), real.as_deref()]
        .into_iter()
        .flatten()
        .any(|p| p.starts_with(dir) || real_dir.as_deref().is_some_and(|r| p.starts_with(r)))
}

/// [`program`], never from a directory inside `inside`, nor a file there
/// reached through a link from elsewhere (see [`path_outside`]). The
/// program is named by its real path: a link on the way that a guest
/// could change later (`~/bin/tmux` → `WORKSPACE/t` → `/usr/bin/tmux`) is
/// not followed again when it runs.
pub fn program_outside(name: &str, inside: &Path) -> PathBuf {
    program_outside_all(name, &[inside.to_path_buf()])
}

/// [`program_outside`] every one of `insides` (`doctor`, which knows no
/// one share, keeps out of every workspace ever shared).
pub fn program_outside_all(name: &str, insides: &[PathBuf]) -> PathBuf {
    program_outside_of(name, &path_var(), insides)
}

fn program_outside_of(name: &str, path: &OsStr, insides: &[PathBuf]) -> PathBuf {
    let outside = |p: &Path| {
        insides
            .iter()
            .all(|inside| !within(p, inside) && !link_chain_within(p, inside))
    };
    std::env::split_paths(path)
        .filter(|d| d.is_absolute() && outside(d))
        .filter_map(|d| which::which_in(name, Some(&d), "/").ok())
        .filter(|found| outside(found))
        .find_map(|found| found.canonicalize().ok().filter(|real| outside(real)))
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
}

/// Does a link on the way from `p` to its real path (each hop of its last
/// component) lie inside `dir`?
fn link_chain_within(p: &Path, dir: &Path) -> bool {
    let mut at = p.to_path_buf();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&at) else {
            return false;
        };
        at = match at.parent() {
            Some(parent) => parent.join(target),
            None => target,
        };
        if within(&at, dir) {
            return true;
        }
    }
    // A loop of links: not a program.
    true
}

/// The names of variables in this process's environment whose value
/// names a place inside `inside` (a jailed share's workspace), among
/// paths separated by `:` or spaces: `OPENSSL_CONF`, `GCONV_PATH`,
/// `SSH_ASKPASS`, `LD_LIBRARY_PATH` and the like would have what the
/// broker runs load a guest's file.
pub fn env_naming(inside: &Path) -> Vec<std::ffi::OsString> {
    naming(std::env::vars_os(), inside)
}

fn naming(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    inside: &Path,
) -> Vec<std::ffi::OsString> {
    vars.filter(|(_, value)| {
        value
            .as_encoded_bytes()
            .split(|b| *b == b':' || b.is_ascii_whitespace())
            .filter(|part| part.first() == Some(&b'/'))
            .any(|part| within(Path::new(OsStr::from_bytes(part)), inside))
    })
    .map(|(name, _)| name)
    .collect()
}

fn find_trusted_in(name: &str, path: &OsStr) -> Result<PathBuf, ExeError> {
    let absolute: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .collect();
    let joined = std::env::join_paths(absolute).map_err(|_| ExeError::NotFound {
        name: name.to_string(),
    })?;
    which::which_in(name, Some(joined), "/").map_err(|_| ExeError::NotFound {
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_without_the_execute_bit_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tool");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(find_program(p.as_os_str()).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program(p.as_os_str()).unwrap(), p);
    }

    /// A relative PATH entry never finds a program planted where pairjail
    /// runs (a guest's `./ssh` in the workspace).
    #[test]
    fn a_relative_path_entry_is_never_searched() {
        let d = tempfile::tempdir().unwrap();
        let planted = d.path().join("pj-planted-tool");
        std::fs::write(&planted, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
        let abs = d.path().as_os_str();
        assert_eq!(find_trusted_in("pj-planted-tool", abs).unwrap(), planted);
        // The same directory as the working one, named relative or empty.
        let relative = std::ffi::OsString::from(format!(
            ".:{}:",
            d.path().strip_prefix("/").unwrap().display()
        ));
        assert!(find_trusted_in("pj-planted-tool", &relative).is_err());
        assert!(find_trusted_in("sh", std::ffi::OsStr::new(".:/bin:/usr/bin")).is_ok());
    }

    /// A PATH directory in a jailed share's workspace, named as it is or
    /// through a link, is never searched for what pairjail runs.
    #[test]
    fn a_path_directory_in_the_workspace_is_never_searched() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("bin")).unwrap();
        std::fs::create_dir_all(d.path().join("tools")).unwrap();
        std::os::unix::fs::symlink(ws.join("bin"), d.path().join("linked")).unwrap();
        let path = std::env::join_paths([
            ws.join("bin"),
            ws.join("not-made-yet"),
            d.path().join("linked"),
            d.path().join("tools"),
            PathBuf::from("."),
        ])
        .unwrap();
        assert_eq!(
            path_outside_of(&path, &ws),
            d.path().join("tools").into_os_string()
        );
        // A link elsewhere to a place in the workspace not made yet.
        std::os::unix::fs::symlink(ws.join("later"), d.path().join("later-link")).unwrap();
        assert!(within(&d.path().join("later-link").join("bin"), &ws));
        assert!(!within(&d.path().join("tools"), &ws));
        // A program elsewhere that is a link to a file in the workspace.
        std::fs::write(ws.join("bin/pj-tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            ws.join("bin/pj-tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink(ws.join("bin/pj-tool"), d.path().join("tools/pj-tool")).unwrap();
        assert!(within(&d.path().join("tools/pj-tool"), &ws));
        // A link whose real path is outside, through a link in the
        // workspace a guest could change later.
        std::os::unix::fs::symlink("/bin/sh", ws.join("bin/via")).unwrap();
        std::os::unix::fs::symlink(ws.join("bin/via"), d.path().join("tools/pj-via")).unwrap();
        assert!(!within(&d.path().join("tools/pj-via"), &ws));
        assert!(link_chain_within(&d.path().join("tools/pj-via"), &ws));
        assert!(!link_chain_within(Path::new("/bin/sh"), &ws));
        // Kept out of every workspace at once, the found program named by
        // its real path.
        let other = d.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink("/bin/sh", other.join("pj-tool")).unwrap();
        std::fs::create_dir_all(d.path().join("last")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", d.path().join("last/pj-tool")).unwrap();
        let path = std::env::join_paths([
            ws.join("bin"),
            other.clone(),
            d.path().join("tools"),
            d.path().join("last"),
        ])
        .unwrap();
        assert_eq!(
            program_outside_of("pj-tool", &path, &[ws.clone(), other.clone()]),
            Path::new("/bin/sh").canonicalize().unwrap()
        );
        assert_eq!(
            program_outside_of("pj-tool", &path, std::slice::from_ref(&other)),
            ws.join("bin/pj-tool").canonicalize().unwrap()
        );
        assert_eq!(
            program_outside_of(
                "pj-tool",
                &path,
                &[ws.clone(), other, d.path().join("last")]
            ),
            Path::new("/usr/bin/pj-tool")
        );
        // Variables that name a place in the workspace, among others.
        let vars = [
            ("OPENSSL_CONF", format!("{}/ssl.cnf", ws.display())),
            ("LD_PRELOAD", format!("/usr/lib/x.so {}/y.so", ws.display())),
            (
                "GCONV_PATH",
                format!("/usr/lib:{}/later", d.path().join("later-link").display()),
            ),
            ("HOME", d.path().display().to_string()),
            ("LANG", "C.UTF-8".to_string()),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        assert_eq!(
            naming(vars.into_iter(), &ws),
            ["OPENSSL_CONF", "LD_PRELOAD", "GCONV_PATH"].map(std::ffi::OsString::from)
        );
    }
}
