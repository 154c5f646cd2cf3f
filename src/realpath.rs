//! A path's real place, also where it is not made yet. Plain std: the
//! build script resolves the built-in profiles with the code that uses it.

use std::path::{Component, Path, PathBuf};

/// `path` with links resolved, also where its last parts do not exist yet
/// (a directory someone may make later); None for a relative path or one
/// that climbs (`..`) through a part that does not exist.
pub fn real_path(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    if let Ok(real) = path.canonicalize() {
        return Some(real);
    }
    real_path_through(path, 40)
}

/// [`real_path`] for a path that does not resolve: a link to a place not
/// made yet is followed (at most `hops` links), the rest joined as named.
fn real_path_through(path: &Path, hops: u32) -> Option<PathBuf> {
    if let Ok(real) = path.canonicalize() {
        return Some(real);
    }
    if let Ok(target) = std::fs::read_link(path) {
        let next = path.parent()?.join(target);
        return if hops == 0 || !next.is_absolute() {
            None
        } else {
            real_path_through(&next, hops - 1)
        };
    }
    let name = path.file_name()?;
    Some(real_path_through(path.parent()?, hops)?.join(name))
}

/// Links followed one after another before resolving stops: the kernel
/// follows no more (ELOOP), so nothing is reached through such a chain.
const HOPS: u32 = 40;

/// Does resolving `path` reach `inside` (or below it) at any step, also
/// through a link that later leads out again?
pub fn passes_into(path: &Path, inside: &Path) -> bool {
    passes_into_unless(path, inside, &|_| false)
}

/// [`passes_into`], looking no further down a chain at a step `stop`
/// names (a mount point of someone else's, never to be touched).
pub fn passes_into_unless(path: &Path, inside: &Path, stop: &dyn Fn(&Path) -> bool) -> bool {
    let mut hops = HOPS;
    resolve(path, inside, stop, &mut hops).is_none()
}

/// `path` resolved a part at a time; None once a step is inside `inside`.
fn resolve(
    path: &Path,
    inside: &Path,
    stop: &dyn Fn(&Path) -> bool,
    hops: &mut u32,
) -> Option<PathBuf> {
    let mut at = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => at = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                if at.starts_with(inside) {
                    return None;
                }
                if stop(&at) {
                    return Some(at);
                }
                if let Ok(target) = std::fs::read_link(&at) {
                    let Some(left) = hops.checked_sub(1) else {
                        return Some(at);
                    };
                    *hops = left;
                    at.pop();
                    let next = at.join(target);
                    at = resolve(&next, inside, stop, hops)?;
                }
            }
        }
    }
    Some(at)
}
