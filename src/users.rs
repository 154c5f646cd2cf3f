//! Unix users: /etc/passwd first, then every NSS source (LDAP, SSSD, …)
//! through `getent` in its own process (see `crate::lookup`: a static
//! glibc must not load NSS modules itself).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub gecos: String,
    pub shell: PathBuf,
}

fn parse_line(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() {
        return None;
    }
    Some(User {
        name: f[0].into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].into(),
        gecos: f[4].into(),
        shell: f[6].into(),
    })
}

pub fn all() -> Vec<User> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// Unix user names as sshd passes them.
pub fn check_user(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid user name '{}'", name.escape_debug()))
    }
}

pub fn by_name(name: &str) -> Option<User> {
    all()
        .into_iter()
        .find(|u| u.name == name)
        .or_else(|| from_nss(name).filter(|u| u.name == name))
}

fn from_nss(key: &str) -> Option<User> {
    crate::lookup::passwd(key).as_deref().and_then(parse_line)
}

/// The password field of `/etc/shadow` (readable by root only).
pub fn password_field(name: &str) -> Option<String> {
    std::fs::read_to_string("/etc/shadow")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| f.next().unwrap_or("").to_string())
        })
}

pub fn by_uid(uid: u32) -> Option<User> {
    all()
        .into_iter()
        .find(|u| u.uid == uid)
        .or_else(|| from_nss(&uid.to_string()).filter(|u| u.uid == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse() {
        let u = parse_line("alice:x:1000:1001:Alice,,,:/home/alice:/bin/bash").unwrap();
        assert_eq!((u.name.as_str(), u.uid, u.gid), ("alice", 1000, 1001));
        assert_eq!(u.home, PathBuf::from("/home/alice"));
        assert!(parse_line("broken:x:notanumber:1::/:/bin/sh").is_none());
        assert!(parse_line("short:x").is_none());
        assert_eq!(by_uid(0).map(|u| u.name), Some("root".into()));
    }
}
