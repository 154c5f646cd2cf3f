//! Many guests on one broker: what each costs the broker in descriptors,
//! and that the broker can hold as many as its hard limit allows.

mod common;

use std::fs;

use common::sshd::World;

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// `(soft, hard)` of "Max open files" in /proc/PID/limits.
fn nofile(pid: i32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let mut w = line["Max open files".len()..].split_whitespace();
    (w.next().unwrap().into(), w.next().unwrap().into())
}

#[test]
fn each_guest_costs_the_broker_at_most_two_descriptors_and_the_limit_is_raised() {
    let names: Vec<String> = (0..6).map(|i| format!("aud{i}")).collect();
    let spec: Vec<(&str, &str, Option<&str>)> = names
        .iter()
        .map(|n| (n.as_str(), "saud", Some("mirror")))
        .collect();
    let Some((w, guests)) = World::new("aud", &spec) else {
        return;
    };
    // The host's shell has the usual low soft limit under a higher hard one.
    let out = w.try_start_session_limited(
        "saud",
        "mirror",
        "echo AUDIENCE-READY; exec sh",
        &[],
        &[],
        Some("--nofile=256:8192"),
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let pid = w.broker_pid("saud");
    assert_eq!(
        nofile(pid),
        ("8192".into(), "8192".into()),
        "the broker did not raise RLIMIT_NOFILE to its hard limit"
    );

    // One guest first (the broker's lazily opened things are open then),
    // then five more: what the five add is the per-guest cost.
    let first = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&first, "AUDIENCE-READY", 20);
    // The broker also opens short-lived descriptors (a tmux command's
    // pipes, a control connection): counts are taken once they are gone.
    let settled = || {
        common::eventually(20, || {
            let a = open_fds(pid);
            std::thread::sleep(std::time::Duration::from_millis(100));
            let b = open_fds(pid);
            (a == b)
                .then_some(a)
                .ok_or(format!("{a} then {b} descriptors"))
        })
    };
    let base = settled();
    for g in &guests[1..] {
        let win = w.join_in_window(g, 80, 24);
        w.wait_screen(&win, "AUDIENCE-READY", 20);
    }
    common::eventually(20, || {
        let n = w.guests("saud").len();
        (n == guests.len())
            .then_some(())
            .ok_or(format!("{n} guests connected"))
    });
    let extra = guests.len() - 1;
    common::eventually(20, || {
        let added = settled().saturating_sub(base);
        if added <= 2 * extra {
            Ok(())
        } else {
            Err(format!(
                "{added} descriptors for {extra} guests: {} each (at most 2)",
                added as f64 / extra as f64
            ))
        }
    });
}
