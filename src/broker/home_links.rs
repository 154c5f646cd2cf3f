//! Links in the host's home that lead into a workspace. The workspace
//! jail shows the home read-only, but a dotfile that is a link into the
//! workspace (a dotfiles repository managed with stow, dotbot, rcm…) is
//! written through the workspace: a pair guest appends to `~/.bashrc` and
//! the host's next shell, outside every jail, runs it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::realpath::passes_into_unless;

/// How deep below the home hidden directories are looked through:
/// `~/.config/nvim/lua/init.lua` is 4. Stow and its kind link the highest
/// directory they can, so the links are near the top.
const DEPTH: usize = 4;

/// The hidden entries of `home` (and what is below hidden directories, to
/// `DEPTH`, on the home's own file system) that are links leading into
/// `workspace`, or through any place inside it on the way (a guest could
/// point a link there anywhere later). `home` and `workspace` are real
/// paths.
pub fn leading_into(home: &Path, workspace: &Path) -> Vec<PathBuf> {
    let Ok(meta) = std::fs::symlink_metadata(home) else {
        return vec![];
    };
    // Mount points are learnt from the table, without touching them (a
    // dead network mount would hang a stat); without a table, by device.
    let mounts = crate::mountinfo::points().ok();
    let mut found = vec![];
    let mut dirs = vec![(home.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if depth == 0 && !is_hidden(&name) {
                continue;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                // A link's chain is not followed onto another mount than
                // the home's and the workspace's (a local user's FUSE
                // mount in /tmp that a dotfile leads to, or a dead network
                // mount, held `start` for good).
                let foreign = |at: &Path| {
                    mounts.as_ref().is_some_and(|m| m.iter().any(|p| p == at))
                        && !home.starts_with(at)
                        && !workspace.starts_with(at)
                };
                if passes_into_unless(&path, workspace, &foreign) {
                    found.push(path);
                }
            } else if kind.is_dir() && depth + 1 < DEPTH {
                // Another file system (a mount of the host's own) is not
                // walked: it may be slow or remote.
                let same_fs = match &mounts {
                    Some(m) => !m.contains(&path),
                    None => std::fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == meta.dev()),
                };
                if same_fs {
                    dirs.push((path, depth + 1));
                }
            }
        }
    }
    found.sort();
    found
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dotfiles_that_lead_into_the_workspace_are_found_however_they_get_there() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let ws = home.join("dotfiles");
        std::fs::create_dir_all(ws.join("ssh")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join(".config/nvim/lua")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        // Relative, as stow makes them.
        symlink("dotfiles/bashrc", home.join(".bashrc")).unwrap();
        // Below a hidden directory (~/.ssh/config: ProxyCommand).
        symlink(ws.join("ssh/config"), home.join(".ssh/config")).unwrap();
        // The workspace itself, deep down.
        symlink("../../../dotfiles", home.join(".config/nvim/lua/mine")).unwrap();
        // Through a link inside the workspace that leads out today: a
        // guest can point it anywhere tomorrow.
        symlink(root.join("elsewhere"), ws.join("out")).unwrap();
        symlink(ws.join("out/gitconfig"), home.join(".gitconfig")).unwrap();
        // Through another link of the home first.
        symlink("dotfiles", home.join(".dots")).unwrap();
        symlink(".dots/profile", home.join(".profile")).unwrap();
        // Not ones that lead elsewhere, nor links the host's tools do not
        // read (a visible name at the top of the home).
        symlink(root.join("elsewhere/inputrc"), home.join(".inputrc")).unwrap();
        symlink("dotfiles", home.join("project")).unwrap();
        // A loop leads nowhere (the kernel stops at 40 links).
        symlink(".loop2", home.join(".loop1")).unwrap();
        symlink(".loop1", home.join(".loop2")).unwrap();
        let found: Vec<String> = leading_into(&home, &ws)
            .iter()
            .map(|p| p.strip_prefix(&home).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                ".bashrc",
                ".config/nvim/lua/mine",
                ".dots",
                ".gitconfig",
                ".profile",
                ".ssh/config"
            ]
        );
        // Another workspace: none of them.
        std::fs::create_dir_all(home.join("other")).unwrap();
        let none = leading_into(&home, &home.join("other"));
        assert_eq!(none, Vec::<PathBuf>::new());
    }
}
