//! guest-direct.toml must bind every library the host's tmux needs.

use std::process::Command;

use pairjail::profile::{self, Mount, SearchPath};

#[test]
fn guest_direct_binds_every_elf_dependency_of_tmux() {
    let out = match Command::new("ldd").arg("/usr/bin/tmux").output() {
        Ok(out) if out.status.success() => out,
        _ if std::env::var_os("CI").is_some() => panic!("ldd /usr/bin/tmux failed in CI"),
        _ => {
            eprintln!("skipping: tmux or ldd not installed");
            return;
        }
    };
    let p = profile::resolve("guest-direct", &SearchPath::from_env())
        .unwrap()
        .profile;
    let bound: Vec<&str> = p
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Bind { dst, .. } => Some(dst.as_str()),
            _ => None,
        })
        .collect();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut needed = 0;
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            needed += 1;
            assert!(
                bound.contains(&path),
                "guest-direct.toml does not bind {path}, which tmux needs"
            );
        }
    }
    assert!(needed >= 3, "ldd listed too few libraries: {text}");
}
