//! Programs: pairjail's own binary (forced commands name it, jails run it)
//! and others found as the caller's shell would find them.

use std::ffi::OsStr;
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
}
