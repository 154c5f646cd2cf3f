//! The command line: one variant per subcommand, each with the `Args` of
//! its module in `commands/`, and the dispatch. Behaviour lives below.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::{
    self, audit, docs, doctor, exec, invite, join, moderate, probe, profile, schema, session, setup,
};

/// Share a tmux session over plain SSH with every guest locked in a jail.
#[derive(Debug, Parser)]
#[command(
    name = "pairjail",
    version,
    about,
    long_about = None,
    after_help = "Examples:
  pairjail start                                   share this directory; guests only watch
  pairjail invite add bob --github bob --mode pair invite a colleague who may type
  pairjail status                                  who is connected, and the line guests run
  pairjail kick bob                                disconnect a guest and revoke the invite
  pairjail stop                                    end the share; every guest is disconnected
  sudo pairjail setup --host alice                 one-time: a dedicated guest account
  pairjail doctor                                  what this machine can do, with fixes

`pairjail COMMAND --help` explains each command, with examples; `pairjail man` prints the manual."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Share a tmux session: start its own tmux server and the broker, then attach.
    Start(session::StartArgs),
    /// Invite guests: their keys, mode, session and expiry.
    #[command(subcommand)]
    Invite(invite::InviteCommand),
    /// sshd's AuthorizedKeysCommand (%u %k %t): a line only for a key invited to a live session.
    #[command(name = "authorized-keys")]
    AuthorizedKeys(invite::AuthorizedKeysArgs),
    /// One-time root setup of pair-user mode: the user, runtime dir and sshd config.
    Setup(setup::SetupArgs),
    /// Check the kernel, tmux, sshd and pairjail's own setup; print a fix for each problem.
    Doctor(doctor::DoctorArgs),
    /// Attach your terminal to a session you are sharing.
    ///
    /// In a jailed session your tmux client runs on a terminal pairjail
    /// holds, and what tmux sends reaches yours without clipboard writes,
    /// terminal strings or queries (guests command that tmux). Enter, `~`,
    /// `.` leaves even when tmux takes no key (`~~` types one `~`); the
    /// session goes on. Example: `pairjail attach --session pair`.
    Attach(session::SessionArgs),
    /// End a shared session: every guest is disconnected.
    Stop(session::SessionArgs),
    /// Show your shared sessions and who is connected.
    Status(session::StatusArgs),
    /// Disconnect a guest now (and revoke its invite unless --keep-invite).
    Kick(moderate::KickArgs),
    /// Change a connected guest's mode (mirror, pair, rogue).
    Mode(moderate::ModeArgs),
    /// Let a guest waiting at the door in (sessions started with --approve).
    Approve(moderate::ApproveArgs),
    /// Turn a guest waiting at the door away.
    Deny(moderate::DenyArgs),
    /// Read the audit log: verify its hash chain, show it, print its schema.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// sshd's forced command for a guest (written into authorized_keys, not typed).
    Join(join::JoinArgs),
    /// (internal) The broker daemon of one shared session; its config comes on stdin.
    #[command(name = "__broker", hide = true)]
    Broker,
    /// Validate, print and describe the sandbox profiles in profiles/.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Run a command inside the jail a profile describes.
    Exec(exec::ExecArgs),
    /// Try to escape a profile's jail (every attempt `probe --help` lists); exit 0 only if all are blocked.
    Probe(probe::ProbeArgs),
    /// (internal) One probe attempt, run inside the jail by `probe`.
    #[command(name = "__probe-attempt", hide = true)]
    ProbeAttempt(probe::AttemptArgs),
    /// Print the JSON Schema of a `--json` output.
    Schema(schema::SchemaArgs),
    /// Print a static shell completion script (bash, zsh, fish, elvish,
    /// powershell); `source <(PAIRJAIL_COMPLETE=bash pairjail)` also
    /// completes your session and profile names.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) for pairjail, or write one per subcommand.
    Man(docs::ManArgs),
}

/// sshd runs us as the pair user's login shell (`pair-shell -c CMD`):
/// only `join`, as pairjail wrote it, goes on; no shell ever runs.
fn shell_argv(args: &[std::ffi::OsString]) -> Result<Vec<std::ffi::OsString>, String> {
    let own = crate::exe::own().map_err(|e| e.to_string())?;
    crate::guest::pair_shell::join_argv(&args[1..], &own)
        .map(|argv| argv.into_iter().map(Into::into).collect())
        .map_err(|e| e.to_string())
}

pub fn run() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let as_shell = args
        .first()
        .is_some_and(|a0| crate::guest::pair_shell::called_as_shell(a0));
    if as_shell {
        match shell_argv(&args) {
            Ok(argv) => args = argv,
            Err(e) => {
                eprintln!("pairjail: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // `source <(PAIRJAIL_COMPLETE=bash pairjail)`: completion with your
    // sessions and profile names. Never for the pair shell (a guest's
    // login), whose arguments were replaced above.
    // Only when asked: CompleteEnv reads the current directory, a call the
    // jails' seccomp filters (where `__probe-attempt` runs) do not allow.
    let internal = args
        .get(1)
        .is_some_and(|a| a == "join" || a.to_string_lossy().starts_with("__"));
    if !as_shell
        && !internal
        && std::env::var_os("PAIRJAIL_COMPLETE").is_some_and(|v| !v.is_empty())
    {
        clap_complete::CompleteEnv::with_factory(|| docs::public(Cli::command()))
            .var("PAIRJAIL_COMPLETE")
            .bin("pairjail")
            .complete();
    }
    // With --json, a failure is JSON on stdout too: a script reads one stream.
    let json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    if let Some(command) = parse_hot(&args) {
        return finish(dispatch(command), json);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if json && !asked {
                print_error_json(2, e.kind().as_str().unwrap_or("invalid arguments"));
            }
            e.exit()
        }
    };
    finish(dispatch(cli.command), json)
}

/// The commands started once per guest or per jail: `join` (sshd's forced
/// command), `exec` and `__probe-attempt`. Building clap's definition of every subcommand took
/// about a fifth of a millisecond of each start, so these are first parsed
/// with a definition of their own subcommand only. Whatever that does not
/// parse cleanly (`--help`, a typo) is parsed again by the full definition,
/// so every message and help text is the full command line's.
fn parse_hot(args: &[std::ffi::OsString]) -> Option<Command> {
    use clap::FromArgMatches;
    let sub = hot_definition(args.get(1)?.to_str()?)?;
    let matches = clap::Command::new("pairjail")
        .subcommand(sub)
        .try_get_matches_from(args)
        .ok()?;
    Command::from_arg_matches(&matches).ok()
}

const HOT: [&str; 3] = ["join", "exec", "__probe-attempt"];

fn hot_definition(name: &str) -> Option<clap::Command> {
    use clap::Args;
    let sub = clap::Command::new(HOT.into_iter().find(|h| *h == name)?);
    Some(match name {
        "join" => join::JoinArgs::augment_args(sub),
        "exec" => exec::ExecArgs::augment_args(sub),
        _ => probe::AttemptArgs::augment_args(sub),
    })
}

fn dispatch(command: Command) -> commands::Outcome {
    match command {
        Command::Start(a) => session::start(a),
        Command::Invite(c) => invite::run(c),
        Command::AuthorizedKeys(a) => invite::authorized_keys(a),
        Command::Setup(a) => setup::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Attach(a) => session::attach(a),
        Command::Stop(a) => session::stop(a),
        Command::Status(a) => session::status(a),
        Command::Kick(a) => moderate::kick(a),
        Command::Mode(a) => moderate::mode(a),
        Command::Approve(a) => moderate::approve(a),
        Command::Deny(a) => moderate::deny(a),
        Command::Audit(c) => audit::run(c),
        Command::Join(a) => join::run(a),
        Command::Broker => session::broker(),
        Command::Profile(c) => profile::run(c),
        Command::Exec(a) => exec::run(a),
        Command::Probe(a) => probe::run(a),
        Command::ProbeAttempt(a) => probe::attempt(a),
        Command::Schema(a) => schema::run(a),
        Command::Completions(a) => docs::completions(a, Cli::command()),
        Command::Man(a) => docs::man(a, Cli::command()),
    }
}

/// A failure as `--json` callers read it, on stdout (schema: `error`).
fn print_error_json(code: u8, message: &str) {
    let out = commands::ErrorOutput {
        error: commands::ErrorBody {
            code,
            message: message.to_string(),
        },
    };
    // The message may quote another's file (a profile's parse error).
    if let Ok(text) = crate::json_line::pretty(&out) {
        println!("{text}");
    }
}

fn finish(result: commands::Outcome, json: bool) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(failure) => {
            if json {
                print_error_json(failure.code, &failure.message);
            }
            if !failure.message.is_empty() {
                eprintln!("pairjail: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--record` and `--audit-syslog` take their DIR or SOCKET or none.
    #[test]
    fn record_and_audit_syslog_need_no_value() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Start(a),
            }) => (a.record, a.audit_syslog),
            other => panic!("{args:?}: {other:?}"),
        };
        let (record, _) = parse(&["pairjail", "start", "--record", "--session", "s"]);
        assert_eq!(record, Some(None));
        let (record, _) = parse(&["pairjail", "start", "--record", "/tmp/r"]);
        assert_eq!(record, Some(Some("/tmp/r".into())));
        let (record, syslog) = parse(&["pairjail", "start", "--audit-syslog", "--approve"]);
        assert_eq!((record, syslog), (None, Some("/dev/log".into())));
    }

    /// Every flag and argument people can type says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "pairjail", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    fn argv(words: &[&str]) -> Vec<std::ffi::OsString> {
        std::iter::once("pairjail")
            .chain(words.iter().copied())
            .map(Into::into)
            .collect()
    }

    /// The hot commands' own parse gives what the full command line gives,
    /// and leaves everything it cannot parse (help, mistakes) to it.
    #[test]
    fn hot_commands_parse_as_the_full_command_line_does() {
        let parsed = [
            &["join", "--host", "alice", "--guest", "bob"][..],
            &[
                "join",
                "--host",
                "alice",
                "--session",
                "s",
                "--guest",
                "bob",
                "--mode",
                "pair",
                "--transport",
                "direct",
                "--profile",
                "p.toml",
                "--run",
                "12.34",
                "--key",
                "SHA256:x",
                "--runtime-dir",
                "/run/x",
            ],
            &[
                "exec",
                "--profile",
                "guest-relay",
                "--pass-fd",
                "3",
                "--param",
                "a=b",
                "--",
                "/bin/true",
                "--help",
            ],
            &["__probe-attempt", "tiocsti", "X=1", "Y=2"],
        ];
        for words in parsed {
            let full = Cli::try_parse_from(argv(words)).unwrap().command;
            let hot = parse_hot(&argv(words)).unwrap_or_else(|| panic!("{words:?}: not hot"));
            assert_eq!(format!("{hot:?}"), format!("{full:?}"), "{words:?}");
        }
        let refused = [
            &["join", "--help"][..],
            &["join", "--host", "alice"],
            &["join", "--host", "a", "--guest", "b", "--mode", "tyrant"],
            &["exec"],
            &["exec", "--profile"],
            &["exec", "--bogus", "--", "x"],
            &["exec", "--version"],
            // Everything required is there, and something more.
            &["__probe-attempt", "tiocsti", "--bogus"],
            &["exec", "--profile", "p", "--bogus", "--", "x"],
            &["join", "--host", "a", "--guest", "b", "extra"],
        ];
        for words in refused {
            assert!(parse_hot(&argv(words)).is_none(), "{words:?}");
            assert!(Cli::try_parse_from(argv(words)).is_err(), "{words:?}");
        }
        assert!(parse_hot(&argv(&["status"])).is_none());
    }

    /// Each hot command's own definition has the full definition's
    /// arguments, so the two cannot drift apart.
    #[test]
    fn hot_commands_define_the_same_arguments() {
        let full = Cli::command();
        let describe = |c: &clap::Command| {
            c.get_arguments()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
        };
        for name in HOT {
            let hot = hot_definition(name).map(|c| describe(&c));
            assert!(hot.is_some(), "{name}: no definition of its own");
            assert_eq!(hot, full.find_subcommand(name).map(describe), "{name}");
        }
    }
}
