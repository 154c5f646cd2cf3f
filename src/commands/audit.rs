//! `pairjail audit verify / show / schema`: read the audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome, print_json};
use crate::audit::{self, AuditError, Shown};
use crate::terminal::printable;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 if no line was changed, removed or
    /// reordered; else exit 1 naming the first line that was.
    #[command(
        after_help = "Examples:\n  pairjail audit verify ~/.local/state/pairjail/audit.jsonl\n  pairjail audit verify audit.jsonl --head 3f1c…   # the last hash, from syslog/journald\n  pairjail audit verify audit.jsonl --json\n\nA chain shows a change that was not followed by rewriting every later line,\nand cannot see lines cut from the end: compare the printed head with the\nsha256= of the last copy in syslog/journald (start --audit-syslog), or pass it\nas --head."
    )]
    Verify {
        /// The audit log (default: yours).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// The hash the last line must have (kept elsewhere, e.g. syslog).
        #[arg(long, value_name = "SHA256")]
        head: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log for people: time, session, what happened.
    #[command(
        after_help = "Examples:\n  pairjail audit show\n  pairjail audit show --session review --since 2h\n  pairjail audit show --since 2026-11-21T09:00:00Z --json"
    )]
    Show {
        /// The audit log (default: yours).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// Only events since this RFC 3339 time or this long ago (2h, 1d).
        #[arg(long, value_name = "TIME|DURATION")]
        since: Option<String>,
        /// Print the lines as they are stored (JSON Lines).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema every audit line follows.
    Schema,
}

fn file_or_default(file: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match file {
        Some(f) => Ok(f),
        None => audit::default_path().map_err(Failure::invalid),
    }
}

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Since(_) | AuditError::NoHome => Failure::invalid(e),
            _ => Failure::failed(e),
        }
    }
}

pub fn run(cmd: AuditCommand) -> Outcome {
    match cmd {
        AuditCommand::Verify { file, head, json } => verify(file_or_default(file)?, head, json),
        AuditCommand::Show {
            file,
            session,
            since,
            json,
        } => show(file_or_default(file)?, session, since, json),
        AuditCommand::Schema => {
            print_json(&audit::schema())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(file: PathBuf, head: Option<String>, json: bool) -> Outcome {
    let f = std::fs::File::open(&file)
        .map_err(|e| Failure::invalid(format!("audit log {}: {e}", file.display())))?;
    let r = audit::verify(f, head.as_deref())
        .map_err(|e| Failure::failed(format!("audit log {}: {e}", file.display())))?;
    if json {
        print_json(&r)?;
    } else if let Some(p) = &r.problem {
        println!(
            "{}: line {}: {}",
            file.display(),
            p.line,
            printable(&p.what)
        );
    } else {
        println!(
            "{}: ok, {} line(s), chain head sha256:{}",
            file.display(),
            r.lines,
            r.head.as_deref().unwrap_or("(empty)")
        );
    }
    Ok(if r.problem.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(file: PathBuf, session: Option<String>, since: Option<String>, json: bool) -> Outcome {
    let since = since.as_deref().map(audit::parse_since).transpose()?;
    let lines = audit::read(&file, session.as_deref(), since)?;
    let mut bad = 0;
    for l in lines {
        match l {
            Shown::Line(l) if json => {
                // Escaped as the log itself is: a reason can quote a guest.
                println!(
                    "{}",
                    crate::json_line::escaped(&l).map_err(Failure::failed)?
                )
            }
            Shown::Line(l) => println!(
                "{}  {:<12} {}",
                printable(&l.time),
                printable(&l.session),
                printable(&l.event.describe())
            ),
            Shown::Bad { line, why } => {
                bad += 1;
                // The parser quotes the line back: whatever it holds is
                // shown, not obeyed.
                eprintln!(
                    "pairjail: {}: line {line} is not an audit line: {}",
                    file.display(),
                    printable(&why.to_string())
                );
            }
        }
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
