//! Workspaces that jailed shares made writable to pair guests. What
//! pairjail trusts later (profiles, the guest book and the key files it
//! names) is never read from one: a guest could have written it there,
//! as the host's uid, in any earlier share (a dotfiles repository shared
//! once, and linked from `~/.config/pairjail`). The list is
//! `~/.local/state/pairjail/workspaces`, which the workspace jail hides,
//! one JSON string per line; `start` adds to it
//! (`broker::workspace::remember`). Plain std and serde: the build script
//! resolves the built-in profiles with the code that reads it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WorkspacesError {
    #[error(
        "cannot read the list of shared workspaces {0}: {1} (fix the bad line: removing the file would trust again what guests wrote in every workspace listed)"
    )]
    Read(PathBuf, String),
}

/// The caller's home: `$HOME`, else the password database's (as `start`
/// finds it), so the list is read where it was written.
pub fn caller_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// The caller's list (none without a home).
pub fn shared_of_caller() -> Result<Vec<PathBuf>, WorkspacesError> {
    caller_home().map_or(Ok(Vec::new()), |h| shared(&h))
}

/// Where the list of the user whose home is `home` is kept.
pub fn list_path(home: &Path) -> PathBuf {
    home.join(".local/state/pairjail/workspaces")
}

/// The workspaces remembered for the user whose home is `home`.
pub fn shared(home: &Path) -> Result<Vec<PathBuf>, WorkspacesError> {
    let path = list_path(home);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WorkspacesError::Read(path, e.to_string())),
    };
    // Only whole lines: a line without its end is another `start`'s
    // append under way, whose share has no guest yet.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<PathBuf>(line)
                .map_err(|e| WorkspacesError::Read(path.clone(), format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// The workspace of `shared` that `path` lies in, compared with links
/// resolved (a link from `~/.config` into a workspace leads into it), or
/// that it passes through on the way: a link inside a workspace that
/// leads out today is a guest's to point elsewhere between a check and
/// an open.
pub fn holding<'a>(shared: &'a [PathBuf], path: &Path) -> Option<&'a Path> {
    // A relative path (`invite add --key-file bob.pub`) is the caller's.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let real = crate::realpath::real_path(&path).unwrap_or_else(|| path.clone());
    shared
        .iter()
        .find(|w| real.starts_with(w) || crate::realpath::passes_into(&path, w))
        .map(PathBuf::as_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_is_found_through_a_link() {
        let d = tempfile::tempdir().expect("tempdir");
        // Compared as real paths: the temporary directory may be a link.
        let root = d.path().canonicalize().expect("real");
        let home = root.join("home");
        let ws = root.join("ws");
        std::fs::create_dir_all(ws.join("profiles")).expect("ws");
        std::fs::create_dir_all(&home).expect("home");
        let list = vec![ws.clone()];
        let link = home.join("profiles");
        std::os::unix::fs::symlink(ws.join("profiles"), &link).expect("link");
        assert_eq!(holding(&list, &link), Some(ws.as_path()));
        assert_eq!(holding(&list, &home), None);
        // A link to a file a guest has not made yet leads there too.
        let later = home.join("guests.toml");
        std::os::unix::fs::symlink(ws.join("guests.toml"), &later).expect("link");
        assert_eq!(holding(&list, &later), Some(ws.as_path()));
        // Through a link in the workspace that leads out today (a guest
        // can point it elsewhere between a check and an open).
        std::fs::create_dir_all(root.join("team")).expect("team");
        std::fs::write(root.join("team/guest-relay.toml"), "").expect("file");
        std::os::unix::fs::symlink(root.join("team"), ws.join("team")).expect("link");
        assert_eq!(
            holding(&list, &ws.join("team/guest-relay.toml")),
            Some(ws.as_path())
        );
        std::os::unix::fs::symlink(ws.join("team"), home.join("team")).expect("link");
        assert_eq!(
            holding(&list, &home.join("team/guest-relay.toml")),
            Some(ws.as_path())
        );
        assert_eq!(holding(&list, &root.join("team/guest-relay.toml")), None);
    }

    #[test]
    fn a_list_that_cannot_be_read_is_an_error_not_an_empty_list() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = list_path(d.path());
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(&path, "\"/ok\"\n\"/half").expect("write");
        assert_eq!(
            shared(d.path()).expect("whole lines"),
            [PathBuf::from("/ok")]
        );
        std::fs::write(&path, "\"/ok\"\nnot json\n").expect("write");
        let e = shared(d.path()).expect_err("a bad line").to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
