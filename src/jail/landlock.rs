//! Step 12: Landlock, with the ABI the profile pins. `compat = "hard"` fails
//! closed when the kernel cannot enforce every right of that ABI.

use std::os::fd::BorrowedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::error::JailError;
use crate::profile::{self, Compat, Profile};

fn abi(n: u8) -> ABI {
    match n {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        7 => ABI::V7,
        8 => ABI::V8,
        _ => ABI::V9,
    }
}

/// The kernel's Landlock ABI, 0 if Landlock is off.
pub fn kernel_abi() -> i64 {
    // SAFETY: landlock_create_ruleset with a NULL attr, size 0 and the
    // VERSION flag only returns the ABI number; no memory is passed.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    v.max(0)
}

/// Checked in the parent so the error is clear and nothing was set up yet.
pub fn check_support(p: &Profile) -> Result<(), JailError> {
    if !p.landlock.enabled || p.landlock.compat != Compat::Hard {
        return Ok(());
    }
    let have = kernel_abi();
    if have < i64::from(p.landlock.abi) {
        return Err(JailError::msg(
            "landlock",
            format!(
                "the profile pins Landlock ABI {} with compat = \"hard\", but this kernel offers {} (boot with lsm=…,landlock, or use compat = \"best-effort\")",
                p.landlock.abi,
                if have == 0 {
                    "none".to_string()
                } else {
                    format!("ABI {have}")
                }
            ),
        ));
    }
    Ok(())
}

fn e(call: &str) -> impl Fn(landlock::RulesetError) -> JailError + '_ {
    move |err| JailError::msg(format!("landlock: {call}"), err.to_string())
}

/// Restricts the calling process: the profile's path rules, no TCP, the
/// scopes asked for, and exec of exactly the program file `exe` (None: a
/// program that is called, not executed, so nothing may be).
pub fn restrict(
    p: &Profile,
    params: &std::collections::BTreeMap<String, String>,
    exe: Option<BorrowedFd>,
) -> Result<(), JailError> {
    let ll = &p.landlock;
    if !ll.enabled {
        return Ok(());
    }
    let abi = abi(ll.abi);
    let compat = match ll.compat {
        Compat::Hard => CompatLevel::HardRequirement,
        Compat::BestEffort => CompatLevel::BestEffort,
    };
    let mut rs = Ruleset::default()
        .set_compatibility(compat)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e("handle_access(fs)"))?;
    if ll.abi >= 4 {
        rs = rs
            .handle_access(AccessNet::from_all(abi))
            .map_err(e("handle_access(net)"))?;
    }
    let mut scopes = landlock::BitFlags::<Scope>::empty();
    for s in &ll.scopes {
        scopes |= match s {
            profile::Scope::AbstractUnixSocket => Scope::AbstractUnixSocket,
            profile::Scope::Signal => Scope::Signal,
        };
    }
    if !scopes.is_empty() {
        rs = rs.scope(scopes).map_err(e("scope"))?;
    }
    let mut created = rs.create().map_err(e("create_ruleset"))?;

    let hidden = hide_patterns(p, params)?;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let read_exec = read | AccessFs::Execute;
    let write = AccessFs::from_all(abi) & !AccessFs::Execute;
    for (list, access) in [
        (&ll.read, read),
        (&ll.read_exec, read_exec),
        (&ll.write, write),
    ] {
        for raw in list {
            let path = profile::expand(raw, params).map_err(|m| JailError::msg("landlock", m))?;
            let mut grants = Grants::default();
            // A writable rule is the workspace's: shared by design, and
            // split it would refuse new files at its top.
            if access.contains(AccessFs::WriteFile) {
                grants.whole.push(Path::new(&path).to_path_buf());
            } else {
                grants.split(Path::new(&path), &hidden);
            }
            let listing = access & AccessFs::ReadDir;
            for (path, access) in grants
                .whole
                .iter()
                .map(|p| (p, access))
                .chain(grants.listed.iter().map(|p| (p, listing)))
            {
                if access.is_empty() {
                    continue;
                }
                // A path the profile made optional may be absent from this jail.
                let Ok(fd) = PathFd::new(path) else {
                    continue;
                };
                let access = if path.is_dir() {
                    access
                } else {
                    access & AccessFs::from_file(abi)
                };
                created = created
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(|err| {
                        JailError::msg(
                            format!("landlock: add_rule({})", path.display()),
                            err.to_string(),
                        )
                    })?;
            }
        }
    }
    if let Some(exe) = exe {
        created = created
            .add_rule(PathBeneath::new(
                exe,
                AccessFs::Execute | AccessFs::ReadFile,
            ))
            .map_err(e("add_rule(program)"))?;
    }
    let status = created.restrict_self().map_err(e("restrict_self"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        let why = format!(
            "ruleset only {:?} on this kernel (Landlock ABI {}, the profile's {})",
            status.ruleset,
            kernel_abi(),
            ll.abi
        );
        if ll.compat == Compat::Hard {
            return Err(JailError::msg(
                "landlock: restrict_self",
                format!("{why} and compat = \"hard\""),
            ));
        }
        // compat = "best-effort": the jail runs, and says what it lacks.
        eprintln!(
            "pairjail: warning: landlock: {why}; rights and scopes this kernel lacks are not enforced"
        );
    }
    Ok(())
}

/// The profile's `hide` patterns, split into path components, and what
/// each names through a link (a dotfile that links into `~/dotfiles`: the
/// mount hides the file there, and so must Landlock).
fn hide_patterns(
    p: &Profile,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Vec<glob::Pattern>>, JailError> {
    let literal = |path: &Path| -> Vec<glob::Pattern> {
        path.components()
            .filter_map(|c| {
                glob::Pattern::new(&glob::Pattern::escape(&c.as_os_str().to_string_lossy())).ok()
            })
            .collect()
    };
    let params = super::fs::glob_literal(params);
    let mut out = Vec::new();
    for raw in &p.hide {
        let path = profile::expand(raw, &params).map_err(|m| JailError::msg("hide", m))?;
        let pattern: Vec<glob::Pattern> = Path::new(&path)
            .components()
            .map(|c| {
                let text = c.as_os_str().to_string_lossy();
                glob::Pattern::new(&text)
                    .map_err(|e| JailError::msg("hide", format!("{path}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        // A path not there yet may lie through a link to another place
        // (`~/.config` linking to `~/dotfiles/config`): hidden there too.
        let parts: Vec<&std::ffi::OsStr> = Path::new(&path)
            .components()
            .map(|c| c.as_os_str())
            .collect();
        let literal_prefix = parts
            .iter()
            .take_while(|p| !p.to_string_lossy().contains(['*', '?', '[']))
            .count();
        for n in (1..=literal_prefix).rev() {
            let prefix: std::path::PathBuf = parts[..n].iter().collect();
            if let Ok(real) = prefix.canonicalize() {
                if real != prefix {
                    let mut through = literal(&real);
                    through.extend(pattern[n..].iter().cloned());
                    out.push(through);
                }
                break;
            }
        }
        out.push(pattern);
        for found in glob::glob(&path).into_iter().flatten().flatten() {
            if let Ok(real) = found.canonicalize()
                && real != found
            {
                out.push(literal(&real));
            }
        }
    }
    Ok(out)
}

/// `hide` in Landlock's terms. A mount hides a listed secret only until
/// the host's tools save it by renaming a new file over it (the kernel
/// then drops the mount), and only if it existed when the jail started. So
/// a read rule on a directory of the caller's own (where its tools can
/// save and make files) that some pattern lies under is split: the
/// directory may only be listed, and each entry it has now is granted
/// (split again if a pattern lies under it), except what a pattern names
/// and links (what a link leads to is governed where it is). What appears
/// there later, a secret saved by rename or made after the start, is in
/// no rule, and Landlock refuses it. The price: a file there that is saved
/// again during the session is unreadable until the next start.
#[derive(Debug, Default)]
struct Grants {
    /// Granted with the rule's access.
    whole: Vec<std::path::PathBuf>,
    /// Split: only listing.
    listed: Vec<std::path::PathBuf>,
}

impl Grants {
    fn split(&mut self, path: &Path, hidden: &[Vec<glob::Pattern>]) {
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let matches = |pattern: &[glob::Pattern]| {
            parts.len() <= pattern.len()
                && parts.iter().zip(pattern).all(|(part, p)| p.matches(part))
        };
        if hidden.iter().any(|h| h.len() == parts.len() && matches(h)) {
            return;
        }
        // Someone else's directory (/etc): the caller's tools change
        // nothing there, and the mount holds.
        let mine = || {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).is_ok_and(|m| m.uid() == nix::unistd::Uid::effective().as_raw())
        };
        if !hidden.iter().any(|h| h.len() > parts.len() && matches(h)) || !mine() {
            self.whole.push(path.to_path_buf());
            return;
        }
        // Unreadable: nothing under it is granted.
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        self.listed.push(path.to_path_buf());
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| !t.is_symlink()) {
                self.split(&entry.path(), hidden);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_above_a_hidden_path_grants_only_what_is_there_now_and_not_hidden() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        for dir in [".config/gh", ".config/git", "src/project"] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        for file in [
            ".netrc",
            ".bashrc",
            ".cargo-credentials.toml",
            ".config/git/config",
        ] {
            std::fs::write(home.join(file), "").unwrap();
        }
        let pattern = |rel: &str| -> Vec<glob::Pattern> {
            home.join(rel)
                .components()
                .map(|c| glob::Pattern::new(&c.as_os_str().to_string_lossy()).unwrap())
                .collect()
        };
        let hidden = [
            pattern(".netrc"),
            pattern(".config/gh"),
            pattern(".cargo-credentials*"),
            pattern(".aws"),
        ];
        let rel = |v: &[std::path::PathBuf]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|p| p.strip_prefix(home).unwrap().display().to_string())
                .collect();
            v.sort();
            v
        };
        // A link is never granted: what it leads to is governed where it is.
        std::os::unix::fs::symlink(".", home.join("self")).unwrap();
        let mut g = Grants::default();
        g.split(home, &hidden);
        assert_eq!(rel(&g.listed), ["", ".config"]);
        assert_eq!(rel(&g.whole), [".bashrc", ".config/git", "src"]);
        // A rule nothing hidden lies under stays one rule.
        let mut g = Grants::default();
        g.split(&home.join("src"), &hidden);
        assert_eq!((g.whole.len(), g.listed.len()), (1, 0));
        // A hidden path itself is never granted.
        let mut g = Grants::default();
        g.split(&home.join(".netrc"), &hidden);
        assert!(g.whole.is_empty() && g.listed.is_empty());
    }

    /// A home whose name holds glob characters still has its secrets
    /// hidden: the parameter's value is literal in the pattern.
    #[test]
    fn a_home_named_like_a_pattern_is_still_split() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("h[x]");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".netrc"), "").unwrap();
        std::fs::write(home.join(".bashrc"), "").unwrap();
        let p = Profile {
            hide: vec!["{home}/.netrc".into()],
            ..Default::default()
        };
        let params = [("home".to_string(), home.display().to_string())].into();
        let mut g = Grants::default();
        g.split(&home, &hide_patterns(&p, &params).unwrap());
        assert_eq!(g.whole, [home.join(".bashrc")], "{g:?}");
    }

    #[test]
    fn a_hidden_dotfile_that_links_elsewhere_is_hidden_there_too() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        std::fs::create_dir_all(home.join("dotfiles")).unwrap();
        std::fs::write(home.join("dotfiles/netrc"), "").unwrap();
        std::fs::write(home.join("dotfiles/vimrc"), "").unwrap();
        std::os::unix::fs::symlink("dotfiles/netrc", home.join(".netrc")).unwrap();
        let netrc = Profile {
            hide: vec![format!("{}/.netrc", home.display())],
            ..Default::default()
        };
        // What a rule on the home grants whole, sorted, under the home.
        let whole = |p: &Profile| {
            let mut g = Grants::default();
            g.split(home, &hide_patterns(p, &Default::default()).unwrap());
            let mut whole: Vec<std::path::PathBuf> = g
                .whole
                .iter()
                .map(|w| w.strip_prefix(home).unwrap().to_path_buf())
                .collect();
            whole.sort();
            whole
        };
        assert_eq!(whole(&netrc), [Path::new("dotfiles/vimrc")]);
        // A listed path not made yet, under a directory that is a link
        // (`~/.config` to `~/dotfiles/config`): hidden where it would be.
        std::fs::create_dir_all(home.join("dotfiles/config/git")).unwrap();
        std::os::unix::fs::symlink("dotfiles/config", home.join(".config")).unwrap();
        let gh = Profile {
            hide: vec![format!("{}/.config/gh", home.display())],
            ..Default::default()
        };
        assert_eq!(
            whole(&gh),
            [
                Path::new("dotfiles/config/git"),
                Path::new("dotfiles/netrc"),
                Path::new("dotfiles/vimrc")
            ]
        );
        // Someone else's directory is not split: its owner's tools, not the
        // caller's, change it, and the mount holds.
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::chown(home.join("dotfiles"), Some(4321), None).unwrap();
            assert_eq!(whole(&netrc), [Path::new("dotfiles")]);
        }
    }
}
