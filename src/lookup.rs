//! Name lookups through `getent`, a dynamically linked system program.
//! pairjail is a static glibc binary (it runs itself inside jails with no
//! filesystem), and a static glibc must not load NSS modules: a lookup of
//! a user in LDAP/SSSD or of a host through `getaddrinfo` could `dlopen` a
//! module of another glibc and crash. `getent` does the NSS part in its
//! own process, with the machine's own modules.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// `getent DATABASE KEY`'s output, or None when the key is unknown or
/// getent is missing. Keys are passed as one argument, never to a shell.
fn getent(database: &str, key: &str) -> Option<String> {
    if key.is_empty() || key.starts_with('-') {
        return None;
    }
    // A fixed path: callers (sshd's AuthorizedKeysCommand, a guest's
    // join) must not find a different getent through PATH.
    let program = ["/usr/bin/getent", "/bin/getent"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    // No environment: getent needs none, and the caller's (a guest's
    // login) is not for a child that runs, dumpable, as the same user.
    let mut child = Command::new(program)
        .env_clear()
        .args([database, "--", key])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read on a thread of its own (a large group fills the pipe), and
    // waited for at most LIMIT: a name service that never answers (a
    // black-holed resolver, a hung LDAP server) held `invite add` and
    // sshd's keys command for as long as it liked (a read-only hunt).
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let read =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut stdout, MAX_OUTPUT), &mut buf);
        let _ = tx.send(read.map(|_| buf));
    });
    let Ok(Ok(out)) = rx.recv_timeout(LIMIT) else {
        let _ = child.kill();
        let _ = child.wait();
        // The pipe closed with getent (unless a helper of its kept it):
        // the thread ends, and is joined when it does.
        if !matches!(
            rx.recv_timeout(std::time::Duration::from_secs(1)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        ) {
            let _ = reader.join();
        }
        return None;
    };
    // Its answer is in: the thread is ending; joined, so the caller is
    // single-threaded again (`join` starts a jail after a lookup).
    let _ = reader.join();
    let status = child.wait().ok()?;
    status
        .success()
        .then(|| String::from_utf8_lossy(&out).into_owned())
}

/// How long one lookup may take.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What is read of one lookup's answer.
const MAX_OUTPUT: u64 = 4 << 20;

/// One passwd line for a name or a uid (as text), from every NSS source.
pub fn passwd(key: &str) -> Option<String> {
    getent("passwd", key).and_then(|s| s.lines().next().map(str::to_string))
}

/// Is `user` a member of `group` (its primary group, or listed in it)?
pub fn in_group(user: &str, group: &str) -> bool {
    let Some(line) = getent("group", group) else {
        return false;
    };
    let mut f = line.lines().next().unwrap_or("").split(':');
    let (Some(name), _, Some(gid), members) = (f.next(), f.next(), f.next(), f.next()) else {
        return false;
    };
    if name != group {
        return false;
    }
    if members.is_some_and(|m| m.split(',').any(|u| u.trim() == user)) {
        return true;
    }
    passwd(user)
        .and_then(|l| l.split(':').nth(3).map(str::to_string))
        .is_some_and(|g| g == gid)
}

/// The addresses of `host` on `port`, as `getent ahosts` lists them.
pub fn addresses(host: &str, port: u16) -> Vec<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    let Some(text) = getent("ahosts", host) else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        if let Some(ip) = line.split_whitespace().next().and_then(|a| a.parse().ok()) {
            let addr = SocketAddr::new(ip, port);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

/// ureq's resolver, through [`addresses`].
#[derive(Debug)]
pub struct Resolver;

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let mut result = self.empty();
        for addr in addresses(host, port).into_iter().take(16) {
            result.push(addr);
        }
        if result.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_localhost_resolve_through_getent() {
        assert!(passwd("root").is_some_and(|l| l.starts_with("root:x:0:")));
        assert!(passwd("0").is_some_and(|l| l.starts_with("root:")));
        assert_eq!(passwd("--help"), None);
        assert_eq!(passwd("no-such-user-pairjail"), None);
        let local = addresses("localhost", 80);
        assert!(local.iter().any(|a| a.ip().is_loopback()), "{local:?}");
        assert_eq!(addresses("127.0.0.1", 9).len(), 1);
        assert!(in_group("root", "root"));
        assert!(!in_group("root", "no-such-group-pairjail"));
    }
}
