//! `start --tunnel [user@]relay[:port]`: a host behind NAT keeps a reverse
//! tunnel to a relay it has an account on, so guests reach this machine's
//! sshd through `relay:PORT`. The system `ssh -N -R` does the work (the
//! host's own keys, known_hosts and ~/.ssh/config apply); the broker starts
//! it with the share, restarts it with back-off when it drops, and stops it
//! with the share. The child dies with the broker (PDEATHSIG) even if the
//! broker is killed, so no tunnel outlives its share. This file is the
//! tunnel as data (the ssh command, its status); `tunnel_task.rs` runs it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `ssh -v` says that is not a complaint.
pub const NOISE: [&str; 5] = [
    "debug",
    "OpenSSH_",
    "Authenticated to",
    "Transferred:",
    "Bytes per second:",
];

/// Back-off between attempts: doubled from the first, up to the last. A
/// tunnel that stayed up this long starts again from the first.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
pub const STABLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `[user@]relay` as the host gave it (an alias of ~/.ssh/config works).
    pub relay: String,
    /// The relay's sshd port, if given.
    pub relay_port: Option<u16>,
    /// Where the relay listens for guests: `[ADDR:]PORT`.
    pub bind: Option<String>,
    pub listen_port: u16,
    /// This machine's sshd port the tunnel leads to.
    pub to_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "--tunnel '{0}': expected [user@]relay[:port], e.g. me@relay.example.com or relay:2200"
    )]
    Spec(String),
    #[error("--tunnel-port '{0}': expected [ADDR:]PORT, e.g. 2222 or 127.0.0.1:2222")]
    Port(String),
}

/// Parses `--tunnel` and `--tunnel-port`.
pub fn parse(relay: &str, listen: &str, to_port: u16) -> Result<Spec, TunnelError> {
    let bad = || TunnelError::Spec(relay.escape_debug().to_string());
    let (who, port) = match relay.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, Some(p.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (relay, None),
    };
    let host = who.rsplit_once('@').map_or(who, |(u, h)| {
        if crate::users::check_user(u).is_err() {
            ""
        } else {
            h
        }
    });
    if host.is_empty() || crate::config::check_host_name(host).is_err() {
        return Err(bad());
    }
    let badp = || TunnelError::Port(listen.escape_debug().to_string());
    let (bind, listen_port) = match listen.rsplit_once(':') {
        Some((a, p)) => {
            let a = a.trim_start_matches('[').trim_end_matches(']');
            if a.parse::<std::net::IpAddr>().is_err() && a != "*" && a != "localhost" {
                return Err(badp());
            }
            (Some(a.to_string()), p.parse::<u16>().map_err(|_| badp())?)
        }
        None => (None, listen.parse::<u16>().map_err(|_| badp())?),
    };
    if listen_port == 0 {
        return Err(badp());
    }
    Ok(Spec {
        relay: who.to_string(),
        relay_port: port,
        bind,
        listen_port,
        to_port,
    })
}

impl Spec {
    /// The ssh command line (after `ssh`). BatchMode: nobody is there to
    /// answer a prompt; a relay whose host key is not yet known fails
    /// with ssh's own message, which `start` shows.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-N",
            "-T",
            "-v",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ConnectTimeout=15",
            // The forward must live in this process, which dies with the
            // share: never in a shared master connection, never forked off.
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "ForkAfterAuthentication=no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let listen = match &self.bind {
            Some(b) if b.contains(':') => format!("[{b}]:{}", self.listen_port),
            Some(b) => format!("{b}:{}", self.listen_port),
            None => self.listen_port.to_string(),
        };
        a.push("-R".into());
        a.push(format!("{listen}:127.0.0.1:{}", self.to_port));
        if let Some(p) = self.relay_port {
            a.push("-p".into());
            a.push(p.to_string());
        }
        a.push("--".into());
        a.push(self.relay.clone());
        a
    }

    /// The relay's real name, as ssh resolves an alias (`ssh -G`).
    pub fn relay_host(&self, ssh: &std::path::Path) -> String {
        let bare = self
            .relay
            .rsplit_once('@')
            .map_or(self.relay.as_str(), |(_, h)| h);
        let out = std::process::Command::new(ssh)
            .args(["-G", "--", bare])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        out.ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("hostname ").map(str::to_string))
            })
            .filter(|h| crate::config::check_host_name(h).is_ok())
            .unwrap_or_else(|| bare.to_string())
    }
}

/// What `status` shows of the tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `[user@]relay` as given.
    pub relay: String,
    pub listen_port: u16,
    /// `connecting`, `up` or `down` (waiting to try again).
    pub state: String,
    /// Times the tunnel came up again after dropping.
    pub reconnects: u32,
    /// ssh's last complaint, if any.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_become_one_ssh_command() {
        let s = parse("me@relay.example.com:2200", "2222", 22).unwrap();
        assert_eq!(s.relay, "me@relay.example.com");
        assert_eq!(s.relay_port, Some(2200));
        let argv = s.argv().join(" ");
        assert!(
            argv.contains("-R 2222:127.0.0.1:22 -p 2200 -- me@relay.example.com"),
            "{argv}"
        );
        assert!(argv.contains("BatchMode=yes") && argv.contains("ExitOnForwardFailure=yes"));
        let s = parse("relay", "127.0.0.1:2222", 2022).unwrap();
        assert!(
            s.argv()
                .join(" ")
                .contains("-R 127.0.0.1:2222:127.0.0.1:2022 -- relay")
        );
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "relay:99999",
            "Bad User@relay",
            "relay:x",
        ] {
            assert!(parse(bad, "2222", 22).is_err(), "{bad}");
        }
        for bad in ["0", "x", "evil host:22", "70000"] {
            assert!(parse("relay", bad, 22).is_err(), "{bad}");
        }
    }
}
