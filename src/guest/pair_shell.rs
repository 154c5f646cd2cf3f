//! The pair user's login shell. `pairjail setup` makes `pair-shell` a link
//! to the pairjail binary, and the binary behaves as this shell when called
//! by that name. sshd runs the forced command as `pair-shell -c "COMMAND"`;
//! no shell ever runs: COMMAND must be exactly `[exec] <this binary> join`
//! followed by the options pairjail itself writes, each once, split here
//! by the same POSIX quoting rules `keys::line` quotes with. Anything else,
//! an interactive login included, gets one line and exit status 1.

use std::ffi::{OsStr, OsString};
use std::path::Path;

pub const NAME: &str = "pair-shell";

/// The join options a forced command may carry; each takes a value.
const OPTIONS: &[&str] = &[
    "--host",
    "--session",
    "--guest",
    "--mode",
    "--runtime-dir",
    "--transport",
    "--run",
    "--key",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShellError {
    #[error("this account only joins pairjail sessions (ssh -t to a host that invited you)")]
    NotAForcedCommand,
    #[error("refused: the command is not `pairjail join` as pairjail writes it ({0})")]
    Refused(String),
}

/// Was this process started under the shell's name (`-pair-shell` for a
/// login shell)?
pub fn called_as_shell(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.trim_start_matches('-') == NAME)
}

/// The argv for pairjail's own parser (`pairjail join …`), from the
/// shell's arguments (`-c COMMAND`). `own` is this binary's real path.
pub fn join_argv(args: &[OsString], own: &Path) -> Result<Vec<String>, ShellError> {
    let [flag, command] = args else {
        return Err(ShellError::NotAForcedCommand);
    };
    if flag != "-c" {
        return Err(ShellError::NotAForcedCommand);
    }
    let refused = |why: &str| ShellError::Refused(why.to_string());
    let command = command.to_str().ok_or_else(|| refused("not UTF-8"))?;
    if command.chars().any(|c| c.is_control()) {
        return Err(refused("control characters"));
    }
    let words = shlex::split(command).ok_or_else(|| refused("unbalanced quotes"))?;
    let mut words = words.as_slice();
    if words.first().is_some_and(|w| w == "exec") {
        words = &words[1..];
    }
    let [bin, sub, rest @ ..] = words else {
        return Err(refused("too short"));
    };
    let same = Path::new(bin).canonicalize().ok().as_deref() == Some(own);
    if !same {
        return Err(refused("another program"));
    }
    if sub != "join" {
        return Err(refused("not join"));
    }
    let mut out = vec!["pairjail".to_string(), "join".to_string()];
    let mut seen = Vec::new();
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        if !OPTIONS.contains(&opt.as_str()) || seen.contains(opt) {
            return Err(ShellError::Refused(format!(
                "option {}",
                opt.escape_debug()
            )));
        }
        let value = it.next().ok_or_else(|| refused("option without a value"))?;
        if value.is_empty() || value.starts_with('-') {
            return Err(refused("option value"));
        }
        seen.push(opt.clone());
        out.push(opt.clone());
        out.push(value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &str) -> Vec<OsString> {
        vec!["-c".into(), cmd.into()]
    }

    #[test]
    fn only_join_as_pairjail_writes_it_passes() {
        let own = std::env::current_exe().unwrap().canonicalize().unwrap();
        let b = own.display().to_string();
        let ok = join_argv(
            &args(&format!(
                "exec {b} join --host alice --session pair --guest bob --mode mirror --runtime-dir '/run/pair jail' --run 12.34 --key SHA256:abc+/9"
            )),
            &own,
        )
        .unwrap();
        assert_eq!(ok[..2], ["pairjail", "join"]);
        assert!(ok.contains(&"/run/pair jail".to_string()));
        for bad in [
            format!("{b} join ; id"),
            format!("{b} join --host a; id"),
            format!("{b} join --host a && id"),
            format!("{b} join --host a --profile /tmp/x"),
            format!("{b} join --host a --host b"),
            format!("{b} join --guest --profile"),
            format!("{b} join --host 'a"),
            format!("{b} join --host a\nid"),
            format!("{b} exec --profile x -- sh"),
            "/bin/sh -c id".to_string(),
            format!("{b}x join --host a"),
            String::new(),
        ] {
            assert!(join_argv(&args(&bad), &own).is_err(), "{bad:?}");
        }
        assert_eq!(
            join_argv(&[], &own),
            Err(ShellError::NotAForcedCommand),
            "an interactive login"
        );
        assert!(called_as_shell(OsStr::new("-pair-shell")));
        assert!(called_as_shell(OsStr::new(
            "/usr/local/lib/pairjail/pair-shell"
        )));
        assert!(!called_as_shell(OsStr::new("pairjail")));
    }
}
