//! Policy: the profile format as plain data. Loading, merging, validating and
//! printing a profile never touches the kernel; `jail::spawn` is the one place
//! that turns a [`Profile`] into syscalls.

pub mod compiled;
mod error;
mod load;
mod locate;
mod merge;
mod model;
pub mod names;
pub mod oci;
pub mod params;
pub mod plan;
mod source;
mod units;
mod validate;
pub mod warnings;

pub use error::{ProfileError, ProfileErrors};
pub use load::{Resolved, SearchPath, available, builtin_names, is_path, real_path, resolve};
pub use model::*;
pub use source::{Source, only_caller_or_root_changes};
pub use units::{Action, HumanDuration, Size};
pub use validate::{MAX_LANDLOCK_ABI, expand};

/// NAME or FILE, resolved and validated, for running a jail: a built-in
/// comes as build.rs resolved it (parsing and merging TOML was 0.2 ms of
/// every entry) unless a file on the search path shadows it or a profile it
/// extends. Callers that show or locate a profile's sources use `resolve`.
pub fn load(arg: &str, search: &SearchPath) -> Result<Profile, ProfileErrors> {
    if !is_path(arg)
        && let Some(p) = compiled::builtin(arg, search)
    {
        return Ok(p);
    }
    resolve(arg, search).map(|r| r.profile)
}

/// JSON Schema of the profile format.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Profile)).unwrap_or_default()
}
