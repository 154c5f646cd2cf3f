//! How a guest reaches this machine: the exact `ssh -t USER@HOST -p PORT`
//! line, and the host key fingerprints the host reads out so the guest
//! can check them at ssh's first-connection prompt.
//!
//! The port is what setup found (`sshd -T`, kept in the config), else what
//! sshd's own configuration files say, else 22. The name is
//! `--public-host`, else the config's `public_host`, else this machine's
//! host name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;

const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const DEFAULT_HOST_KEYS: [&str; 3] = [
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_rsa_key",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reach {
    /// The Unix user guests log in as.
    pub user: String,
    /// The name or address guests connect to.
    pub host: String,
    pub port: u16,
    /// `TYPE SHA256:…` of this machine's sshd host keys.
    pub host_keys: Vec<String>,
    /// Set when guests come through a relay (`start --tunnel`).
    #[serde(default)]
    pub via_relay: bool,
}

impl Reach {
    /// The line the guest runs (`-p` apart, so an IPv6 address needs no
    /// brackets: ssh would not strip them from `user@[::1]`).
    pub fn line(&self) -> String {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        format!("ssh -t {}@{host} -p {}", self.user, self.port)
    }

    /// The lines to print under a heading: the command and the keys.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!("guests join with: {}", self.line())];
        if !self.host_keys.is_empty() {
            out.push(
                "read out this machine's host key so they can check ssh's first prompt:".into(),
            );
            out.extend(self.host_keys.iter().map(|k| format!("  {k}")));
        }
        out
    }
}

/// How guests reach this machine directly: `user` is the account they log
/// in as (the pair user, or the host's own in no-root mode).
pub fn direct(user: &str, public_host: Option<&str>, config: Option<&SystemConfig>) -> Reach {
    let host = public_host
        .map(str::to_string)
        .or_else(|| config.and_then(|c| c.public_host.clone()))
        .unwrap_or_else(host_name);
    let port = config.and_then(|c| c.port).unwrap_or_else(sshd_port);
    Reach {
        user: user.to_string(),
        host,
        port,
        host_keys: host_keys(),
        via_relay: false,
    }
}

/// The account guests log in as: the config's pair user when this host
/// may host there, else the host's own account (no-root mode).
pub fn guest_user(host: &str, config: Option<&SystemConfig>) -> String {
    match config {
        Some(c) if c.may_host(host) => c.pair_user.clone(),
        _ => host.to_string(),
    }
}

pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| crate::config::check_host_name(h).is_ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The first `Port` of sshd's configuration (outside any `Match`), read
/// the way sshd reads it: the main file, then what it includes. A host
/// cannot run `sshd -T` without root (it needs the private host keys).
pub fn sshd_port() -> u16 {
    port_in(Path::new(SSHD_CONFIG), 0).unwrap_or(22)
}

fn port_in(file: &Path, depth: u8) -> Option<u16> {
    if depth > 4 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let key = key.to_ascii_lowercase();
        if key == "match" {
            return None;
        }
        if key == "port" {
            return words.next()?.parse().ok();
        }
        if key == "include" {
            for pattern in words {
                let full = if Path::new(pattern).is_absolute() {
                    PathBuf::from(pattern)
                } else {
                    Path::new("/etc/ssh").join(pattern)
                };
                let Ok(found) = glob::glob(&full.to_string_lossy()) else {
                    continue;
                };
                let mut files: Vec<PathBuf> = found.flatten().collect();
                files.sort();
                if let Some(p) = files.iter().find_map(|f| port_in(f, depth + 1)) {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// `TYPE SHA256:…` for each host key whose public half is readable.
pub fn host_keys() -> Vec<String> {
    DEFAULT_HOST_KEYS
        .iter()
        .filter_map(|k| std::fs::read_to_string(format!("{k}.pub")).ok())
        .filter_map(|text| ssh_key::PublicKey::from_openssh(text.trim()).ok())
        .map(|k| {
            format!(
                "{} {}",
                k.algorithm().as_str(),
                k.fingerprint(ssh_key::HashAlg::Sha256)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_user_host_and_port() {
        let r = Reach {
            user: "pair".into(),
            host: "dev.example.com".into(),
            port: 2222,
            host_keys: vec![],
            via_relay: false,
        };
        assert_eq!(r.line(), "ssh -t pair@dev.example.com -p 2222");
        let v6 = Reach {
            host: "::1".into(),
            ..r
        };
        assert_eq!(v6.line(), "ssh -t pair@::1 -p 2222");
    }

    #[test]
    fn the_port_comes_from_the_first_port_line_or_an_include() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("sshd_config");
        let inc = d.path().join("d");
        std::fs::create_dir(&inc).unwrap();
        std::fs::write(inc.join("10-port.conf"), "Port 2200\n").unwrap();
        std::fs::write(
            &main,
            format!("# x\nInclude {}/*.conf\nPort 22\n", inc.display()),
        )
        .unwrap();
        assert_eq!(port_in(&main, 0), Some(2200));
        std::fs::write(&main, "Match User x\nPort 1\n").unwrap();
        assert_eq!(port_in(&main, 0), None);
    }
}
