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

/// The session's tmux clients that draw a screen, as `WIDTHxHEIGHT` and
/// whether read-only.
fn clients(w: &World, session: &str) -> Vec<String> {
    let mut v: Vec<String> = w
        .host_tmux(
            session,
            &[
                "list-clients",
                "-F",
                "#{client_control_mode} #{client_width}x#{client_height}:#{?client_readonly,ro,rw}",
            ],
        )
        .lines()
        // The broker's own control client is not a screen.
        .filter_map(|l| l.strip_prefix("0 "))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn wait_clients(w: &World, session: &str, want: &[&str]) {
    common::eventually(20, || {
        let have = clients(w, session);
        (have == want)
            .then_some(())
            .ok_or(format!("clients {have:?}, want {want:?}"))
    });
}

/// Runs `cmd` in the session's shell, as the host typing it.
fn host_types(w: &World, session: &str, cmd: &str) {
    let pane = format!("={session}:");
    w.host_tmux(session, &["send-keys", "-t", &pane, "-l", cmd]);
    w.host_tmux(session, &["send-keys", "-t", &pane, "Enter"]);
}

/// A guest's screen without its last row (where the broker draws that
/// guest's own messages).
fn above_last_row(w: &World, target: &str) -> String {
    let s = w.screen(target);
    let mut lines: Vec<&str> = s.lines().collect();
    lines.pop();
    lines.join("\n")
}

/// Waits for two guests' screens (but their last rows) to be the same.
fn wait_same_screen(w: &World, a: &str, b: &str) {
    common::eventually(20, || {
        let (x, y) = (above_last_row(w, a), above_last_row(w, b));
        (x == y)
            .then_some(())
            .ok_or(format!("{a}:\n{x}\n---- {b}:\n{y}"))
    });
}

#[test]
fn mirror_guests_of_one_size_share_a_client_a_late_joiner_sees_the_whole_screen() {
    let Some((w, guests)) = World::new(
        "fan",
        &[
            ("fan0", "sfan", Some("mirror")),
            ("fan1", "sfan", Some("mirror")),
            ("fan2", "sfan", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("sfan", "mirror", "echo FAN-READY; exec sh");
    // The host's terminal sizes the window to what the guests see, so tmux
    // scrolls their terminals with a scroll region instead of redrawing.
    let host = w.attach_host("sfan");
    w.drv(&["resize-window", "-t", &host, "-x", "100", "-y", "30"]);
    w.wait_screen(&host, "FAN-READY", 20);
    let first = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&first, "FAN-READY", 20);
    // Output the first guest saw drawn, and that tmux never draws again:
    // colours, a wide character, and enough lines to scroll.
    host_types(
        &w,
        "sfan",
        "for i in $(seq 1 40); do printf '\\033[1;3%dmEARLY-%s\\033[0m \\342\\202\\254\\n' $((i % 7)) $i; done",
    );
    w.wait_screen(&first, "EARLY-40", 20);

    // The late joiner: the same client, and the screen as it is.
    let late = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&late, "EARLY-40", 20);
    wait_clients(&w, "sfan", &["100x30:ro", "100x30:rw"]);
    wait_same_screen(&w, &first, &late);
    // More output scrolls both through tmux's scroll region, which the
    // late joiner's terminal must have been given.
    // (One line at a time: a burst tmux would redraw whole.)
    host_types(
        &w,
        "sfan",
        "for i in $(seq 1 50); do echo MORE-$i; sleep 0.02; done",
    );
    w.wait_screen(&late, "MORE-50", 20);
    wait_same_screen(&w, &first, &late);

    // Another size: its own client, and a screen that fits it (tmux's
    // status line on its last row once the broker's banner is gone).
    let small = w.join_in_window(&guests[2], 80, 24);
    w.wait_screen(&small, "MORE-50", 20);
    wait_clients(&w, "sfan", &["100x30:ro", "100x30:rw", "80x24:ro"]);
    common::eventually(30, || {
        let s = w.screen(&small);
        let last = s.lines().last().unwrap_or("").to_string();
        (s.lines().count() == 24 && last.starts_with("[sfan]"))
            .then_some(())
            .ok_or(format!("last row {last:?} of:\n{s}"))
    });
    let _ = w.host_pairjail(&["stop", "--session", "sfan"]);
}

#[test]
fn a_demoted_promoted_or_kicked_guest_leaves_its_group_cleanly() {
    let Some((w, guests)) = World::new(
        "grp",
        &[
            ("grp0", "sgrp", Some("pair")),
            ("grp1", "sgrp", Some("mirror")),
            ("grp2", "sgrp", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("sgrp", "mirror,pair", "echo GRP-READY; exec sh");
    let t: Vec<String> = guests
        .iter()
        .map(|g| w.join_in_window(g, 100, 30))
        .collect();
    for g in &t {
        w.wait_screen(g, "GRP-READY", 20);
    }
    // The pair guest has its own client; the two mirror guests one.
    wait_clients(&w, "sgrp", &["100x30:ro", "100x30:rw"]);

    // Demoted: into the group, its own client gone, shown the screen.
    let out = w.host_pairjail(&["mode", "grp0", "mirror", "--session", "sgrp"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    wait_clients(&w, "sgrp", &["100x30:ro"]);
    w.wait_screen(&t[0], "the host made you mirror", 10);
    host_types(&w, "sgrp", "echo AFTER-DEMOTE");
    for g in &t {
        w.wait_screen(g, "AFTER-DEMOTE", 20);
    }

    // Kicked: the others keep watching through the same client.
    let out = w.host_pairjail(&["kick", "grp1", "--session", "sgrp"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    w.wait_screen(&t[1], "SSH-EXIT=0", 10);
    host_types(&w, "sgrp", "echo AFTER-KICK");
    w.wait_screen(&t[0], "AFTER-KICK", 20);
    w.wait_screen(&t[2], "AFTER-KICK", 20);
    wait_clients(&w, "sgrp", &["100x30:ro"]);

    // Promoted: out of the group with a client of its own that types.
    let out = w.host_pairjail(&["mode", "grp2", "pair", "--session", "sgrp"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    wait_clients(&w, "sgrp", &["100x30:ro", "100x30:rw"]);
    w.drv(&["send-keys", "-t", &t[2], "-l", "echo TYPED-$((6*7))"]);
    w.drv(&["send-keys", "-t", &t[2], "Enter"]);
    w.wait_screen(&t[0], "TYPED-42", 20);

    // The last member gone: the group's client ends with it.
    let out = w.host_pairjail(&["kick", "grp0", "--session", "sgrp"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    wait_clients(&w, "sgrp", &["100x30:rw"]);
    let _ = w.host_pairjail(&["stop", "--session", "sgrp"]);
}

/// The session's pane as tmux has it, row by row, trailing blanks cut.
fn pane_rows(w: &World, session: &str) -> Vec<String> {
    w.host_tmux(
        session,
        &["capture-pane", "-p", "-t", &format!("={session}:")],
    )
    .lines()
    .map(|l| l.trim_end().to_string())
    .collect()
}

/// Rows `from..from+n` of a guest's screen, trailing blanks cut.
fn screen_rows(w: &World, target: &str, from: usize, n: usize) -> Vec<String> {
    w.screen(target)
        .lines()
        .skip(from)
        .take(n)
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn a_group_members_message_never_stays_in_the_pane_with_the_status_line_on_top_or_off() {
    let Some((w, guests)) = World::new(
        "sta",
        &[
            ("sta0", "ssta", Some("mirror")),
            ("sta1", "ssta", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("ssta", "mirror", "echo STA-READY; exec sh");
    let host = w.attach_host("ssta");
    w.drv(&["resize-window", "-t", &host, "-x", "100", "-y", "30"]);
    w.wait_screen(&host, "STA-READY", 20);
    // The banner is the broker's message to a member; the pane scrolls
    // under it, line by line, while it is up.
    let banner = "you are mirror: you watch";
    let check = |g: &str, status: &str, pane_from: usize, tag: &str| {
        host_types(
            &w,
            "ssta",
            &format!("for i in $(seq 1 60); do echo {tag}-$i; sleep 0.05; done"),
        );
        w.wait_screen(g, &format!("{tag}-60"), 30);
        common::eventually(30, || {
            let s = w.screen(g);
            let want = pane_rows(&w, "ssta");
            let got = screen_rows(&w, g, pane_from, want.len());
            if s.contains(banner) || got != want {
                return Err(format!(
                    "status {status}: the guest's screen:\n{s}\n---- tmux's pane:\n{}",
                    want.join("\n")
                ));
            }
            Ok(())
        });
    };
    w.host_tmux("ssta", &["set-option", "-g", "status-position", "top"]);
    let first = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&first, banner, 20);
    // On the status row, the first: not over the pane's last row.
    let s = w.screen(&first);
    assert!(
        s.lines().next().is_some_and(|l| l.contains(banner)),
        "status on top: the banner is not on the first row:\n{s}"
    );
    check(&first, "on top", 1, "TOP");
    w.host_tmux("ssta", &["set-option", "-g", "status", "off"]);
    let second = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&second, banner, 20);
    check(&second, "off", 0, "OFF");
    let _ = w.host_pairjail(&["stop", "--session", "ssta"]);
}

/// A program in the pane sets a scroll region of its own (as vim, less or
/// a pager does): tmux then sends the group's client a region that starts
/// below the first row although its status line is at the bottom. A
/// member's message must still go on the status row, not over the pane.
#[test]
fn a_group_members_message_goes_on_the_status_row_whatever_region_a_program_scrolls() {
    let Some((w, guests)) = World::new(
        "srg",
        &[
            ("srg0", "ssrg", Some("mirror")),
            ("srg1", "ssrg", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("ssrg", "mirror", "echo SRG-READY; exec sh");
    let host = w.attach_host("ssrg");
    w.drv(&["resize-window", "-t", &host, "-x", "100", "-y", "30"]);
    w.wait_screen(&host, "SRG-READY", 20);
    let first = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&first, "SRG-READY", 20);
    // Scrolling inside rows 3-20 of the pane, on and on: tmux sends the
    // group's client that region with every scroll.
    host_types(
        &w,
        "ssrg",
        "printf '\\033[3;20r'; i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo SRG-$i; sleep 0.01; done; printf '\\033[r'; clear; echo SRG-FIN-$((40+2))",
    );
    w.wait_screen(&first, "SRG-2", 20);
    let banner = "you are mirror: you watch";
    let second = w.join_in_window(&guests[1], 100, 30);
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = w.screen(&second);
        let rows: Vec<&str> = s.lines().collect();
        if let Some(i) = rows.iter().position(|r| r.contains(banner)) {
            assert_eq!(i, 29, "the banner is over the pane, on row {}:\n{s}", i + 1);
            seen += 1;
        }
        if s.contains("SRG-FIN-42") || std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(seen > 0, "the banner was never seen on the last row");
    let _ = w.host_pairjail(&["stop", "--session", "ssrg"]);
}

/// Every mirror group is a tmux client and a screen model: guests joining
/// at size after size (one invited guest could, with a few connections)
/// must not grow the broker without bound. Past the limit a new size is
/// refused with the sizes that would join.
#[test]
fn mirror_screens_of_new_sizes_stop_at_a_limit() {
    const GROUPS: usize = 16;
    let names: Vec<String> = (0..=GROUPS + 1).map(|i| format!("grp{i}")).collect();
    let spec: Vec<(&str, &str, Option<&str>)> = names
        .iter()
        .map(|n| (n.as_str(), "sgrp", Some("mirror")))
        .collect();
    let Some((w, guests)) = World::new("grp", &spec) else {
        return;
    };
    w.start_session("sgrp", "mirror", "echo GRP-READY; exec sh");
    let host = w.attach_host("sgrp");
    w.wait_screen(&host, "GRP-READY", 20);
    for (i, g) in guests.iter().enumerate().take(GROUPS) {
        let t = w.join_in_window(g, 60 + i as u16, 20);
        w.wait_screen(&t, "GRP-READY", 30);
    }
    let last = w.join_in_window(&guests[GROUPS], 60 + GROUPS as u16, 20);
    w.wait_screen(&last, "different sizes", 30);
    w.wait_screen(&last, "SSH-EXIT=", 30);

    // A guest who resizes at the limit is kept, at its old size: one of
    // two at 61x20 (found by a read-only attack hunt: it was cut off, so
    // guests holding 16 sizes had any other guest who resized dropped).
    let second = w.join_in_window(&guests[GROUPS + 1], 61, 20);
    w.wait_screen(&second, "GRP-READY", 30);
    w.drv(&["resize-window", "-t", &second, "-x", "90", "-y", "20"]);
    w.wait_screen(&second, "16 sizes shown already; yours stays 61x20", 30);
    // One alone in its group moves: leaving frees its place.
    let first = "drv:grp0".to_string();
    w.drv(&["resize-window", "-t", &first, "-x", "91", "-y", "20"]);
    common::eventually(30, || {
        let have = clients(&w, "sgrp");
        (have.contains(&"91x20:ro".to_string()) && !have.contains(&"60x20:ro".to_string()))
            .then_some(())
            .ok_or(format!("clients {have:?}"))
    });
    host_types(&w, "sgrp", "echo STILL-$((6*7))");
    w.wait_screen(&second, "STILL-42", 30);
    w.wait_screen(&first, "STILL-42", 30);
    for t in [&second, &first] {
        assert!(!w.screen(t).contains("SSH-EXIT="), "{t} was cut off");
    }
    let _ = w.host_pairjail(&["stop", "--session", "sgrp"]);
}

/// A mirror guest that resizes in a loop: each move to a size nobody
/// else has starts a tmux client (and a screen model) on the host, so
/// moves come ever less often, and the guest still ends at its size.
#[test]
fn a_guest_resizing_in_a_loop_never_makes_the_host_start_a_client_each_time() {
    let Some((w, guests)) = World::new("storm", &[("storm0", "sstorm", Some("mirror"))]) else {
        return;
    };
    w.start_session("sstorm", "mirror", "echo STORM-READY; exec sh");
    // Every tmux client that attaches counts, the groups' included.
    w.host_tmux("sstorm", &["set-option", "-g", "@attaches", "0"]);
    w.host_tmux(
        "sstorm",
        &[
            "set-hook",
            "-ga",
            "client-attached",
            "set-option -gF @attaches '#{e|+:#{@attaches},1}'",
        ],
    );
    let attaches = || -> u32 {
        let n = w.host_tmux("sstorm", &["show-options", "-gv", "@attaches"]);
        n.trim().parse().expect("a count")
    };
    let t = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&t, "STORM-READY", 20);
    wait_clients(&w, "sstorm", &["80x24:ro"]);
    let before = attaches();
    // The attack: 21 sizes, each held longer than a size must hold to
    // move the guest (200 ms), so each used to start a client. The pace
    // is the attacker's; nothing here waits for the broker.
    const RESIZES: u32 = 21;
    for i in 0..RESIZES {
        let cols = if i % 2 == 0 { "81" } else { "80" };
        w.drv(&["resize-window", "-t", &t, "-x", cols, "-y", "24"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // It still gets there: the last size (81 columns) is its group's.
    common::eventually(60, || {
        let have = clients(&w, "sstorm");
        (have == ["81x24:ro"])
            .then_some(())
            .ok_or(format!("clients {have:?} after the storm"))
    });
    host_types(&w, "sstorm", "echo AFTER-$((6*7))");
    w.wait_screen(&t, "AFTER-42", 20);
    let started = attaches() - before;
    assert!(
        started <= 8,
        "{started} tmux clients started for {RESIZES} resizes 300 ms apart"
    );
    let _ = w.host_pairjail(&["stop", "--session", "sstorm"]);
}
