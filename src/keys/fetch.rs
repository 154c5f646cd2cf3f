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

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid account name '{0}'")]
    Account(String),
    #[error("timed out after {secs} s fetching {url}")]
    Timeout { url: String, secs: u64 },
    #[error("cannot fetch {url}: {message}")]
    Http { url: String, message: String },
    #[error("{forge} user '{user}' does not exist ({url}: 404)")]
    NoUser {
        forge: &'static str,
        user: String,
        url: String,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Keys { url: String, message: String },
    #[error("{forge} user '{user}' has no public keys")]
    NoKeys { forge: &'static str, user: String },
    #[error(
        "{url}: keys are fetched over https only (plain http only from this machine, 127.0.0.1 or localhost); fix the forge's URL"
    )]
    Insecure { url: String },
}

/// Plain http is for a forge on this machine (a mirror, tests); anything
/// else could be answered by whoever sits on the way.
fn local_http(url: &str) -> bool {
    url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split('/').next().unwrap_or("");
        // `localhost:x@elsewhere` names elsewhere.
        let host = authority.split(':').next().unwrap_or("");
        !authority.contains('@') && matches!(host, "127.0.0.1" | "localhost")
    })
}

fn check_account(user: &str) -> Result<(), FetchError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(FetchError::Account(user.escape_debug().to_string()))
    }
}

pub fn keys_of(forge: Forge, user: &str) -> Result<Vec<GuestKey>, FetchError> {
    check_account(user)?;
    let url = format!("{}/{user}.keys", forge.base().trim_end_matches('/'));
    // Keys are who gets in: only over TLS, and only from the forge asked
    // (a redirect, even to plain http or another host, is not followed).
    let local = local_http(&url);
    if !local && !url.starts_with("https://") {
        return Err(FetchError::Insecure { url });
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout()))
        .http_status_as_error(false)
        .https_only(!local)
        .max_redirects(0)
        .build();
    // Host names go through getent, never the static binary's own
    // getaddrinfo (see `crate::lookup`).
    let agent = ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        crate::lookup::Resolver,
    );
    let mut resp = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => FetchError::Timeout {
            url: url.clone(),
            secs: timeout().as_secs(),
        },
        e => FetchError::Http {
            url: url.clone(),
            message: e.to_string(),
        },
    })?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(FetchError::NoUser {
            forge: forge.name(),
            user: user.to_string(),
            url,
        });
    }
    if status != 200 {
        return Err(FetchError::Status { url, status });
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| FetchError::Http {
            url: url.clone(),
            message: format!("cannot read the body: {e}"),
        })?;
    let keys = key::parse_many(&body).map_err(|message| FetchError::Keys {
        url: url.clone(),
        message,
    })?;
    if keys.is_empty() {
        return Err(FetchError::NoKeys {
            forge: forge.name(),
            user: user.to_string(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_from_this_machine() {
        assert!(local_http("http://127.0.0.1:8080/bob.keys"));
        assert!(local_http("http://localhost/bob.keys"));
        assert!(!local_http("http://github.example.com/bob.keys"));
        assert!(!local_http("http://127.0.0.1.evil.example/bob.keys"));
        assert!(!local_http("http://localhost:x@evil.example/bob.keys"));
        assert!(!local_http("https://github.com/bob.keys"));
    }
}
