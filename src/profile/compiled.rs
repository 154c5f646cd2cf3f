//! The built-in profiles as build.rs resolved them. One is used only when
//! no file on the search path shadows it or a profile it extends, so a file
//! wins here exactly as it does in `resolve`.

use super::load::SearchPath;
use super::model::Profile;
use super::plan::SeccompPlan;

include!(concat!(env!("OUT_DIR"), "/compiled_profiles.rs"));

/// NAME's resolved built-in, if NAME and every profile it extends would
/// come from the built-ins. None sends the caller to `resolve`.
pub fn builtin(name: &str, search: &SearchPath) -> Option<Profile> {
    let (_, made_of, json) = COMPILED.iter().find(|(n, _, _)| *n == name)?;
    let shadowed = made_of.iter().any(|part| {
        let file = format!("{part}.toml");
        search.dirs.iter().any(|d| d.join(&file).is_file())
    });
    if shadowed {
        return None;
    }
    // Written by build.rs from this very type: a failure here would be a
    // build bug, and `resolve` still gives the right answer.
    serde_json::from_str(json).ok()
}

/// The filter build.rs built for exactly this plan, if it is a built-in
/// profile's (the key is the whole plan, so a profile that differs in
/// anything gets its filter built at run time).
pub fn filter(plan: &SeccompPlan) -> Option<&'static [u8]> {
    let key = format!("{plan:?}");
    FILTERS.iter().find(|(k, _)| *k == key).map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{builtin_names, load, resolve};

    fn nothing_on_disk() -> SearchPath {
        SearchPath::only(vec![])
    }

    #[test]
    fn every_built_in_is_what_resolve_makes_of_it() {
        for name in builtin_names() {
            let compiled = builtin(name, &nothing_on_disk());
            let resolved = resolve(name, &nothing_on_disk()).unwrap().profile;
            assert_eq!(compiled.as_ref(), Some(&resolved), "{name}");
        }
        assert_eq!(builtin("no-such-profile", &nothing_on_disk()), None);
    }

    /// Each built-in's filter is the one built now from its plan, and a
    /// plan that differs in one rule gets none.
    #[test]
    fn built_in_filters_are_what_the_plan_builds() {
        for name in builtin_names() {
            let p = resolve(name, &nothing_on_disk()).unwrap().profile;
            let Some(mut seccomp) = crate::profile::plan::plan(&p).unwrap().seccomp else {
                continue;
            };
            let built = crate::jail::bpf_tree(&seccomp).unwrap();
            assert_eq!(filter(&seccomp), Some(&built[..]), "{name}");
            // And a called program's plan (no exec calls), built too.
            let called = seccomp.for_called();
            assert!(called.rules.len() < seccomp.rules.len(), "{name}");
            let built = crate::jail::bpf_tree(&called).unwrap();
            assert_eq!(filter(&called), Some(&built[..]), "{name}");
            seccomp.rules.pop();
            assert_eq!(filter(&seccomp), None, "{name}");
        }
    }

    /// A file on the search path wins, for the profile and for a parent.
    #[test]
    fn a_file_that_shadows_a_built_in_or_its_parent_wins() {
        let dir = tempfile::tempdir().unwrap();
        let search = SearchPath::only(vec![dir.path().to_path_buf()]);
        assert!(builtin("guest-relay", &search).is_some());
        let shipped = include_str!("../../profiles/base.toml");
        assert!(shipped.contains("uid = 1000"));
        let local = shipped.replace("uid = 1000", "uid = 1234");
        std::fs::write(dir.path().join("base.toml"), local).unwrap();
        assert_eq!(builtin("guest-relay", &search), None);
        assert_eq!(
            load("guest-relay", &search).unwrap().ids.uid,
            crate::profile::Id::Number(1234)
        );
        std::fs::remove_file(dir.path().join("base.toml")).unwrap();
        std::fs::write(
            dir.path().join("guest-relay.toml"),
            "extends = [\"base\"]\ndescription = \"a local relay\"\n[seccomp]\nallow = [\"@io\"]\n",
        )
        .unwrap();
        assert_eq!(builtin("guest-relay", &search), None);
        assert_eq!(
            load("guest-relay", &search).unwrap().description.as_deref(),
            Some("a local relay")
        );
    }
}
