//! Command-line definitions and dispatch. Behaviour lives in `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// Share a tmux session over plain SSH with every guest locked in a jail.
#[derive(Debug, Parser)]
#[command(name = "pairjail", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, print and describe the sandbox profiles in profiles/.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Run a command inside the jail a profile describes.
    Exec {
        /// Profile name (on the search path) or file.
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// Keep this open descriptor in the jail, at the same number.
        #[arg(long = "pass-fd", value_name = "N")]
        pass_fd: Vec<i32>,
        /// Set a profile parameter, e.g. --param session_socket=/run/x.sock.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        param: Vec<String>,
        /// The command and its arguments (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Try to escape a profile's jail (40+ attempts); exit 0 only if all are blocked.
    Probe {
        /// Profile name (on the search path) or file.
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// Set a profile parameter.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        param: Vec<String>,
        /// Run only these attempts (repeatable).
        #[arg(long, value_name = "ATTEMPT")]
        only: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// (internal) One probe attempt, run inside the jail by `probe`.
    #[command(name = "__probe-attempt", hide = true)]
    ProbeAttempt { name: String, vars: Vec<String> },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) for pairjail, or write one per subcommand.
    Man {
        /// Write pairjail.1 and pairjail-SUBCOMMAND.1 files into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Check profile files; print every problem as file:line:col and exit 2 if any.
    Check {
        /// Profile files (or names on the search path).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a profile; with --resolved, its `extends` merged in.
    Show {
        /// A profile name on the search path, or a file.
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// Merge in every profile it extends and print the result.
        #[arg(long)]
        resolved: bool,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the profile format, for editors and CI.
    Schema,
    /// List the profiles found on the search path and built in.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Profile(cmd) => commands::profile::run(cmd),
        Command::Exec {
            profile,
            pass_fd,
            param,
            command,
        } => commands::exec::run(commands::exec::Args {
            profile,
            pass_fds: pass_fd,
            params: param,
            command,
        }),
        Command::Probe {
            profile,
            param,
            only,
            json,
        } => commands::probe::run(&profile, &param, &only, json),
        Command::ProbeAttempt { name, vars } => commands::probe::attempt(&name, &vars),
        Command::Completions { shell } => commands::docs::completions(shell),
        Command::Man { out } => commands::docs::man(out.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("pairjail: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}
