//! Finding profile files and resolving `extends`.

use std::env;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::error::{ProfileError, ProfileErrors};
use super::locate;
use super::merge::{merge, narrowings};
use super::model::Profile;
use super::source::Source;
use super::validate;
pub use crate::realpath::real_path;

/// The profiles shipped with pairjail, compiled in so a bare binary (and
/// sshd's forced command) always finds them. Files on the search path win.
const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../profiles/base.toml")),
    (
        "guest-relay",
        include_str!("../../profiles/guest-relay.toml"),
    ),
    (
        "guest-direct",
        include_str!("../../profiles/guest-direct.toml"),
    ),
    ("workspace", include_str!("../../profiles/workspace.toml")),
    (
        "workspace-strict",
        include_str!("../../profiles/workspace-strict.toml"),
    ),
    (
        "session-client",
        include_str!("../../profiles/session-client.toml"),
    ),
];

pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Every profile a name resolves to, first match first: (name, where).
/// Files on the search path shadow built-ins of the same name.
pub fn available(search: &SearchPath) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = Vec::new();
    for dir in &search.dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        found.sort();
        for p in found {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                && !names.iter().any(|(n, _)| n == stem)
            {
                names.push((stem.to_string(), p.display().to_string()));
            }
        }
    }
    for n in builtin_names() {
        if !names.iter().any(|(m, _)| m == n) {
            names.push((n.to_string(), "<built-in>".into()));
        }
    }
    names
}

/// Where `extends = [...]` names and `profile show NAME` are looked up,
/// first match wins.
#[derive(Debug, Clone)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
    /// Workspaces jailed shares made writable to pair guests (see
    /// `workspaces`): a profile found in one is refused. Err: the list
    /// could not be read, and a profile on disk cannot be trusted.
    pub shared: Result<Vec<PathBuf>, String>,
}

impl SearchPath {
    /// `$PAIRJAIL_PROFILE_PATH` (colon-separated),
    /// `~/.config/pairjail/profiles`, `/etc/pairjail/profiles`, then built-ins.
    /// Never the working directory: the broker and `attach` start a jailed
    /// session's tmux clients from its workspace, which guests can write.
    pub fn from_env() -> SearchPath {
        let mut dirs: Vec<PathBuf> = env::var_os("PAIRJAIL_PROFILE_PATH")
            .map(|p| {
                env::split_paths(&p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(home) = env::var_os("HOME") {
            dirs.push(Path::new(&home).join(".config/pairjail/profiles"));
        }
        dirs.push(PathBuf::from("/etc/pairjail/profiles"));
        let shared = crate::workspaces::shared_of_caller().map_err(|e| e.to_string());
        SearchPath { dirs, shared }
    }

    /// For `join`, whose environment sshd builds and a guest adds to
    /// wherever `AcceptEnv` lets it: no `$PAIRJAIL_PROFILE_PATH`, and the
    /// home from the password database, never `$HOME`. A guest's own
    /// variable must not pick the files its jail is built from.
    /// Err: no home for this uid, whose profiles (a host's, requiring a
    /// recording) would otherwise be skipped without a word.
    pub fn for_guest() -> Result<SearchPath, String> {
        let uid = nix::unistd::Uid::effective();
        let home = match nix::unistd::User::from_uid(uid) {
            Ok(Some(u)) => u.dir,
            Ok(None) => return Err(format!("uid {uid} has no entry in the password database")),
            Err(e) => return Err(format!("cannot look up uid {uid}: {e}")),
        };
        Ok(SearchPath::of_join(&home))
    }

    /// What `join` searches when it runs as the user whose home (in the
    /// password database) is `home`.
    pub fn of_join(home: &Path) -> SearchPath {
        let dirs = vec![
            home.join(".config/pairjail/profiles"),
            PathBuf::from("/etc/pairjail/profiles"),
        ];
        let shared = crate::workspaces::shared(home).map_err(|e| e.to_string());
        SearchPath { dirs, shared }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Only `dirs`, with no shared workspace known.
    pub fn only(dirs: Vec<PathBuf>) -> SearchPath {
        SearchPath {
            dirs,
            shared: Ok(Vec::new()),
        }
    }

    /// The first directory searched that lies inside `dir` (compared
    /// with links resolved, also in a part not made yet), or is reached
    /// through a place inside it (a link there that leads out today is a
    /// guest's to point elsewhere between a check and a read), if any. A
    /// relative one counts: it is looked up from wherever pairjail runs.
    pub fn inside(&self, dir: &Path) -> Option<PathBuf> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        self.dirs
            .iter()
            .find(|d| {
                real_path(d).is_none_or(|real| real.starts_with(&dir))
                    || crate::realpath::passes_into(d, &dir)
            })
            .cloned()
    }

    pub fn find(&self, name: &str, first: Option<&Path>) -> Option<Result<Source, ProfileError>> {
        let file = format!("{name}.toml");
        for dir in first
            .into_iter()
            .chain(self.dirs.iter().map(PathBuf::as_path))
        {
            let p = dir.join(&file);
            if p.is_file() {
                return Some(self.trusted(&p).and_then(|()| Source::read(&p)));
            }
        }
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            Ok(Source {
                name: format!("<built-in {n}.toml>"),
                text: (*text).to_string(),
                dir: None,
                own: None,
            })
        })
    }

    /// A profile decides what a jail allows: one a pair guest could have
    /// written, in the workspace of an earlier jailed share, is refused.
    fn trusted(&self, path: &Path) -> Result<(), ProfileError> {
        let fail = |message: String| ProfileError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message,
        };
        let shared = self.shared.as_ref().map_err(|e| fail(e.clone()))?;
        match crate::workspaces::holding(shared, path) {
            Some(w) => Err(fail(format!(
                "inside {}, the workspace of an earlier jailed share, where pair guests could write it: a profile decides what a jail allows; move your profiles out of it (or, if no guest ever wrote there, remove its line from {})",
                w.display(),
                crate::workspaces::caller_home()
                    .map(|h| crate::workspaces::list_path(&h).display().to_string())
                    .unwrap_or_else(|| "~/.local/state/pairjail/workspaces".into())
            ))),
            None => Ok(()),
        }
    }
}

/// A profile with every `extends` merged in, and the files it came from
/// (the named file first).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub profile: Profile,
    pub sources: Vec<Source>,
    /// Lists written as if to allow less than their parents' (see
    /// `merge::narrowings`), each prefixed with its file.
    pub narrowed: Vec<String>,
}

/// Is `arg` a file path rather than a profile name?
pub fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".toml")
}

/// Loads NAME or FILE, resolves `extends`, and validates the result.
pub fn resolve(arg: &str, search: &SearchPath) -> Result<Resolved, ProfileErrors> {
    let top = if is_path(arg) {
        Source::read(Path::new(arg))?
    } else {
        match search.find(arg, None) {
            Some(src) => src?,
            None => {
                return Err(ProfileError {
                    file: arg.to_string(),
                    line: 0,
                    col: 0,
                    message: format!(
                        "no profile named '{arg}' (looked in {} and the built-ins: {})",
                        search
                            .dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        builtin_names().collect::<Vec<_>>().join(", ")
                    ),
                }
                .into());
            }
        }
    };
    let mut sources = Vec::new();
    let mut stack = Vec::new();
    let mut narrowed = Vec::new();
    let table = load(top, search, &mut stack, &mut sources, &mut narrowed)?;
    let first = &sources[0];
    let profile: Profile = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            first.error_at_offset(0, format!("merged profile is invalid: {}", e.message()))
        })?;
    validate::check(&profile, &sources)?;
    Ok(Resolved {
        profile,
        sources,
        narrowed,
    })
}

/// Parses one file (located type and field errors), then its parents, and
/// merges them underneath it. `sources` ends with the named file first.
fn load(
    src: Source,
    search: &SearchPath,
    stack: &mut Vec<String>,
    sources: &mut Vec<Source>,
    narrowed: &mut Vec<String>,
) -> Result<Table, ProfileErrors> {
    // One parse on the happy path; only a file with a type or field error
    // is parsed again, with spans, to locate it.
    let mut table: Table = toml::from_str(&src.text).map_err(|e| parse_error(&src, &e))?;
    let own: Profile = match Profile::deserialize(table.clone()) {
        Ok(own) => own,
        Err(_) => return Err(all_errors(&src)),
    };
    table.remove("extends");
    stack.push(src.name.clone());
    let index = sources.len();
    let extends = own.extends.clone();
    sources.push(Source {
        own: Some(own),
        ..src
    });
    let mut merged = Table::new();
    for (i, parent) in extends.iter().enumerate() {
        let at = |msg: String| sources[index].error_at(&["extends".into(), i.into()], false, msg);
        let dir = sources[index].dir.clone();
        let found = match search.find(parent, dir.as_deref()) {
            Some(found) => found?,
            None => return Err(at(format!("extends unknown profile '{parent}'")).into()),
        };
        if let Some(pos) = stack.iter().position(|n| *n == found.name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(found.name.clone());
            return Err(at(format!("include cycle: {}", cycle.join(" -> "))).into());
        }
        let parent_table = load(found, search, stack, sources, narrowed)?;
        merge(&mut merged, parent_table);
    }
    let name = &sources[index].name;
    narrowed.extend(
        narrowings(&merged, &table, "")
            .into_iter()
            .map(|n| format!("{name}: {n}")),
    );
    merge(&mut merged, table);
    stack.pop();
    Ok(merged)
}

/// At most this many errors of one file are reported.
const MAX_ERRORS: usize = 32;

/// Every type and field error of one file, not just the first: each error
/// found is blanked out (the key and its value, or a whole `[table]`,
/// replaced by spaces, so offsets and line numbers stay those of the file)
/// and the file is parsed again.
fn all_errors(src: &Source) -> ProfileErrors {
    let mut text = src.text.clone();
    let mut errors = Vec::new();
    let mut seen = Vec::new();
    while errors.len() < MAX_ERRORS {
        let Err(e) = toml::from_str::<Profile>(&text) else {
            break;
        };
        let start = e.span().map(|s| s.start);
        if start.is_some_and(|s| seen.contains(&s)) {
            break;
        }
        errors.extend(parse_error(src, &e).0);
        let Some(start) = start else { break };
        seen.push(start);
        let Some(region) = locate::item_around(&text, start) else {
            break;
        };
        // Byte for byte, so every later offset is still the file's.
        let blanked: String = text[region.clone()]
            .chars()
            .map(|c| {
                if c == '\n' {
                    "\n".to_string()
                } else {
                    " ".repeat(c.len_utf8())
                }
            })
            .collect();
        if blanked == text[region.clone()] {
            break;
        }
        text.replace_range(region, &blanked);
        // Blanking that broke the TOML itself (a `[` line inside an array
        // or a string taken for a header) would report errors the author
        // never made: stop at what was found.
        if toml::from_str::<Table>(&text).is_err() {
            break;
        }
    }
    if errors.is_empty() {
        src.error_at_offset(0, "invalid profile".into()).into()
    } else {
        ProfileErrors(errors)
    }
}

/// Turns a TOML/serde error into `file:line:col: message`, naming the table.
fn parse_error(src: &Source, e: &toml::de::Error) -> ProfileErrors {
    let offset = e.span().map_or(0, |s| s.start);
    let raw = e.message().trim().to_string();
    let (context, key) = locate::context_at(&src.text, offset);
    let message = if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let tail = tail.replace('`', "");
        format!("unknown field '{field}' in {context}{tail}")
    } else if let Some(key) = key {
        format!("'{key}' in {context}: {}", raw.replace('`', "'"))
    } else {
        raw.replace('`', "'")
    };
    src.error_at_offset(offset, message).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_directory_inside_the_workspace_is_found_however_spelled() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::os::unix::fs::symlink(&ws, d.path().join("link")).unwrap();
        let inside = |dir: PathBuf| SearchPath::only(vec![dir]).inside(&ws).is_some();
        assert!(inside(ws.join("profiles")));
        // Not made yet, through a link, or climbing out and back in.
        assert!(inside(d.path().join("link/later/profiles")));
        assert!(inside(d.path().join("ws/../ws/later")));
        assert!(inside(d.path().join("ws/later/../../ws/x")));
        assert!(inside(PathBuf::from("profiles")));
        // A link to a place in the workspace not made yet.
        std::os::unix::fs::symlink(ws.join("missing"), d.path().join("dangling")).unwrap();
        assert!(inside(d.path().join("dangling/profiles")));
        assert!(!inside(d.path().join("elsewhere/profiles")));
        assert!(!inside(PathBuf::from("/etc/pairjail/profiles")));
        // Through a link in the workspace that leads out today: a guest
        // swaps it between the check and the read.
        std::fs::create_dir_all(d.path().join("elsewhere/profiles")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), ws.join("out")).unwrap();
        assert!(inside(ws.join("out/profiles")));
        std::os::unix::fs::symlink(ws.join("out"), d.path().join("via")).unwrap();
        assert!(inside(d.path().join("via/profiles")));
    }
}
