//! Programs: pairjail's own binary (forced commands name it, jails run it)
//! and others found as the caller's shell would find them.

use std::ffi::OsStr;
use std::path::PathBuf;

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
    which::which(name).map_err(|_| ExeError::NotFound {
        name: name.to_string_lossy().into_owned(),
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
}
