//! Values shell completion offers that only the running system knows:
//! your sessions and the profiles on the search path. Used through
//! `source <(PAIRJAIL_COMPLETE=bash pairjail)` (clap_complete's dynamic
//! engine calls back into pairjail as you type).

use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;

fn matching(current: &OsStr, names: impl IntoIterator<Item = String>) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// Your running sessions, and those your invites wait for.
pub fn sessions(current: &OsStr) -> Vec<CompletionCandidate> {
    matching(current, crate::broker::share::session_names(None))
}

/// Profile names on the search path and the built-in ones.
pub fn profiles(current: &OsStr) -> Vec<CompletionCandidate> {
    let search = crate::profile::SearchPath::from_env();
    matching(
        current,
        crate::profile::available(&search)
            .into_iter()
            .map(|(n, _)| n),
    )
}
