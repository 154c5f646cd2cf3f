//! The host in charge, live: banners and notices, kick, mode changes,
//! revoke, expiry and the profile's time limits, and the door. A real
//! sshd, real ssh clients on driver panes, the host's real tmux server.

mod common;

use common::sshd::{HOST, World};
use common::{eventually, text};
use std::time::{Duration, Instant};

const HOST_PROGRAM: &str = "echo HOST-MARKER-4242; exec sh";

fn listed(w: &World, session: &str) -> Vec<String> {
    w.guests(session)
        .iter()
        .map(|g| {
            format!(
                "{}:{}:{}",
                g["name"].as_str().unwrap_or(""),
                g["mode"].as_str().unwrap_or(""),
                g["state"].as_str().unwrap_or("")
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn wait_listed(w: &World, session: &str, want: &[&str]) {
    eventually(20, || {
        let got = listed(w, session);
        if got == want {
            Ok(())
        } else {
            Err(format!("status lists {got:?}, expected {want:?}"))
        }
    });
}

fn pane_has(w: &World, session: &str, needle: &str) -> bool {
    w.host_tmux(
        session,
        &["capture-pane", "-p", "-t", &format!("={session}:")],
    )
    .contains(needle)
}

/// Types `echo TAG-N-$((40+2))` in the guest's terminal, then waits
/// until its window size reached the session (its keys went first).
fn typed(w: &World, g: &str, session: &str, tag: &str, n: u32) {
    w.drv(&[
        "send-keys",
        "-t",
        g,
        &format!("echo {tag}-{n}-$((40+2))"),
        "Enter",
    ]);
    w.barrier(g, session);
}

/// Waits until the session's pane shows what `typed` made it print.
fn typed_arrived(w: &World, session: &str, tag: &str, n: u32) {
    eventually(10, || {
        if pane_has(w, session, &format!("{tag}-{n}-42")) {
            Ok(())
        } else {
            Err(format!("{tag}-{n} never arrived in the session"))
        }
    });
}

#[test]
fn guests_get_a_banner_the_host_sees_who_comes_and_goes_and_kick_removes_at_once() {
    let Some((w, guests)) = World::new(
        "kick",
        &[
            ("bob", "skick", Some("mirror")),
            ("carol", "skick", Some("pair")),
        ],
    ) else {
        return;
    };
    w.start_session("skick", "mirror,pair", HOST_PROGRAM);
    let host = w.attach_host("skick");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);

    let bob = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&bob, "HOST-MARKER-4242", 20);
    // The banner: printed before the session (now in the scrollback) and
    // on the guest's status line.
    let history = w.history(&bob);
    assert!(
        history.contains(&format!(
            "[pairjail] {HOST}'s session \"skick\": you are mirror"
        )),
        "{history}"
    );
    assert!(history.contains("To leave:"), "{history}");
    // The host: a notice on its own client, and the status-line segment.
    w.wait_screen(&host, "pairjail: bob joined as mirror", 10);
    let carol = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&carol, "HOST-MARKER-4242", 20);
    w.wait_screen(&host, "2 guests: bob(mirror) carol(pair)", 10);
    let fp = &w.guests("skick")[0]["key"];
    assert!(
        fp.as_str().is_some_and(|k| k.starts_with("SHA256:")),
        "{fp}"
    );
    // The guests never saw the host's notices.
    assert!(
        !w.screen(&bob).contains("carol joined"),
        "{}",
        w.screen(&bob)
    );

    // Kick: at once, with the host's reason, and the invite is gone.
    let out = w.host_pairjail(&[
        "kick",
        "bob",
        "--session",
        "skick",
        "--reason",
        "we are done #{pane_pid}",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = w.wait_screen(&bob, "SSH-EXIT=0", 10);
    assert!(
        s.contains("[pairjail] the host removed you from the session: we are done #{pane_pid}"),
        "{s}"
    );
    assert!(
        !w.alternate_on(&bob),
        "bob's terminal is left in the alternate screen"
    );
    wait_listed(&w, "skick", &["carol:pair:connected"]);
    w.wait_screen(&host, "1 guest: carol(pair)", 10);
    let invites = w.host_pairjail(&["invite", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&invites.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().all(|i| i["name"] != "bob"),
        "bob's invite survived the kick: {v}"
    );
    w.assert_join_refused(&guests[0], "bob has no live invite");

    // --keep-invite: carol may come back.
    let out = w.host_pairjail(&["kick", "carol", "--session", "skick", "--keep-invite"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&carol, "SSH-EXIT=0", 10);
    wait_listed(&w, "skick", &[]);
    let invites = w.host_pairjail(&["invite", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&invites.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|i| i["name"] == "carol"),
        "--keep-invite lost carol's invite: {v}"
    );

    // No such guest: one line, exit 1.
    let out = w.host_pairjail(&["kick", "zed", "--session", "skick", "--keep-invite"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no guest named zed"),
        "{}",
        text(&out.stderr)
    );
    let _ = w.host_pairjail(&["stop", "--session", "skick"]);
}

#[test]
fn every_way_out_leaves_the_guest_on_the_normal_screen_and_no_client_behind() {
    let Some((w, guests)) = World::new(
        "exits",
        &[
            ("dan", "sexit", Some("pair")),
            ("eve", "sexit", Some("pair")),
            ("fay", "sexit", Some("mirror")),
            ("gus", "sexit", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("sexit", "mirror,pair", HOST_PROGRAM);
    let t: Vec<String> = guests
        .iter()
        .map(|g| w.join_in_window(g, 100, 30))
        .collect();
    for g in &t {
        w.wait_screen(g, "HOST-MARKER-4242", 20);
        // While connected too: a dropped connection must find the
        // terminal on the normal screen.
        assert!(!w.alternate_on(g), "{g} is in the alternate screen");
    }
    wait_listed(
        &w,
        "sexit",
        &[
            "dan:pair:connected",
            "eve:pair:connected",
            "fay:mirror:connected",
            "gus:mirror:connected",
        ],
    );
    // dan detaches himself.
    w.drv(&["send-keys", "-t", &t[0], "C-b", "d"]);
    let s = w.wait_screen(&t[0], "SSH-EXIT=0", 10);
    assert!(
        s.contains("[pairjail] your tmux client was detached"),
        "{s}"
    );
    // The host detaches eve's client.
    // eve's client is the only read-write guest client left (dan's is
    // gone; the broker's watcher is a control client, without a tty).
    let clients = w.host_tmux(
        "sexit",
        &[
            "list-clients",
            "-F",
            "#{client_name} #{client_readonly} #{client_control_mode}",
        ],
    );
    let eve_tty = clients
        .lines()
        .filter_map(|l| l.strip_suffix(" 0 0"))
        .find(|tty| !tty.is_empty())
        .unwrap_or_else(|| panic!("no read-write client: {clients}"))
        .to_string();
    w.host_tmux("sexit", &["detach-client", "-t", &eve_tty]);
    let s = w.wait_screen(&t[1], "SSH-EXIT=0", 10);
    assert!(
        s.contains("[pairjail] your tmux client was detached"),
        "{s}"
    );
    // fay leaves with ssh's own escape: nothing of ours runs after it.
    w.drv(&["send-keys", "-t", &t[2], "Enter", "~", "."]);
    w.wait_screen(&t[2], "SSH-EXIT=", 10);
    wait_listed(&w, "sexit", &["gus:mirror:connected"]);
    // gus is still in when the host stops the session.
    let out = w.host_pairjail(&["stop", "--session", "sexit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = w.wait_screen(&t[3], "SSH-EXIT=0", 10);
    assert!(s.contains("[pairjail] the host stopped the session"), "{s}");
    for g in &t {
        assert!(
            !w.alternate_on(g),
            "{g}: the terminal is left in the alternate screen"
        );
    }
}

#[test]
fn a_host_detach_leaves_no_zombie_client() {
    let Some((w, guests)) = World::new("zombie", &[("hal", "szombie", Some("pair"))]) else {
        return;
    };
    w.start_session("szombie", "mirror,pair", HOST_PROGRAM);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    let clients = w.host_tmux(
        "szombie",
        &[
            "list-clients",
            "-F",
            "#{client_name} #{client_control_mode}",
        ],
    );
    let tty = clients
        .lines()
        .find_map(|l| l.strip_suffix(" 0"))
        .unwrap_or_else(|| panic!("no guest client: {clients}"))
        .to_string();
    w.host_tmux("szombie", &["detach-client", "-t", &tty]);
    w.wait_screen(&g, "SSH-EXIT=0", 10);
    wait_listed(&w, "szombie", &[]);
    let pid = std::fs::read_to_string(w.session_paths("szombie").join("broker.pid")).unwrap();
    let pid = pid.split_whitespace().next().unwrap().to_string();
    eventually(10, || {
        let ps = std::process::Command::new("ps")
            .args(["-o", "pid=,stat=,comm=", "--ppid", &pid])
            .output()
            .unwrap();
        let children = text(&ps.stdout);
        if children.lines().any(|l| l.contains(" Z")) {
            Err(format!("the broker has zombie children:\n{children}"))
        } else {
            Ok(())
        }
    });
    let clients = w.host_tmux("szombie", &["list-clients", "-F", "#{client_tty}"]);
    assert!(
        !clients.contains(&tty),
        "the detached client is still there: {clients}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "szombie"]);
}

#[test]
fn promote_demote_and_rogue_take_effect_live() {
    let Some((w, guests)) = World::new("modes", &[("ivy", "smodes", Some("mirror"))]) else {
        return;
    };
    w.start_session("smodes", "mirror,pair,rogue", HOST_PROGRAM);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    let typed = |n: u32| {
        w.drv(&[
            "send-keys",
            "-t",
            &g,
            &format!("echo MODE-{n}-$((40+2))"),
            "Enter",
        ]);
        w.barrier(&g, "smodes");
    };
    typed(1);
    assert!(!pane_has(&w, "smodes", "MODE-1-42"), "a mirror guest typed");

    let out = w.host_pairjail(&["mode", "ivy", "pair", "--session", "smodes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ivy is now pair"),
        "{}",
        text(&out.stdout)
    );
    wait_listed(&w, "smodes", &["ivy:pair:connected"]);
    typed(2);
    eventually(10, || {
        if pane_has(&w, "smodes", "MODE-2-42") {
            Ok(())
        } else {
            Err("the promoted guest's typing never arrived".into())
        }
    });

    let out = w.host_pairjail(&["mode", "ivy", "mirror", "--session", "smodes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // tmux agrees: the guest's one client (its mirror group's, which the
    // demotion attaches) is read-only, and its own is gone.
    eventually(10, || {
        let ro = w.host_tmux(
            "smodes",
            &[
                "list-clients",
                "-F",
                "#{client_control_mode}#{client_readonly}",
            ],
        );
        let screens: Vec<&str> = ro.lines().filter(|l| l.starts_with('0')).collect();
        if screens == ["01"] {
            Ok(())
        } else {
            Err(format!(
                "the demoted guest's clients: {screens:?} (want one, read-only)"
            ))
        }
    });
    typed(3);
    assert!(
        !pane_has(&w, "smodes", "MODE-3-42"),
        "a demoted guest still types"
    );

    // To rogue: a new client in the guest's own grouped session.
    let out = w.host_pairjail(&["mode", "ivy", "rogue", "--session", "smodes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("new tmux client"),
        "{}",
        text(&out.stdout)
    );
    eventually(10, || {
        let s = w.host_tmux("smodes", &["list-sessions", "-F", "#{session_name}"]);
        if s.lines().any(|l| l.starts_with("smodes-ivy-")) {
            Ok(())
        } else {
            Err(format!("no rogue session for ivy: {s}"))
        }
    });
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    // A mode the session does not allow, and a guest that is not there.
    let out = w.host_pairjail(&["mode", "nobody", "pair", "--session", "smodes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no guest named nobody"),
        "{}",
        text(&out.stderr)
    );
    let _ = w.host_pairjail(&["stop", "--session", "smodes"]);
}

/// Found by a read-only attack hunt: `mode` changed only the live
/// connection, so a demoted pair guest who simply connected again was let
/// in as pair (its invite's mode) and typed into the session.
#[test]
fn a_demoted_guest_who_connects_again_comes_back_demoted() {
    let Some((w, guests)) = World::new("redemote", &[("ida", "sredemote", Some("pair"))]) else {
        return;
    };
    w.start_session("sredemote", "mirror,pair", HOST_PROGRAM);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    typed(&w, &g, "sredemote", "AGAIN", 1);
    typed_arrived(&w, "sredemote", "AGAIN", 1);
    let out = w.host_pairjail(&["mode", "ida", "mirror", "--session", "sredemote"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_listed(&w, "sredemote", &["ida:mirror:connected"]);
    // The guest hangs up and connects again with the same key.
    w.drv(&["kill-window", "-t", &g]);
    wait_listed(&w, "sredemote", &[]);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    wait_listed(&w, "sredemote", &["ida:mirror:connected"]);
    typed(&w, &g, "sredemote", "AGAIN", 2);
    assert!(
        !pane_has(&w, "sredemote", "AGAIN-2-42"),
        "a demoted guest who connected again typed into the session"
    );
    // The host's promotion lasts the same way.
    let out = w.host_pairjail(&["mode", "ida", "pair", "--session", "sredemote"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.drv(&["kill-window", "-t", &g]);
    wait_listed(&w, "sredemote", &[]);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    wait_listed(&w, "sredemote", &["ida:pair:connected"]);
    // Demoted, kicked (which revokes her invite) and invited again (as
    // pair, which her forced command here names): the new invite's mode,
    // not the one the host gave under the old invite (a review found the
    // remembered mode outlived its invite, which could hand a guest back
    // pair under a new mirror invite).
    let out = w.host_pairjail(&["mode", "ida", "mirror", "--session", "sredemote"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_listed(&w, "sredemote", &["ida:mirror:connected"]);
    let out = w.host_pairjail(&["kick", "ida", "--session", "sredemote"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&g, "SSH-EXIT=", 20);
    w.drv(&["kill-window", "-t", &g]);
    wait_listed(&w, "sredemote", &[]);
    let key = guests[0].key.with_extension("pub");
    w.invite("ida", "sredemote", Some("pair"), &key);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    wait_listed(&w, "sredemote", &["ida:pair:connected"]);
    let _ = w.host_pairjail(&["stop", "--session", "sredemote"]);
}

/// Found by a read-only attack hunt: `invite add --replace` changed the
/// store only, so a connected guest kept the old invite's mode, expiry
/// and key (a stolen key stayed connected until its old expiry).
#[test]
fn a_replaced_invite_applies_to_a_connected_guest_at_once() {
    let Some((w, guests)) = World::new(
        "reinvite",
        &[
            ("uma", "sreinvite", Some("pair")),
            ("vic", "sreinvite", Some("mirror")),
        ],
    ) else {
        return;
    };
    let uma_key = guests[0].key.with_extension("pub");
    let vic_key = guests[1].key.with_extension("pub");
    w.start_session("sreinvite", "mirror,pair", HOST_PROGRAM);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    typed(&w, &g, "sreinvite", "NEWTERMS", 1);
    typed_arrived(&w, "sreinvite", "NEWTERMS", 1);
    let expiry = |w: &World| -> String {
        w.guests("sreinvite")
            .iter()
            .map(|g| g["expires"].to_string())
            .collect()
    };
    let before = expiry(&w);
    // The same key, as mirror, for an hour: the mode and the expiry.
    w.invite("uma", "sreinvite", Some("mirror --expires 1h"), &uma_key);
    wait_listed(&w, "sreinvite", &["uma:mirror:connected"]);
    assert_ne!(
        expiry(&w),
        before,
        "the connected guest kept its old expiry"
    );
    typed(&w, &g, "sreinvite", "NEWTERMS", 2);
    assert!(
        !pane_has(&w, "sreinvite", "NEWTERMS-2-42"),
        "a guest whose invite became mirror still types"
    );
    // Another key (vic's, free once vic's invite is gone): the one the
    // guest logged in with is out.
    let out = w.host_pairjail(&["invite", "revoke", "vic"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.invite("uma", "sreinvite", Some("mirror"), &vic_key);
    let s = w.wait_screen(&g, "SSH-EXIT=0", 20);
    assert!(s.contains("the host replaced your invite's keys"), "{s}");
    wait_listed(&w, "sreinvite", &[]);
    let _ = w.host_pairjail(&["stop", "--session", "sreinvite"]);
}

/// Found by a read-only attack hunt: after the broker was killed, a pair
/// guest's tmux client stayed attached to the session, writable, with
/// nobody to end it (it held its own pty's master, inherited across
/// exec, so its terminal never hung up). The broker's clients end with it.
#[test]
fn a_dead_brokers_tmux_clients_end_with_it() {
    let Some((w, guests)) = World::new(
        "deadbroker",
        &[
            ("pia", "sdeadbroker", Some("pair")),
            ("quin", "sdeadbroker", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("sdeadbroker", "mirror,pair", HOST_PROGRAM);
    for g in &guests {
        let t = w.join_in_window(g, 100, 30);
        w.wait_screen(&t, "HOST-MARKER-4242", 20);
    }
    let clients = || {
        w.host_tmux(
            "sdeadbroker",
            &["list-clients", "-F", "#{client_pid} #{client_control_mode}"],
        )
    };
    assert!(
        clients().lines().filter(|l| l.ends_with(" 0")).count() >= 2,
        "the guests' clients: {}",
        clients()
    );
    w.crash_broker("sdeadbroker");
    eventually(20, || {
        let left = clients();
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(format!(
                "clients still attached after the broker died: {left}"
            ))
        }
    });
    let _ = w.host_pairjail(&["stop", "--session", "sdeadbroker"]);
}

#[test]
fn a_mode_outside_the_session_is_refused_live() {
    let Some((w, guests)) = World::new("modeno", &[("jon", "smodeno", Some("mirror"))]) else {
        return;
    };
    w.start_session("smodeno", "mirror", HOST_PROGRAM);
    let g = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&g, "HOST-MARKER-4242", 20);
    let out = w.host_pairjail(&["mode", "jon", "pair", "--session", "smodeno"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("mode pair is not allowed in this session"),
        "{}",
        text(&out.stderr)
    );
    wait_listed(&w, "smodeno", &["jon:mirror:connected"]);
    let _ = w.host_pairjail(&["stop", "--session", "smodeno"]);
}

#[test]
fn revoke_expiry_idle_and_time_limit_disconnect_a_connected_guest() {
    let Some((w, guests)) = World::new(
        "limits",
        &[
            ("kim", "slimits", Some("pair")),
            ("lou", "slimits", Some("mirror")),
            ("max", "slimits", Some("mirror")),
            ("ned", "slimits", Some("mirror")),
        ],
    ) else {
        return;
    };
    // The guest profiles' [session] limits, tightened for the test.
    w.guest_profile("max", "idle", "idle_timeout = \"3s\"");
    w.guest_profile("ned", "short", "max_duration = \"4s\"");
    // lou's invite ends in 12 s: less than the minute of warning.
    let lou_key = guests[1].key.with_extension("pub");
    w.start_session("slimits", "mirror,pair", HOST_PROGRAM);
    w.invite("lou", "slimits", Some("mirror --expires 12s"), &lou_key);
    let t: Vec<String> = guests
        .iter()
        .map(|g| w.join_in_window(g, 100, 30))
        .collect();
    for g in &t {
        w.wait_screen(g, "HOST-MARKER-4242", 20);
    }
    // Revoke: the connected guest goes with its invite.
    let out = w.host_pairjail(&["invite", "revoke", "kim"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("disconnected kim from session slimits"),
        "{}",
        text(&out.stdout)
    );
    let s = w.wait_screen(&t[0], "SSH-EXIT=0", 10);
    assert!(s.contains("[pairjail] the host revoked your invite"), "{s}");
    // Expiry: a warning on the guest's screen first, then out.
    w.wait_screen(&t[1], "you will be disconnected in", 10);
    let s = w.wait_screen(&t[1], "SSH-EXIT=0", 20);
    assert!(s.contains("[pairjail] your invite expired at"), "{s}");
    // Idle: no input for 3 s.
    let s = w.wait_screen(&t[2], "SSH-EXIT=0", 20);
    assert!(s.contains("(idle timeout)"), "{s}");
    // The profile's max_duration.
    let s = w.wait_screen(&t[3], "SSH-EXIT=0", 20);
    assert!(s.contains("the guest time limit (4s) is up"), "{s}");
    wait_listed(&w, "slimits", &[]);
    let _ = w.host_pairjail(&["stop", "--session", "slimits"]);
}

#[test]
fn the_door_admits_denies_and_times_out_and_only_the_host_answers() {
    let Some((w, guests)) = World::new(
        "door",
        &[
            ("oli", "sdoor", Some("mirror")),
            ("pam", "sdoor", Some("mirror")),
            ("quin", "sdoor", Some("mirror")),
            ("rex", "sdoor", Some("mirror")),
        ],
    ) else {
        return;
    };
    // Watch-only: the door's menu is shown only where no guest can type
    // (see a_pair_guest_cannot_answer_the_door_from_a_client_of_its_own).
    w.start_session_with(
        "sdoor",
        "mirror",
        HOST_PROGRAM,
        &["--approve", "--approve-timeout", "10s"],
    );
    let host = w.attach_host("sdoor");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    // The host's own binding of the door's key, which the door borrows.
    let own_a = [
        "bind-key",
        "-T",
        "prefix",
        "a",
        "display-message",
        "HOSTS-OWN-A",
    ];
    w.host_tmux("sdoor", &own_a);

    // oli waits, and is let in with the CLI.
    let oli = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&oli, &format!("[pairjail] {HOST} must let you in"), 20);
    wait_listed(&w, "sdoor", &["oli:mirror:waiting"]);
    assert!(
        !w.screen(&oli).contains("HOST-MARKER-4242"),
        "oli saw the session before being let in"
    );
    let out = w.host_pairjail(&["approve", "oli", "--session", "sdoor"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&oli, "HOST-MARKER-4242", 20);
    wait_listed(&w, "sdoor", &["oli:mirror:connected"]);

    // pam waits. The host, typing, is told and goes on typing: its keys
    // go to its shell, never to a menu (one that opened by itself took the
    // `a` of `cat` as "admit"; found by a read-only attack hunt).
    let pam = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&pam, "must let you in", 20);
    w.wait_screen(&host, "press C-b a: pam wants to join as mirror", 20);
    w.drv(&["send-keys", "-t", &host, "-l", "echo cat-$((6*7))"]);
    w.drv(&["send-keys", "-t", &host, "Enter"]);
    w.wait_screen(&host, "cat-42", 20);
    wait_listed(&w, "sdoor", &["oli:mirror:connected", "pam:mirror:waiting"]);
    assert!(
        !w.screen(&pam).contains("HOST-MARKER-4242"),
        "the host's typing let pam in"
    );
    // The host asks for the menu; oli (a guest in the same session) never
    // gets it, and the host denies from it.
    w.drv(&["send-keys", "-t", &host, "C-b", "a"]);
    let menu = w.wait_screen(&host, "Admit as requested", 20);
    assert!(menu.contains("pam wants to join as mirror"), "{menu}");
    assert!(
        !w.screen(&oli).contains("Admit as"),
        "the door's menu reached a guest"
    );
    w.drv(&["send-keys", "-t", &host, "d"]);
    let s = w.wait_screen(&pam, "SSH-EXIT=1", 20);
    assert!(s.contains(&format!("{HOST} did not let you in")), "{s}");

    // quin: nobody answers within 10 s.
    let quin = w.join_in_window(&guests[2], 100, 30);
    let s = w.wait_screen(&quin, "SSH-EXIT=1", 30);
    assert!(
        s.contains(&format!("{HOST} did not answer within 10 s")),
        "{s}"
    );
    let log = std::fs::read_to_string(w.runtime.join(HOST).join("sdoor.log")).unwrap();
    assert!(!log.contains("the door's key"), "{log}");

    // rex: the host admits it as requested, from the menu.
    let rex = w.join_in_window(&guests[3], 100, 30);
    w.wait_screen(&rex, "must let you in", 20);
    w.wait_screen(&host, "rex wants to join", 20);
    w.drv(&["send-keys", "-t", &host, "C-b", "a"]);
    // The menu itself, not only the notice naming rex that comes first:
    // a key sent before the menu is up goes to the host's shell.
    let menu = w.wait_screen(&host, "Admit as requested", 20);
    assert!(menu.contains("rex wants to join as mirror"), "{menu}");
    w.drv(&["send-keys", "-t", &host, "a"]);
    w.wait_screen(&rex, "HOST-MARKER-4242", 20);
    wait_listed(
        &w,
        "sdoor",
        &["oli:mirror:connected", "rex:mirror:connected"],
    );
    // With nobody waiting, the key is the host's again.
    common::eventually(20, || {
        let keys = w.host_tmux("sdoor", &["list-keys", "-T", "prefix", "a"]);
        keys.contains("HOSTS-OWN-A")
            .then_some(())
            .ok_or(format!("prefix a is now: {keys}"))
    });
    let out = w.host_pairjail(&["deny", "rex", "--session", "sdoor"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "deny of a guest who is not waiting"
    );
    assert!(
        text(&out.stderr).contains("rex is not waiting"),
        "{}",
        text(&out.stderr)
    );
    let _ = w.host_pairjail(&["stop", "--session", "sdoor"]);
}

/// One name can knock more than once at the same time (an invite holds
/// several keys; `--github` brings them all): the host judges each knock
/// by its key and source, so an answer by name alone must never let in a
/// connection the host did not look at, such as one from a stolen key
/// waiting beside the real guest.
#[test]
fn approve_answers_only_the_connection_the_host_names() {
    let Some((w, guests)) = World::new("door2", &[("sal", "sdoor2", Some("mirror"))]) else {
        return;
    };
    w.start_session_with(
        "sdoor2",
        "mirror",
        HOST_PROGRAM,
        &["--approve", "--approve-timeout", "120s"],
    );
    let host = w.attach_host("sdoor2");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let waiting = |w: &World| -> Vec<String> {
        w.guests("sdoor2")
            .iter()
            .filter(|g| g["state"] == "waiting")
            .map(|g| g["source"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let wait_for = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = waiting(&w);
            if now.len() == want {
                return now;
            }
            assert!(Instant::now() < deadline, "waiting: {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&first, "must let you in", 20);
    // The same key from a second terminal (its own window).
    let twin = common::sshd::Guest {
        name: "sal-twin".into(),
        key: guests[0].key.clone(),
    };
    let second = w.join_in_window(&twin, 100, 30);
    w.wait_screen(&second, "must let you in", 20);
    let sources = wait_for(2);
    // No menu for either: its "admit" would let in whichever knocked
    // last (found by a read-only attack hunt). The host's keys after its
    // prefix and `a` reach its shell.
    w.wait_screen(
        &host,
        "two connections of sal wait, so no menu: this one is from",
        20,
    );
    w.drv(&["send-keys", "-t", &host, "C-b", "a"]);
    w.drv(&["send-keys", "-t", &host, "-l", "echo NOMENU-$((6*7))"]);
    w.drv(&["send-keys", "-t", &host, "Enter"]);
    w.wait_screen(&host, "NOMENU-42", 20);
    assert!(
        !w.screen(&host).contains("Admit as requested"),
        "a menu opened for one of two connections of a name"
    );
    wait_for(2);
    let out = w.host_pairjail(&["approve", "sal", "--session", "sdoor2"]);
    assert!(
        !out.status.success(),
        "both connections let in by name: {}",
        text(&out.stdout)
    );
    let said = text(&out.stderr);
    for src in &sources {
        assert!(said.contains(src.as_str()), "{src} not named: {said}");
    }
    // Both still wait (a slow `status` answer reads as none: asked again).
    wait_for(2);
    // The one the host names, by where it comes from.
    let out = w.host_pairjail(&[
        "approve",
        "sal",
        "--from",
        &sources[0],
        "--session",
        "sdoor2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(wait_for(1), vec![sources[1].clone()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let admitted = |t: &str| w.screen(t).contains("HOST-MARKER-4242");
    while !(admitted(&first) || admitted(&second)) {
        assert!(Instant::now() < deadline, "nobody was let in");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!(admitted(&first) && admitted(&second)), "both were let in");
    // The one left is the only one waiting: its name alone answers it.
    let out = w.host_pairjail(&["deny", "sal", "--session", "sdoor2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = if admitted(&first) { &second } else { &first };
    w.wait_screen(other, "SSH-EXIT=1", 20);
    let _ = w.host_pairjail(&["stop", "--session", "sdoor2"]);
}

/// A pair guest can run tmux in a pane and attach a client of its own to
/// the session (the host's uid, not started by the broker): the door's
/// menu must not open there, or the guest (or a script it leaves running)
/// could let anyone in. In a session where guests can type, the door is
/// answered only with `pairjail approve` / `deny`, which the jail cannot
/// reach.
#[test]
fn a_pair_guest_cannot_answer_the_door_from_a_client_of_its_own() {
    let Some((w, guests)) = World::new(
        "dnest",
        &[("ned", "sdn", Some("pair")), ("pia", "sdn", Some("pair"))],
    ) else {
        return;
    };
    w.start_session_with(
        "sdn",
        "mirror,pair",
        HOST_PROGRAM,
        &["--approve", "--approve-timeout", "60s"],
    );
    let host = w.attach_host("sdn");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let ned = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&ned, "must let you in", 20);
    let out = w.host_pairjail(&["approve", "ned", "--session", "sdn"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&ned, "HOST-MARKER-4242", 20);

    // ned, from inside the (jailed) session, cannot reach the broker's
    // control socket to answer for the host.
    let control = w.session_paths("sdn").join("control.sock");
    w.drv(&[
        "send-keys",
        "-t",
        &ned,
        &format!(
            "test -e {} && echo CTL-$((1+1))-REACHED || echo CTL-$((6*7))-HIDDEN",
            control.display()
        ),
        "Enter",
    ]);
    eventually(10, || {
        if pane_has(&w, "sdn", "CTL-42-HIDDEN") {
            Ok(())
        } else {
            Err("the guest's probe of the control socket never answered".into())
        }
    });
    assert!(!pane_has(&w, "sdn", "CTL-2-REACHED"));

    // ned makes the tmux commands the door used answer at once, and with
    // "pair": a door that asked tmux would let the next guest in.
    w.drv(&[
        "send-keys",
        "-t",
        &ned,
        "-l",
        "tmux set -s 'command-alias[98]' 'wait-for=display-message -p x'; tmux set -s 'command-alias[99]' 'show-options=display-message -p pair ; show-options -q'; echo ALIASED-$((40+2))",
    ]);
    w.drv(&["send-keys", "-t", &ned, "Enter"]);
    eventually(10, || {
        if pane_has(&w, "sdn", "ALIASED-42") {
            Ok(())
        } else {
            Err("ned's aliases never answered".into())
        }
    });

    // ned attaches a client of its own, from a pane of the session.
    let clients = || {
        w.host_tmux("sdn", &["list-clients", "-F", "#{client_pid}"])
            .lines()
            .count()
    };
    let before = clients();
    w.drv(&[
        "send-keys",
        "-t",
        &ned,
        "env -u TMUX tmux -S \"${TMUX%%,*}\" attach -t =sdn",
        "Enter",
    ]);
    eventually(20, || {
        (clients() > before)
            .then_some(())
            .ok_or_else(|| "ned's own client never attached".to_string())
    });

    let pia = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&pia, "must let you in", 20);
    // The host is told how to answer (the share's log has the whole line;
    // the status line cuts it at the key).
    let log = w.runtime.join(HOST).join("sdn.log");
    eventually(20, || {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        (said.contains("pia wants to join")
            && said.contains("no menu in a session where guests can type")
            && said.contains("pairjail approve pia"))
        .then_some(())
        .ok_or(said)
    });
    wait_listed(&w, "sdn", &["ned:pair:connected", "pia:pair:waiting"]);
    assert!(
        !w.screen(&pia).contains("HOST-MARKER-4242"),
        "pia was let in without the host:\n{}",
        w.screen(&pia)
    );
    for (who, screen) in [
        ("the host", w.screen(&host)),
        ("ned", w.screen(&ned)),
        (
            "the session's pane",
            w.host_tmux("sdn", &["capture-pane", "-p", "-t", "=sdn:"]),
        ),
    ] {
        assert!(
            !screen.contains("Admit as"),
            "the door's menu opened where {who} sees it:\n{screen}"
        );
    }
    let out = w.host_pairjail(&["deny", "pia", "--session", "sdn"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = w.wait_screen(&pia, "SSH-EXIT=1", 20);
    assert!(s.contains(&format!("{HOST} did not let you in")), "{s}");
    let _ = w.host_pairjail(&["stop", "--session", "sdn"]);
}
