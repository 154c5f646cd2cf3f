//! Command-line definitions and dispatch. Behaviour lives in `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::broker::paths;
use crate::commands;
use crate::keys::invites::Via;
use crate::profile::Mode;

/// Share a tmux session over plain SSH with every guest locked in a jail.
#[derive(Debug, Parser)]
#[command(name = "pairjail", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

fn mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Share a tmux session: start its own tmux server and the broker, then attach.
    Start {
        /// Name of the shared session.
        #[arg(long, default_value = paths::DEFAULT_SESSION)]
        session: String,
        /// Modes guests may use (comma-separated: mirror, pair, rogue).
        #[arg(long, value_delimiter = ',', value_parser = mode, default_value = "mirror")]
        allow: Vec<Mode>,
        /// Mode of a guest whose forced command names none.
        #[arg(long, value_parser = mode, default_value = "mirror")]
        default_mode: Mode,
        /// Leave the session running in the background instead of attaching.
        #[arg(long)]
        detach: bool,
        /// Also allow the direct transport: guests' own tmux clients, jailed
        /// (`server-access` for each --guest-user; read-only unless pair is allowed).
        #[arg(long)]
        direct: bool,
        /// Invite these regular partners from ~/.config/pairjail/guests.toml.
        #[arg(long, value_name = "NAME")]
        invite: Vec<String>,
        /// Unix users whose guests may connect (default: `pair`, if it exists).
        #[arg(long = "guest-user", value_name = "USER")]
        guest_users: Vec<String>,
        /// Where session sockets live (default: $PAIRJAIL_RUNTIME_DIR, /run/pairjail, $XDG_RUNTIME_DIR/pairjail).
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
        /// Program to run in the shared session instead of your shell.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Invite guests: their keys, mode, session and expiry.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// sshd's AuthorizedKeysCommand (%u %k %t): a line only for a key invited to a live session.
    #[command(name = "authorized-keys")]
    AuthorizedKeys {
        /// The user sshd authenticates (%u).
        user: String,
        /// The offered key, base64 (%k).
        key: String,
        /// The offered key's type (%t).
        key_type: String,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// One-time root setup of pair-user mode: the user, runtime dir and sshd config.
    Setup(crate::commands::setup::SetupArgs),
    /// Check the kernel, tmux, sshd and pairjail's own setup; print a fix for each problem.
    Doctor {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// The guests' Unix user to check sshd's effective config for.
        #[arg(long, default_value = "pair")]
        pair_user: String,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Attach your terminal to a session you are sharing.
    Attach {
        #[arg(long, default_value = paths::DEFAULT_SESSION)]
        session: String,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// End a shared session: every guest is disconnected.
    Stop {
        #[arg(long, default_value = paths::DEFAULT_SESSION)]
        session: String,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Show your shared sessions and who is connected.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// sshd's forced command for a guest (written into authorized_keys, not typed).
    Join {
        /// The Unix user sharing the session.
        #[arg(long)]
        host: String,
        #[arg(long, default_value = paths::DEFAULT_SESSION)]
        session: String,
        /// The guest's name, as the host sees it.
        #[arg(long)]
        guest: String,
        /// mirror, pair or rogue (default: the session's default mode).
        #[arg(long, value_parser = mode)]
        mode: Option<Mode>,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
        /// relay (default: the broker relays a tmux client it runs) or direct
        /// (the guest's own tmux client in the guest-direct jail).
        #[arg(long, default_value = "relay", value_parser = ["relay", "direct"])]
        transport: String,
        /// The guest's jail (default: guest-relay, or guest-direct).
        #[arg(long, value_name = "NAME|FILE")]
        profile: Option<String>,
        /// The broker run (PID.START) the invite is bound to; join goes on
        /// only while that run is alive.
        #[arg(long, value_name = "PID.START")]
        run: Option<crate::broker::liveness::Run>,
    },
    /// (internal) The broker daemon of one shared session.
    #[command(name = "__broker", hide = true)]
    Broker {
        #[arg(long)]
        session: String,
        #[arg(long)]
        runtime_dir: PathBuf,
        #[arg(long, value_delimiter = ',', value_parser = mode)]
        allow: Vec<Mode>,
        #[arg(long, value_parser = mode)]
        default_mode: Mode,
        #[arg(long = "guest-uid")]
        guest_uids: Vec<u32>,
        #[arg(long)]
        direct: bool,
    },
    /// (internal) The guest's relay client, run inside the jail by `join`.
    #[command(name = "__relay", hide = true)]
    Relay {
        #[arg(long)]
        fd: i32,
    },
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

fn via(s: &str) -> Result<Via, String> {
    match s {
        "pair-user" => Ok(Via::PairUser),
        "authorized-keys" => Ok(Via::AuthorizedKeys),
        _ => Err(format!(
            "unknown --via '{s}', expected pair-user or authorized-keys"
        )),
    }
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Invite a guest by key (--key, --key-file, --github or --gitlab).
    Add {
        /// The guest's name (letters, digits, '-', '_', '.').
        name: String,
        /// An OpenSSH public key line.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// A file of OpenSSH public keys.
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Use the keys GitHub publishes for this account.
        #[arg(long, value_name = "USER")]
        github: Option<String>,
        /// Use the keys GitLab publishes for this account.
        #[arg(long, value_name = "USER")]
        gitlab: Option<String>,
        #[arg(long, value_parser = mode, default_value = "mirror")]
        mode: Mode,
        #[arg(long, default_value = paths::DEFAULT_SESSION)]
        session: String,
        /// A duration (2h, 90m) or a UTC time (2026-12-01T18:00); default 12h.
        #[arg(long)]
        expires: Option<String>,
        /// Addresses or CIDRs the guest may connect from.
        #[arg(long, value_delimiter = ',', value_name = "CIDR")]
        from: Vec<String>,
        /// pair-user (after `pairjail setup`) or authorized-keys (a managed block in your own file).
        #[arg(long, value_parser = via)]
        via: Option<Via>,
        /// relay (default) or direct (the guest's own jailed tmux client; pair-user mode only).
        #[arg(long, default_value = "relay", value_parser = ["relay", "direct"])]
        transport: String,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// List invites: name, mode, key type, SHA256 fingerprint, expiry, session.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Revoke a guest's invites (all sessions, or --session).
    Revoke {
        name: String,
        #[arg(long)]
        session: Option<String>,
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Remove invites of sessions that are not running, and expired ones.
    Clean {
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
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
    /// Print a profile as an OCI runtime config.json (Landlock only as an annotation).
    Oci {
        /// A profile name on the search path, or a file.
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// Set a profile parameter.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        param: Vec<String>,
        /// First host id of the user-namespace mappings (container 0 → it, the profile's id → it + 1).
        #[arg(long, default_value_t = 100000, value_name = "ID")]
        host_id_base: u32,
        /// The container's command (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List the profiles found on the search path and built in.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn invite(cmd: InviteCommand) -> commands::Outcome {
    use commands::invite as inv;
    match cmd {
        InviteCommand::Add {
            name,
            key,
            key_file,
            github,
            gitlab,
            mode,
            session,
            expires,
            from,
            via,
            transport,
            runtime_dir,
        } => inv::add(inv::AddArgs {
            name,
            source: inv::KeySource {
                key,
                key_file,
                github,
                gitlab,
            },
            mode,
            session,
            expires,
            from,
            via,
            runtime_dir,
            direct: transport == "direct",
        }),
        InviteCommand::List { json, runtime_dir } => inv::list(runtime_dir.as_deref(), json),
        InviteCommand::Revoke {
            name,
            session,
            runtime_dir,
        } => inv::revoke(&name, session.as_deref(), runtime_dir.as_deref()),
        InviteCommand::Clean { runtime_dir } => inv::clean(runtime_dir.as_deref()),
    }
}

pub fn run() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .first()
        .is_some_and(|a0| crate::guest::pair_shell::called_as_shell(a0))
    {
        // sshd runs us as the pair user's login shell: only `join`, as
        // pairjail wrote it, goes on; no shell ever runs.
        let own = std::env::current_exe().and_then(|p| p.canonicalize());
        let argv = own.map_err(|e| e.to_string()).and_then(|own| {
            crate::guest::pair_shell::join_argv(&args[1..], &own).map_err(|e| e.to_string())
        });
        match argv {
            Ok(argv) => args = argv.into_iter().map(Into::into).collect(),
            Err(e) => {
                eprintln!("pairjail: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
        Command::Start {
            session,
            allow,
            default_mode,
            detach,
            direct,
            invite,
            guest_users,
            runtime_dir,
            command,
        } => commands::session::start(commands::session::StartArgs {
            direct,
            invite,
            session,
            allow,
            default_mode,
            detach,
            runtime_dir,
            guest_users,
            command,
        }),
        Command::Invite(cmd) => invite(cmd),
        Command::AuthorizedKeys {
            user,
            key,
            key_type,
            runtime_dir,
        } => commands::invite::authorized_keys(&user, &key, &key_type, runtime_dir.as_deref()),
        Command::Setup(args) => commands::setup::run(args),
        Command::Doctor {
            json,
            pair_user,
            runtime_dir,
        } => commands::doctor::run(json, &pair_user, runtime_dir.as_deref()),
        Command::Attach {
            session,
            runtime_dir,
        } => commands::session::attach(&session, runtime_dir.as_deref()),
        Command::Stop {
            session,
            runtime_dir,
        } => commands::session::stop(&session, runtime_dir.as_deref()),
        Command::Status { json, runtime_dir } => {
            commands::session::status(runtime_dir.as_deref(), json)
        }
        Command::Join {
            host,
            session,
            guest,
            mode,
            runtime_dir,
            transport,
            profile,
            run,
        } => commands::join::join(commands::join::JoinArgs {
            run,
            host,
            session,
            guest,
            mode,
            runtime_dir,
            profile,
            direct: transport == "direct",
        }),
        Command::Broker {
            session,
            runtime_dir,
            allow,
            default_mode,
            guest_uids,
            direct,
        } => commands::session::broker(commands::session::BrokerArgs {
            session,
            runtime_dir,
            allow,
            default_mode,
            guest_uids,
            direct,
        }),
        Command::Relay { fd } => commands::join::relay(fd),
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
