//! `pairjail completions` and `pairjail man`. The CLI definition is handed
//! in by the caller, so this module does not depend on `cli`.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs, cmd: clap::Command) -> Outcome {
    let mut cmd = public(cmd);
    clap_complete::generate(a.shell, &mut cmd, "pairjail", &mut io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// The command tree people see: without the hidden internal subcommands
/// (`__broker`, `__probe-attempt`, which pairjail runs itself),
/// which clap's generators would otherwise offer and document.
pub fn public(cmd: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut out = clap::Command::new("pairjail")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        // No `help` subcommand: it has no page, and SEE ALSO would point
        // to a pairjail-help(1) that does not exist.
        .disable_help_subcommand(true)
        .subcommands(visible);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write pairjail.1 and pairjail-SUBCOMMAND.1 files into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn man(a: ManArgs, cmd: clap::Command) -> Outcome {
    let cmd = public(cmd);
    let main =
        main_page(&cmd).map_err(|e| Failure::failed(format!("cannot write man page: {e}")))?;
    match a.out {
        None => {
            use std::io::Write;
            io::stdout()
                .write_all(&main)
                .map_err(|e| Failure::failed(format!("cannot write man page: {e}")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
            let fail = |e: io::Error| {
                Failure::failed(format!("cannot write man pages to {}: {e}", dir.display()))
            };
            clap_mangen::generate_to(cmd, &dir).map_err(fail)?;
            crate::files::write_atomic(&dir.join("pairjail.1"), &main, 0o644).map_err(fail)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// pairjail(1): clap's sections, then the ones a man page is expected to
/// have. Every line of MAN_EXTRA is plain roff, written by hand.
fn main_page(cmd: &clap::Command) -> io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

const MAN_EXTRA: &str = r#".SH EXAMPLES
.TP
Share the current project; guests only watch:
\fBpairjail start\fR
.TP
Invite a colleague by their GitHub keys, able to type, for two hours:
\fBpairjail invite add bob \-\-github bob \-\-mode pair \-\-expires 2h\fR
.TP
Share from behind NAT through a relay you have an account on:
\fBpairjail start \-\-tunnel me@relay.example.com \-\-tunnel\-port 2222\fR
.TP
One-time setup of a dedicated guest account (root):
\fBsudo pairjail setup \-\-host alice \-\-public\-host dev.example.com\fR
.TP
Remove it again:
\fBsudo pairjail setup \-\-undo \-\-remove\-user\fR
.TP
Who is connected, for a script:
\fBpairjail status \-\-json\fR
.SH ENVIRONMENT
.TP
\fBPAIRJAIL_CONFIG\fR
The machine's config (default \fI/etc/pairjail/config.toml\fR).
.TP
\fBPAIRJAIL_RUNTIME_DIR\fR
Where shares and invites live; overrides the config, \fBXDG_RUNTIME_DIR\fR and the
private \fI$TMPDIR/pairjail\-UID\fR fallback.
.TP
\fBXDG_RUNTIME_DIR\fR, \fBTMPDIR\fR
Used for the runtime directory when there is no config.
.TP
\fBPAIRJAIL_PROFILE_PATH\fR
Extra directories searched for sandbox profiles, before
\fI~/.config/pairjail/profiles\fR and \fI/etc/pairjail/profiles\fR (never the
working directory). None may lie inside a jailed session's workspace.
.PP
\fBjoin\fR reads none of the variables above: sshd builds its environment, and a
guest adds to it wherever \fBAcceptEnv\fR allows.
.TP
\fBPAIRJAIL_AUDIT_LOG\fR, \fBPAIRJAIL_AUDIT_SYSLOG\fR
The audit log file, and a syslog socket that gets a copy of each line.
.TP
\fBTZ\fR
The time zone of local times given to \fB\-\-expires\fR.
.TP
\fBTMUX\fR
Set inside tmux: \fBstart\fR opens the share in a new window instead of nesting.
.SH FILES
.TP
\fI/etc/pairjail/config.toml\fR
Written by \fBpairjail setup\fR: pair user, runtime directory, who may host, public host,
sshd port, and what setup wrote (for \fB\-\-undo\fR).
.TP
\fI/run/pairjail/HOST/\fR
A host's shares (sockets, logs) and \fIinvites.toml\fR in pair-user mode.
.TP
\fI~/.ssh/authorized_keys\fR
In no-root mode, invites are a managed block of forced-command lines here.
.TP
\fI~/.config/pairjail/guests.toml\fR
Regular partners, invited with \fBstart \-\-invite NAME\fR.
.TP
\fI~/.local/state/pairjail/audit.jsonl\fR
The audit log (hash-chained JSON lines).
.TP
\fI/etc/pairjail/profiles/\fR
Sandbox profiles a security team sets for the machine.
.SH EXIT STATUS
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Something that should have worked did not (a share, sshd, the kernel); \fBdoctor\fR and
\fBaudit verify\fR also exit 1 when they find a problem.
.TP
\fB2\fR
Bad input: an argument, a file, a profile. The one line printed says how to fix it.
With \fB\-\-json\fR, failures are also printed as JSON on standard output.
"#;
