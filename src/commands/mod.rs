//! One file per subcommand. Each parses nothing and decides little: it calls
//! the library and prints.

pub mod docs;
pub mod doctor;
pub mod exec;
pub mod invite;
pub mod join;
pub mod probe;
pub mod profile;
pub mod session;
pub mod setup;

use std::fmt;

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
}

pub type Outcome = Result<std::process::ExitCode, Failure>;
