//! The guest book, `~/.config/pairjail/guests.toml`: regular partners
//! `start --invite NAME` invites without retyping their keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::request::{KeySource, Request};
use crate::profile::Mode;

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("--invite needs the guest book {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--invite: the guest book {path} is {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("--invite {name}: not in {path}")]
    Missing { name: String, path: PathBuf },
    #[error(
        "--invite: {what} {path} is inside {workspace}, the workspace of an earlier jailed share, where pair guests could have written their own keys into it: move it out (or, if no guest ever wrote there, remove its line from ~/.local/state/pairjail/workspaces)"
    )]
    Shared {
        what: &'static str,
        path: PathBuf,
        workspace: PathBuf,
    },
    #[error(
        "{book}: {name}'s key_file {path} is relative, read from wherever `start` runs (often a workspace guests can write): write it absolute"
    )]
    RelativeKeyFile {
        book: PathBuf,
        name: String,
        path: PathBuf,
    },
}

/// One partner.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: Option<String>,
    key_file: Option<PathBuf>,
    github: Option<String>,
    gitlab: Option<String>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    from: Vec<String>,
}

/// The book of the user whose home is `home`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(".config/pairjail/guests.toml")
}

/// Invite requests for `names` into `session`, in the order given; a
/// partner with no mode gets `default_mode`. Neither the book nor a key
/// file it names may be inside one of the `shared` workspaces.
pub fn requests(
    book: &Path,
    names: &[String],
    session: &str,
    default_mode: Mode,
    shared: &[PathBuf],
) -> Result<Vec<Request>, BookError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let outside = |what, path: &Path| match crate::workspaces::holding(shared, path) {
        Some(w) => Err(BookError::Shared {
            what,
            path: path.to_path_buf(),
            workspace: w.to_path_buf(),
        }),
        None => Ok(()),
    };
    outside("the guest book", book)?;
    // Only a book only the host or root can change: another user who can
    // write it (or swap it) picks whose key `start --invite` lets in (a
    // read-only hunt).
    let read = |source| BookError::Read {
        path: book.to_path_buf(),
        source,
    };
    // Without waiting (a FIFO at its path hung `start`), a regular file,
    // read up to a bound (a review).
    let file = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true),
        libc::O_NONBLOCK | libc::O_NOCTTY,
    )
    .open(book)
    .map_err(read)?;
    if !file.metadata().map_err(read)?.is_file() {
        return Err(BookError::Untrusted {
            path: book.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    crate::profile::only_caller_or_root_changes(
        &file,
        book,
        "the guest book decides whose keys are invited",
        true,
    )
    .map_err(|why| BookError::Untrusted {
        path: book.to_path_buf(),
        why,
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&file, 1 << 20), &mut text)
        .map_err(read)?;
    let entries: BTreeMap<String, Entry> = toml::from_str(&text).map_err(|e| BookError::Parse {
        path: book.to_path_buf(),
        message: e.message().to_string(),
    })?;
    names
        .iter()
        .map(|name| {
            let e = entries.get(name).ok_or_else(|| BookError::Missing {
                name: name.clone(),
                path: book.to_path_buf(),
            })?;
            if let Some(f) = &e.key_file {
                if !f.is_absolute() {
                    return Err(BookError::RelativeKeyFile {
                        book: book.to_path_buf(),
                        name: name.clone(),
                        path: f.clone(),
                    });
                }
                outside("the key file", f)?;
            }
            Ok(Request {
                name: name.clone(),
                source: KeySource {
                    key: e.key.clone(),
                    key_file: e.key_file.clone(),
                    github: e.github.clone(),
                    gitlab: e.gitlab.clone(),
                },
                mode: e.mode.unwrap_or(default_mode),
                session: session.to_string(),
                expires: None,
                from: e.from.clone(),
                via: None,
                approve: false,
                direct: false,
            })
        })
        .collect()
}
