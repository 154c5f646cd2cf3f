//! One file per subcommand: its clap arguments, and a `run` that calls the
//! domain and prints. Commands never call each other; domain errors become
//! a [`Failure`] (exit code and one line) only here.

pub mod audit;
pub mod complete;
pub mod docs;
pub mod doctor;
pub mod exec;
pub mod invite;
pub mod join;
pub mod moderate;
pub mod probe;
pub mod profile;
pub mod schema;
pub mod session;
pub mod setup;

use std::fmt;
use std::path::{Path, PathBuf};

/// A command's failure: the exit code and the one line to print.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input: a profile, a file, an argument (exit 2).
    pub fn invalid(message: impl fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Something that should have worked did not (exit 1).
    pub fn failed(message: impl fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }

    fn by(invalid: bool, message: impl fmt::Display) -> Self {
        if invalid {
            Failure::invalid(message)
        } else {
            Failure::failed(message)
        }
    }
}

pub type Outcome = Result<std::process::ExitCode, Failure>;

/// What a command given `--json` prints on stdout when it fails (the exit
/// status is the same as without `--json`).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorOutput {
    pub error: ErrorBody,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// The exit status: 1 failed, 2 bad input.
    pub code: u8,
    pub message: String,
}

impl From<crate::broker::share::ShareError> for Failure {
    fn from(e: crate::broker::share::ShareError) -> Self {
        Failure::by(e.is_invalid(), e)
    }
}

impl From<crate::guest::join::JoinError> for Failure {
    fn from(e: crate::guest::join::JoinError) -> Self {
        Failure::by(e.is_invalid(), e)
    }
}

impl From<crate::keys::registry::RegistryError> for Failure {
    fn from(e: crate::keys::registry::RegistryError) -> Self {
        use crate::keys::registry::RegistryError;
        Failure::by(matches!(e, RegistryError::Invalid(_)), e)
    }
}

impl From<crate::keys::request::RequestError> for Failure {
    fn from(e: crate::keys::request::RequestError) -> Self {
        Failure::by(e.is_invalid(), e)
    }
}

impl From<crate::jail::JailError> for Failure {
    fn from(e: crate::jail::JailError) -> Self {
        Failure::failed(e)
    }
}

impl From<crate::profile::ProfileErrors> for Failure {
    fn from(e: crate::profile::ProfileErrors) -> Self {
        Failure::invalid(e)
    }
}

impl From<crate::exe::ExeError> for Failure {
    fn from(e: crate::exe::ExeError) -> Self {
        Failure::failed(e)
    }
}

/// `--runtime-dir`, shared by every command that finds sessions.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RuntimeDir {
    /// Where session sockets and invites live (default: $PAIRJAIL_RUNTIME_DIR,
    /// else /run/pairjail if `pairjail setup` made it, else $XDG_RUNTIME_DIR/pairjail).
    /// `start` refuses one under your home, which every jailed session shows.
    #[arg(long = "runtime-dir", value_name = "DIR", global = false)]
    pub path: Option<PathBuf>,
}

impl RuntimeDir {
    pub fn get(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Prints a value as pretty JSON, with nothing in its strings that a
/// terminal would act on (they may be a guest's, or another user's).
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let text = crate::json_line::pretty(v).map_err(Failure::failed)?;
    println!("{text}");
    Ok(())
}
