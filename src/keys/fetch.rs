//! Keys published by a forge: `https://github.com/USER.keys` and
//! `https://gitlab.com/USER.keys`. The base URLs are configurable
//! (`PAIRJAIL_GITHUB_URL`, `PAIRJAIL_GITLAB_URL`) for GitHub Enterprise,
//! self-hosted GitLab and tests.

use std::time::Duration;

use super::key::{self, GuestKey};

/// 10 s, or `PAIRJAIL_FETCH_TIMEOUT_SECS`.
pub fn timeout() -> Duration {
    let secs = std::env::var("PAIRJAIL_FETCH_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

#[derive(Debug, Clone, Copy)]
pub enum Forge {
    GitHub,
    GitLab,
}

impl Forge {
    fn base(self) -> String {
        let (var, default) = match self {
            Forge::GitHub => ("PAIRJAIL_GITHUB_URL", "https://github.com"),
            Forge::GitLab => ("PAIRJAIL_GITLAB_URL", "https://gitlab.com"),
        };
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.into())
    }

    fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "GitHub",
            Forge::GitLab => "GitLab",
        }
    }
}

fn check_account(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid account name '{}'", user.escape_debug()))
    }
}

pub fn keys_of(forge: Forge, user: &str) -> Result<Vec<GuestKey>, String> {
    check_account(user)?;
    let url = format!("{}/{user}.keys", forge.base().trim_end_matches('/'));
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout()))
        .http_status_as_error(false)
        .build();
    // Host names go through getent, never the static binary's own
    // getaddrinfo (see `crate::lookup`).
    let agent = ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        crate::lookup::Resolver,
    );
    let mut resp = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => {
            format!("timed out after {} s fetching {url}", timeout().as_secs())
        }
        e => format!("cannot fetch {url}: {e}"),
    })?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(format!(
            "{} user '{user}' does not exist ({url}: 404)",
            forge.name()
        ));
    }
    if status != 200 {
        return Err(format!("{url} answered HTTP {status}"));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    let keys = key::parse_many(&body).map_err(|e| format!("{url}: {e}"))?;
    if keys.is_empty() {
        return Err(format!("{} user '{user}' has no public keys", forge.name()));
    }
    Ok(keys)
}
