//! The authorized_keys line of an invite, quoted so that nothing in it can
//! break out of the forced command:
//! `restrict,pty,expiry-time="…",from="…",tunnel="…",command="…" TYPE KEY pairjail:SESSION:GUEST`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use super::key::GuestKey;
use crate::broker::liveness::Run;
use crate::profile::Mode;

#[derive(Debug, Clone)]
pub struct Forced {
    pub binary: PathBuf,
    pub host: String,
    pub session: String,
    pub guest: String,
    pub mode: Mode,
    pub runtime_dir: PathBuf,
    /// `--transport direct`: the guest's own tmux client (pair-user mode only).
    pub direct: bool,
    /// The broker run the invite is bound to; join checks it is still live.
    pub run: Option<Run>,
}

/// Quotes one word for the POSIX shell sshd runs the command with.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Escapes a value for a double-quoted authorized_keys option. sshd
/// undoes `\"` and nothing else (OpenSSH's `opt_dequote`): a backslash
/// stays as it is, so doubling it would put two in the command. (A value
/// ending in a backslash cannot be written; a command ends with its key's
/// fingerprint.)
pub fn option_escape(s: &str) -> String {
    s.replace('"', "\\\"")
}

/// An option's quoted value as sshd reads it, from just after its opening
/// quote: the value and the rest after the closing quote.
fn option_dequote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' if chars.peek().is_some_and(|&(_, n)| n == '"') => {
                chars.next();
                out.push('"');
            }
            c => out.push(c),
        }
    }
    None
}

/// An authorized_keys option: its name, and its value if it has one.
type Opt<'a> = (&'a str, Option<String>);

/// A line's options as sshd reads them, and the rest of the line after
/// them: the key and its comment.
fn options_of(line: &str) -> Option<(Vec<Opt<'_>>, &str)> {
    let mut options = Vec::new();
    let mut rest = line;
    loop {
        let end = rest.find(['=', ',', ' ', '\t'])?;
        let (name, after) = rest.split_at(end);
        let (value, after) = match after.strip_prefix("=\"") {
            Some(quoted) => {
                let (v, after) = option_dequote(quoted)?;
                (Some(v), after)
            }
            None => (None, after),
        };
        options.push((name, value));
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Some((options, after.trim_start())),
        }
    }
}

/// The `command="…"` of a line, as sshd hands it to the shell.
fn command_of(line: &str) -> Option<String> {
    options_of(line)?
        .0
        .into_iter()
        .find_map(|(name, value)| (name == "command").then_some(value).flatten())
}

/// The key of an invite line (type, base64 and comment), after its
/// options. (ssh-key's own parser cuts the options at their first space,
/// which a forced command has.)
pub fn key_of(line: &str) -> Option<&str> {
    options_of(line)
        .map(|(_, key)| key)
        .filter(|k| !k.is_empty())
}

/// The runtime directory an invite line's forced command names, read the
/// way sshd and the shell read it.
pub fn runtime_of(line: &str) -> Option<PathBuf> {
    word_after(line, "--runtime-dir").map(PathBuf::from)
}

/// The host an invite line's forced command names.
pub fn host_of(line: &str) -> Option<String> {
    word_after(line, "--host")
}

/// The word after the first `flag` of a line's forced command.
fn word_after(line: &str, flag: &str) -> Option<String> {
    let mut words = shlex::split(&command_of(line)?)?.into_iter();
    words.find(|w| w == flag)?;
    words.next()
}

impl Forced {
    /// The command for a line of `key` (its fingerprint travels to the
    /// broker, so the host sees which key a guest logged in with).
    pub fn command(&self, key: Option<&str>) -> String {
        // `exec`: whatever shell sshd hands this to (the host's own login
        // shell in no-root mode) replaces itself with join instead of
        // staying behind, unconfined, in the guest's session.
        let words = [
            "exec".into(),
            self.binary.display().to_string(),
            "join".into(),
            "--host".into(),
            self.host.clone(),
            "--session".into(),
            self.session.clone(),
            "--guest".into(),
            self.guest.clone(),
            "--mode".into(),
            self.mode.to_string(),
            "--runtime-dir".into(),
            self.runtime_dir.display().to_string(),
        ];
        let mut words = words.to_vec();
        if self.direct {
            words.extend(["--transport".into(), "direct".into()]);
        }
        if let Some(run) = self.run {
            words.extend(["--run".into(), run.to_string()]);
        }
        if let Some(k) = key {
            words.extend(["--key".into(), k.to_string()]);
        }
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// sshd's expiry-time format, in UTC.
pub fn expiry_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.chars().filter(|c| c.is_ascii_digit()).collect::<String>() + "Z"
}

/// `from="…"` takes addresses and CIDRs only (no host names, no negation).
pub fn check_cidr(s: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid --from entry '{}': expected an address or CIDR such as 10.0.0.0/8",
            s.escape_debug()
        )
    };
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if let Some(p) = prefix {
        let p: u8 = p.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if p > max {
            return Err(bad());
        }
    }
    Ok(())
}

/// Whether `ip` is within `entry`, an address or CIDR [`check_cidr`]
/// accepts (sshd's `from=` with such entries); false for anything else.
pub fn cidr_contains(entry: &str, ip: IpAddr) -> bool {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok()),
        None => (entry, None),
    };
    // An IPv4 peer may come as an IPv4-mapped IPv6 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (addr.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(net)), IpAddr::V4(ip)) => {
            let p = prefix.unwrap_or(32);
            p <= 32 && {
                let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
        }
        (Ok(IpAddr::V6(net)), IpAddr::V6(ip)) => {
            let p = prefix.unwrap_or(128);
            p <= 128 && {
                let mask = u128::MAX.checked_shl(128 - p).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
        }
        _ => false,
    }
}

/// The one renderer of an invite's line. Its fields were validated, and
/// the result is checked again: one line, starting with `restrict,`.
pub fn render(
    f: &Forced,
    key: &GuestKey,
    expires: SystemTime,
    from: &[String],
) -> Result<String, String> {
    let line = render_unchecked(f, key, expires, from);
    if !is_well_formed(&line) {
        return Err(format!(
            "refusing to write a malformed line for guest {}",
            f.guest.escape_debug()
        ));
    }
    Ok(line)
}

/// One line, no control characters, starting with `restrict,`.
pub fn is_well_formed(line: &str) -> bool {
    line.starts_with("restrict,") && !line.chars().any(|c| c.is_control())
}

/// Has this invite line's `expiry-time` passed? sshd refuses such a line
/// already; a rewrite drops it, so lines of a runtime directory that is
/// gone (a `/tmp` cleared at reboot, a desktop login's ended) do not stay
/// in the block for good. A line without a readable time is not expired.
pub fn has_expired(line: &str, now: SystemTime) -> bool {
    const OPTION: &str = ",expiry-time=\"";
    let Some(at) = line.find(OPTION) else {
        return false;
    };
    let rest = &line[at + OPTION.len()..];
    let Some(end) = rest.find('"') else {
        return false;
    };
    let when = &rest[..end];
    // Both in sshd's fixed-width UTC form, so they compare as text; sshd
    // still takes the key in the very second it names.
    when.len() == 15
        && when.ends_with('Z')
        && when[..14].bytes().all(|b| b.is_ascii_digit())
        && when < expiry_time(now).as_str()
}

/// An invite line of some runtime directory's store (not a line someone
/// typed into the block, which a rewrite drops).
pub fn is_invite_line(line: &str) -> bool {
    is_well_formed(line) && line.contains(" --runtime-dir ")
}

/// sshd's highest tunnel device number (`SSH_TUNID_MAX`).
const NO_TUNNEL: u32 = 0x7fff_fffd;

fn render_unchecked(f: &Forced, key: &GuestKey, expires: SystemTime, from: &[String]) -> String {
    let mut opts = vec![
        "restrict".to_string(),
        "pty".to_string(),
        format!("expiry-time=\"{}\"", expiry_time(expires)),
    ];
    if !from.is_empty() {
        opts.push(format!("from=\"{}\"", option_escape(&from.join(","))));
    }
    // `restrict` does not cover `ssh -w`: where sshd allows tunnels, the
    // guest got a network link through any tun device the login's user
    // owns, with no jail. Pinned to the highest device sshd takes, which
    // only root could make, no tunnel opens.
    opts.push(format!("tunnel=\"{NO_TUNNEL}\""));
    opts.push(format!(
        "command=\"{}\"",
        option_escape(&f.command(Some(&key.fingerprint)))
    ));
    format!(
        "{} {} pairjail:{}:{}",
        opts.join(","),
        key.openssh,
        f.session,
        f.guest
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn an_address_is_within_a_from_entry_as_sshd_reads_it() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert!(cidr_contains("10.0.0.0/8", ip("10.1.2.3")));
        assert!(!cidr_contains("10.0.0.0/8", ip("11.1.2.3")));
        assert!(cidr_contains("192.0.2.7", ip("192.0.2.7")));
        assert!(!cidr_contains("192.0.2.7", ip("192.0.2.8")));
        assert!(cidr_contains("0.0.0.0/0", ip("203.0.113.9")));
        assert!(cidr_contains("10.0.0.0/8", ip("::ffff:10.9.9.9")));
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8::1")));
        assert!(!cidr_contains("2001:db8::/32", ip("2001:db9::1")));
        assert!(!cidr_contains("10.0.0.0/8", ip("2001:db8::1")));
        assert!(!cidr_contains("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!cidr_contains("not-an-address", ip("10.0.0.1")));
    }

    #[test]
    fn quoting_keeps_every_word_one_word() {
        assert_eq!(shell_quote("/usr/bin/pairjail"), "/usr/bin/pairjail");
        assert_eq!(shell_quote("/opt/my dir/pj"), "'/opt/my dir/pj'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(option_escape(r#"a"b\c"#), r#"a\"b\c"#);
    }

    #[test]
    fn a_line_names_its_runtime_directory_as_sshd_and_the_shell_read_it() {
        let key = crate::keys::key::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAJCqDurRXeJWQUTSTJqfQpE6rCPegMRmesffVkruZxh c",
        )
        .unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let from = ["10.0.0.0/8".to_string(), "::1".to_string()];
        for rt in [
            "/run/user/1/pairjail",
            "/tmp/a \"b\" it's",
            r#"/tmp/back\slash\"quote"#,
            "/tmp/--runtime-dir x",
        ] {
            let line = render(&forced_in(rt), &key, t, &from).unwrap();
            assert_eq!(runtime_of(&line), Some(PathBuf::from(rt)), "{line}");
            assert_eq!(host_of(&line).as_deref(), Some("h"));
            assert_eq!(
                key_of(&line),
                Some(format!("{} pairjail:s:g", key.openssh).as_str())
            );
            assert!(is_invite_line(&line));
        }
        assert_eq!(runtime_of("ssh-ed25519 AAAA typed-by-hand"), None);
        assert_eq!(
            runtime_of(r#"restrict,command="unbalanced ssh-ed25519 AAAA"#),
            None
        );
        assert!(!is_invite_line("ssh-ed25519 AAAA typed-by-hand"));
    }

    /// A mirror invite's command in `runtime`, for tests here and in the
    /// registry.
    pub(in crate::keys) fn forced_in(runtime: &str) -> Forced {
        Forced {
            binary: "/usr/bin/pairjail".into(),
            host: "h".into(),
            session: "s".into(),
            guest: "g".into(),
            mode: Mode::Mirror,
            runtime_dir: runtime.into(),
            direct: false,
            run: None,
        }
    }

    #[test]
    fn a_line_expires_at_its_expiry_time() {
        let key =
            super::super::key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let f = forced_in("/tmp/pj");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let second = std::time::Duration::from_secs(1);
        let line = render(&f, &key, t, &[]).unwrap();
        assert!(!has_expired(&line, t - second));
        assert!(!has_expired(&line, t));
        assert!(has_expired(&line, t + second));
        // A name that looks like the option changes nothing: only the
        // option itself counts, and an unreadable time never expires.
        assert!(!has_expired("restrict,pty ssh-ed25519 AAAA", t));
        assert!(!has_expired(
            "restrict,expiry-time=\"2020\" ssh-ed25519 AAAA",
            t
        ));
    }

    #[test]
    fn expiry_is_sshd_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(expiry_time(t), "20270115080000Z");
    }

    #[test]
    fn cidrs_are_checked() {
        for ok in ["10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32"] {
            assert!(check_cidr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "example.com",
            "!10.0.0.1",
            "10.0.0.1/x",
            "1.2.3.4\",command=\"sh",
        ] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_has_restrict_pty_expiry_and_the_quoted_command() {
        let key =
            super::super::key::parse(include_str!("../../tests/data/keys/ed25519.pub")).unwrap();
        let f = Forced {
            binary: "/opt/pair jail/pairjail".into(),
            host: "alice".into(),
            session: "pair".into(),
            guest: "bob".into(),
            mode: Mode::Mirror,
            runtime_dir: "/run/pairjail".into(),
            direct: false,
            run: Some(Run { pid: 42, start: 7 }),
        };
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let line = render(&f, &key, t, &["10.0.0.0/8".into()]).unwrap();
        assert_eq!(
            line,
            format!(
                "restrict,pty,expiry-time=\"20270115080000Z\",from=\"10.0.0.0/8\",tunnel=\"2147483645\",command=\"exec '/opt/pair jail/pairjail' join --host alice --session pair --guest bob --mode mirror --runtime-dir /run/pairjail --run 42.7 --key {}\" {} pairjail:pair:bob",
                key.fingerprint, key.openssh
            )
        );
        let evil = Forced {
            guest: "bob\nssh-ed25519 AAAA".into(),
            ..f
        };
        assert!(render(&evil, &key, t, &[]).is_err());
    }
}
