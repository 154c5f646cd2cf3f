//! Resolves the built-in profiles at build time: each one's `extends`
//! merged in and validated by the very code that does it at run time
//! (src/profile, included below), written out as JSON that
//! `profile::load` deserializes, and each one's seccomp filter built by
//! src/jail/bpf.rs. Parsing and merging their TOML was about 0.2 ms of
//! every jail entry, libseccomp's work on the filter another 0.06. A
//! built-in profile that does not validate fails the build.

use std::fmt::Write as _;
use std::path::Path;

#[allow(dead_code, unused_imports)]
#[path = "src/profile"]
mod profile {
    pub mod error;
    pub mod load;
    mod locate;
    mod merge;
    pub mod model;
    mod names;
    pub mod plan;
    mod source;
    mod units;
    mod validate;

    pub use units::{Action, HumanDuration, Size};
}

#[path = "src/jail/bpf.rs"]
mod bpf;

#[allow(dead_code)]
#[path = "src/workspaces.rs"]
mod workspaces;

#[path = "src/realpath.rs"]
mod realpath;

fn main() {
    println!("cargo:rerun-if-changed=profiles");
    println!("cargo:rerun-if-changed=src/profile");
    println!("cargo:rerun-if-changed=src/jail/bpf.rs");
    // The filters are libseccomp's output: a new libseccomp.a rebuilds them.
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LIB_PATH");
    if let Some(dir) = std::env::var_os("LIBSECCOMP_LIB_PATH") {
        let lib = Path::new(&dir).join("libseccomp.a");
        println!("cargo:rerun-if-changed={}", lib.display());
    }
    // Only the built-ins: no directory is searched.
    let search = profile::load::SearchPath::only(vec![]);
    let mut profiles = String::from(
        "/// (name, the built-ins it is made of, the resolved profile as JSON)\n\
         const COMPILED: &[(&str, &[&str], &str)] = &[\n",
    );
    // Keyed by the whole seccomp plan, so a filter is used only for the
    // very plan it was built from.
    let mut filters = String::from(
        "/// (the seccomp plan, `{:?}`, the filter built from it)\n\
         const FILTERS: &[(&str, &[u8])] = &[\n",
    );
    for name in profile::load::builtin_names() {
        let resolved = match profile::load::resolve(name, &search) {
            Ok(r) => r,
            Err(e) => panic!("built-in profile {name} does not validate: {e}"),
        };
        let made_of: Vec<String> = resolved
            .sources
            .iter()
            .map(|s| {
                s.name
                    .trim_start_matches("<built-in ")
                    .trim_end_matches(".toml>")
                    .to_string()
            })
            .collect();
        let json = match serde_json::to_string(&resolved.profile) {
            Ok(j) => j,
            Err(e) => panic!("built-in profile {name}: {e}"),
        };
        let _ = writeln!(profiles, "    ({name:?}, &{made_of:?}, {json:?}),");
        let plan = match profile::plan::plan(&resolved.profile) {
            Ok(p) => p,
            Err(e) => panic!("built-in profile {name}: {e}"),
        };
        if let Some(seccomp) = plan.seccomp {
            // Executed programs' plan, and called ones' (no exec calls).
            for seccomp in [seccomp.for_called(), seccomp] {
                let bytes = match bpf::tree(&seccomp) {
                    Ok(b) => b,
                    Err(e) => panic!("built-in profile {name}: seccomp: {e}"),
                };
                let _ = writeln!(filters, "    ({:?}, &{bytes:?}),", format!("{seccomp:?}"));
            }
        }
    }
    let out = format!("{profiles}];\n\n{filters}];\n");
    let Some(dir) = std::env::var_os("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    if let Err(e) = std::fs::write(Path::new(&dir).join("compiled_profiles.rs"), out) {
        panic!("writing the compiled profiles: {e}");
    }
}
