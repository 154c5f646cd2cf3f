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
        after_help = "Examples:\n  pairjail audit verify ~/.local/state/pairjail/audit.jsonl\n  pairjail audit verify audit.jsonl --head 3f1c…   # the last hash, from syslog/journald\n  pairjail audit verify audit.jsonl --json\n  journalctl -t pairjail -o cat > copy.txt; pairjail audit verify audit.jsonl --syslog copy.txt\n\nA chain shows a change that was not followed by rewriting every later line,\nand cannot see lines cut from the end: compare the printed head with the\nsha256= of the last copy in syslog/journald (start --audit-syslog), or pass it\nas --head. Whoever can write the file can also send syslog a new head: --syslog\nchecks every line syslog holds of this log, which a rewrite cannot take back."
    )]
    Verify {
        /// The audit log (default: yours).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// The hash the last line must have (kept elsewhere, e.g. syslog).
        #[arg(long, value_name = "SHA256")]
        head: Option<String>,
        /// A copy of syslog's lines (a syslog file, or `journalctl -t
        /// pairjail -o cat` saved to a file): each line it holds of this
        /// log must be in the file as written.
        #[arg(long, value_name = "FILE")]
        syslog: Option<PathBuf>,
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
        AuditCommand::Verify {
            file,
            head,
            syslog,
            json,
        } => verify(file_or_default(file)?, head, syslog, json),
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

fn verify(file: PathBuf, head: Option<String>, syslog: Option<PathBuf>, json: bool) -> Outcome {
    let open = || {
        std::fs::File::open(&file)
            .map_err(|e| Failure::invalid(format!("audit log {}: {e}", file.display())))
    };
    let mut r = audit::verify(open()?, head.as_deref())
        .map_err(|e| Failure::failed(format!("audit log {}: {e}", file.display())))?;
    if let Some(copy) = &syslog {
        let said =
            |e: std::io::Error| Failure::invalid(format!("--syslog {}: {e}", copy.display()));
        let c = audit::chain::check_copy(open()?, std::fs::File::open(copy).map_err(said)?)
            .map_err(|e| Failure::failed(format!("audit log {}: {e}", file.display())))?;
        if r.problem.is_none() && c.checked == 0 {
            r.problem = Some(audit::chain::Problem {
                line: 0,
                what: format!(
                    "{} holds no line of this log (its machine and host): nothing was checked against it",
                    copy.display()
                ),
            });
        }
        if r.problem.is_none()
            && let Some(&first) = c.missing.first()
        {
            r.problem = Some(audit::chain::Problem {
                line: first,
                what: format!(
                    "syslog holds {} line(s) of this log that the file does not hold as written (seq {}): lines were changed or removed and the chain written again",
                    c.missing.len(),
                    c.missing
                        .iter()
                        .take(10)
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        r.copy = Some(c);
    }
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
            "{}: ok, {} line(s), chain head sha256:{}{}",
            file.display(),
            r.lines,
            r.head.as_deref().unwrap_or("(empty)"),
            r.copy
                .as_ref()
                .map(|c| format!(
                    ", all {} line(s) of it in the syslog copy are in the file",
                    c.checked
                ))
                .unwrap_or_default()
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
