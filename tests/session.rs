//! Sharing a session end to end: a real sshd on 127.0.0.1, real ssh
//! clients with generated keys and forced commands, real users, the host's
//! real tmux server; screens read with capture-pane.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sshd::{GUEST_USER, HOST, World, hex, msg_frame};
use common::{run_as, text};

const HOST_PROGRAM: &str = "echo HOST-MARKER-4242; exec sh";

#[test]
fn mirror_guest_sees_the_host_and_nothing_it_types_reaches_tmux() {
    let Some((w, guests)) = World::new("mirror", &[("bob", "smirror", Some("mirror"))]) else {
        return;
    };
    w.start_session("smirror", "mirror", HOST_PROGRAM);
    let host = w.attach_host("smirror");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);

    let before_pane = w.host_tmux("smirror", &["capture-pane", "-p", "-t", "=smirror:"]);
    let before_windows = w.host_tmux(
        "smirror",
        &[
            "list-windows",
            "-a",
            "-F",
            "#{session_name}:#{window_index}",
        ],
    );
    let before_sessions = w.host_tmux("smirror", &["list-sessions", "-F", "#{session_name}"]);
    let proof = w.dir.join("mirror-typed-this");

    // 10,000 random bytes, sent raw (hex) in chunks, then prefix sequences
    // and a command that would leave a file behind if it ever ran.
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut bytes = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        bytes.push((seed & 0xff) as u8);
    }
    for chunk in bytes.chunks(500) {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let mut args = vec!["send-keys", "-t", &guest, "-H"];
        args.extend(hex.iter().map(String::as_str));
        w.drv(&args);
    }
    let touch = format!("touch {}", proof.display());
    for keys in [
        vec!["C-b", ":"],
        vec!["run-shell", "'", &touch, "'", "Enter"],
        vec!["C-b", "c"],
        vec!["C-b", "d"],
        vec!["C-b", "("],
        vec!["C-b", "%"],
        vec![&touch, "Enter"],
        vec!["\x1b[200~", &touch, "\x1b[201~", "Enter"],
    ] {
        let mut args = vec!["send-keys", "-t", &guest];
        args.extend(keys.iter().copied());
        w.drv(&args);
    }
    // Everything typed has reached the broker (and was dropped): compare.
    w.barrier(&guest, "smirror");
    assert_eq!(
        w.host_tmux("smirror", &["capture-pane", "-p", "-t", "=smirror:"]),
        before_pane,
        "the host's pane changed"
    );
    assert_eq!(
        w.host_tmux(
            "smirror",
            &[
                "list-windows",
                "-a",
                "-F",
                "#{session_name}:#{window_index}"
            ]
        ),
        before_windows,
        "the window list changed"
    );
    assert_eq!(
        w.host_tmux("smirror", &["list-sessions", "-F", "#{session_name}"]),
        before_sessions
    );
    assert!(!proof.exists(), "a command typed by the mirror guest ran");
    // The guest is still attached and still sees the host.
    w.wait_screen(&guest, "HOST-MARKER-4242", 5);
    // And its smaller terminal did not shrink the host's window.
    let size = w.host_tmux(
        "smirror",
        &[
            "display-message",
            "-p",
            "-t",
            "=smirror:",
            "#{window_width}",
        ],
    );
    assert_eq!(
        size.trim(),
        "120",
        "the host's window was resized by the mirror guest"
    );
    let _ = w.host_pairjail(&["stop", "--session", "smirror"]);
}

#[test]
fn pair_guest_typing_reaches_the_pane() {
    let Some((w, guests)) = World::new("pair", &[("carol", "spair", Some("pair"))]) else {
        return;
    };
    w.start_session("spair", "mirror,pair", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    w.drv(&[
        "send-keys",
        "-t",
        &guest,
        "echo PAIR-$((6*7))-TYPED",
        "Enter",
    ]);
    common::eventually(10, || {
        let pane = w.host_tmux("spair", &["capture-pane", "-p", "-t", "=spair:"]);
        if pane.contains("PAIR-42-TYPED") {
            Ok(())
        } else {
            Err(format!("the pair guest's command never ran:\n{pane}"))
        }
    });
    let status = w.host_pairjail(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let g = &v[0]["guests"][0];
    assert_eq!(g["name"], "carol");
    assert_eq!(g["mode"], "pair");
    assert!(
        g["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{g}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "spair"]);
}

#[test]
fn a_pair_guest_who_detaches_is_disconnected_and_leaves_status() {
    let Some((w, guests)) = World::new("detach", &[("erin", "sdetach", Some("pair"))]) else {
        return;
    };
    w.start_session("sdetach", "mirror,pair", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    common::eventually(10, || {
        let v: serde_json::Value =
            serde_json::from_slice(&w.host_pairjail(&["status", "--json"]).stdout).unwrap();
        if v[0]["guests"][0]["name"] == "erin" {
            Ok(())
        } else {
            Err(format!("erin is not listed: {v}"))
        }
    });
    // The guest's own tmux client ends (detach): the broker must not keep
    // its pty alive, so the guest's ssh ends and status forgets them.
    w.drv(&["send-keys", "-t", &guest, "C-b", "d"]);
    w.wait_screen(&guest, "SSH-EXIT=", 20);
    common::eventually(10, || {
        let v: serde_json::Value =
            serde_json::from_slice(&w.host_pairjail(&["status", "--json"]).stdout).unwrap();
        if v[0]["guests"].as_array().is_some_and(|g| g.is_empty()) {
            Ok(())
        } else {
            Err(format!("a detached guest is still listed: {v}"))
        }
    });
    let _ = w.host_pairjail(&["stop", "--session", "sdetach"]);
}

#[test]
fn rogue_guest_has_its_own_current_window() {
    let Some((w, guests)) = World::new("rogue", &[("dave", "srogue", Some("rogue"))]) else {
        return;
    };
    w.start_session("srogue", "rogue", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    w.drv(&["send-keys", "-t", &guest, "C-b", "c"]);
    let (sessions, rogue, host) = common::eventually(10, || {
        let sessions = w.host_tmux(
            "srogue",
            &[
                "list-sessions",
                "-F",
                "#{session_name} #{session_group} #{window_index}",
            ],
        );
        let pick = |prefix: &str| -> Vec<String> {
            sessions
                .lines()
                .filter(|l| l.starts_with(prefix))
                .map(String::from)
                .collect()
        };
        let (rogue, host) = (pick("srogue-dave-"), pick("srogue "));
        if rogue.len() == 1 && rogue[0].ends_with(" 1") {
            Ok((sessions.clone(), rogue, host))
        } else {
            Err(format!(
                "no grouped session with its own window:\n{sessions}"
            ))
        }
    });
    assert_eq!(host.len(), 1, "{sessions}");
    assert!(
        host[0].ends_with(" 0"),
        "the host's current window moved: {sessions}"
    );
    assert_eq!(
        rogue[0].split(' ').nth(1),
        host[0].split(' ').nth(1),
        "not grouped: {sessions}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "srogue"]);
}

#[test]
fn joining_with_no_session_prints_the_refusal_and_exits_1() {
    let Some((w, guests)) = World::new("none", &[("frank", "snone", Some("mirror"))]) else {
        return;
    };
    w.assert_join_refused(
        &guests[0],
        &format!("pairjail: {HOST} is not sharing a session right now"),
    );
}

#[test]
fn a_mode_the_host_did_not_allow_is_refused() {
    let Some((w, guests)) = World::new("mode", &[("gina", "smode", Some("pair"))]) else {
        return;
    };
    w.start_session("smode", "mirror", HOST_PROGRAM);
    w.assert_join_refused(
        &guests[0],
        "pairjail: mode pair is not allowed in this session (allowed: mirror;",
    );
    let _ = w.host_pairjail(&["stop", "--session", "smode"]);
}

#[test]
fn ending_the_session_disconnects_every_guest() {
    let Some((w, guests)) = World::new(
        "end",
        &[
            ("hal", "send", Some("mirror")),
            ("ida", "send", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("send", "mirror", HOST_PROGRAM);
    let a = w.join_in_window(&guests[0], 80, 24);
    let b = w.join_in_window(&guests[1], 80, 24);
    w.wait_screen(&a, "HOST-MARKER-4242", 20);
    w.wait_screen(&b, "HOST-MARKER-4242", 20);
    // The host's last shell exits: the session ends.
    w.host_tmux("send", &["send-keys", "-t", "=send:", "exit", "Enter"]);
    // Generous bounds that only catch a hang; the 1 s goal is measured by `just bench`.
    let sa = w.wait_screen(&a, "SSH-EXIT=", 10);
    let sb = w.wait_screen(&b, "SSH-EXIT=", 10);
    for s in [sa, sb] {
        assert!(
            s.contains("[pairjail] the host's session ended")
                || s.contains("[pairjail] the session ended"),
            "{s}"
        );
    }
    // Nothing is left to join, and the runtime directory is cleaned up.
    let out = w.ssh_join(&guests[0]);
    assert_eq!(out.status.code(), Some(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.session_paths("send").join("broker.sock").exists() {
        assert!(Instant::now() < deadline, "broker socket left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_resize_of_the_guest_terminal_reaches_its_tmux_client() {
    let Some((w, guests)) = World::new("resize", &[("jo", "sresize", Some("mirror"))]) else {
        return;
    };
    w.start_session("sresize", "mirror", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    w.drv(&["resize-window", "-t", &guest, "-x", "91", "-y", "23"]);
    common::eventually(10, || {
        let clients = w.host_tmux(
            "sresize",
            &[
                "list-clients",
                "-F",
                "#{client_width}x#{client_height} #{client_flags}",
            ],
        );
        if clients
            .lines()
            .any(|l| l.starts_with("91x23 ") && l.contains("read-only"))
        {
            Ok(())
        } else {
            Err(format!(
                "the resize never reached the guest's tmux client:\n{clients}"
            ))
        }
    });
    let _ = w.host_pairjail(&["stop", "--session", "sresize"]);
}

#[test]
fn ssh_commands_forwarding_scp_and_sftp_give_nothing_but_the_session() {
    let Some((w, guests)) = World::new("fwd", &[("kim", "sfwd", Some("mirror"))]) else {
        return;
    };
    let key = &guests[0].key;
    let target = format!("{GUEST_USER}@127.0.0.1");

    // A command without a terminal: the forced command runs instead and refuses.
    let out = w
        .ssh_command(key)
        .args(["-T", &target, "cat /etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains("root:x:0"), "{all}");
    assert!(all.contains("a terminal is required"), "{all}");
    // With a terminal: still the forced command (here: no session), never cat.
    let out = w
        .ssh_command(key)
        .args(["-tt", &target, "cat /etc/passwd"])
        .output()
        .unwrap();
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !all.contains("root:x:0") && all.contains("is not sharing a session"),
        "{all}"
    );

    // -W (stdio forwarding) to sshd itself.
    let out = w
        .ssh_command(key)
        .args(["-W", &format!("127.0.0.1:{}", w.port), &target])
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("SSH-2.0"), "-W reached sshd");
    assert_ne!(out.status.code(), Some(0));

    // -R: the server refuses the remote forward.
    let out = w
        .ssh_command(key)
        .args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:9",
            &target,
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "-R was accepted");

    // -L and -D: the local listener opens, but nothing gets through.
    for flag in ["-L", "-D"] {
        let lport = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = if flag == "-L" {
            format!("{lport}:127.0.0.1:{}", w.port)
        } else {
            lport.to_string()
        };
        let mut ssh = w
            .ssh_command(key)
            .args(["-N", flag, &spec, &target])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", lport)) {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                if flag == "-D" {
                    // SOCKS5: no auth, then CONNECT 127.0.0.1:<sshd port>.
                    let _ = s.write_all(&[5, 1, 0]);
                    let mut r = [0u8; 2];
                    let _ = s.read_exact(&mut r);
                    let p = w.port.to_be_bytes();
                    let _ = s.write_all(&[5, 1, 0, 1, 127, 0, 0, 1, p[0], p[1]]);
                }
                let _ = s.read_to_end(&mut got);
                break;
            }
            assert!(Instant::now() < deadline, "{flag} listener never opened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = ssh.kill();
        let _ = ssh.wait();
        assert!(
            !String::from_utf8_lossy(&got).contains("SSH-2.0"),
            "{flag} forwarded a connection to sshd"
        );
        if flag == "-D" {
            // A SOCKS success reply is [5, 0, …]; prohibited is anything else or nothing.
            assert!(
                !(got.len() >= 2 && got[0] == 5 && got[1] == 0 && got.len() > 10),
                "-D connected: {got:?}"
            );
        }
    }

    // -A: no agent socket appears for the guest user.
    let before = agent_dirs();
    let out = w
        .ssh_command(key)
        .args(["-A", "-tt", &target])
        .env("SSH_AUTH_SOCK", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(agent_dirs(), before, "an agent socket was created");

    // scp and sftp: the forced command runs instead; nothing is copied.
    let src = w.dir.join("scp-src");
    std::fs::write(&src, "x").unwrap();
    let dst = w.dir.join("scp-dst");
    let port = w.port.to_string();
    let scp = Command::new("scp")
        .args([
            "-i",
            key.to_str().unwrap(),
            "-P",
            &port,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .arg(&src)
        .arg(format!("{target}:{}", dst.display()))
        .output()
        .unwrap();
    assert_ne!(scp.status.code(), Some(0));
    assert!(!dst.exists(), "scp wrote a file");
    let mut sftp = Command::new("sftp")
        .args([
            "-i",
            key.to_str().unwrap(),
            "-P",
            &port,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-b",
            "-",
        ])
        .arg(&target)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = sftp.stdin.take().unwrap().write_all(b"ls /etc\n");
    }
    let out = sftp.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("passwd"), "sftp listed /etc");
}

fn agent_dirs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ssh-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Talks to the broker socket as the host user with a raw client, the way a
/// buggy or hostile join would.
#[test]
fn malformed_frames_and_old_versions_close_that_client_only() {
    let Some((w, guests)) = World::new("proto", &[("lee", "sproto", Some("mirror"))]) else {
        return;
    };
    w.start_session(
        "sproto",
        "mirror",
        "echo HOST-MARKER-4242; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    );
    let guest = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);

    // Garbage where a hello should be.
    let said = w.raw_client(HOST, "sproto", &hex(b"\x09\xff\xff\xff\xffgarbage"));
    assert!(said.contains("expected a hello"), "{said:?}");
    // A message type with control characters in it: the share's log (which
    // the host reads in a terminal) quotes them back, never obeys them.
    let mut frames = msg_frame(
        br#"{"type":"hello","version":1,"guest":"lee","mode":"mirror","term":"xterm","cols":80,"rows":24,"source":null}"#,
    );
    frames.extend(msg_frame(br#"{"type":"\u001b]2;PJ-TITLE\u0007\u001b[2J"}"#));
    w.raw_client(HOST, "sproto", &hex(&frames));
    let log = std::fs::read(w.runtime.join(HOST).join("sproto.log")).unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("PJ-TITLE"), "the frame was not logged:\n{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{7}'),
        "control characters reached the log:\n{log:?}"
    );
    // A hello from a future protocol version.
    let hello = br#"{"type":"hello","version":99,"guest":"zed","mode":"mirror","term":"xterm","cols":80,"rows":24,"source":null}"#;
    let frame = msg_frame(hello);
    let said = w.raw_client(HOST, "sproto", &hex(&frame));
    assert!(
        said.contains("protocol version 99 is not supported"),
        "{said:?}"
    );
    // A welcomed client that then sends a malformed frame is dropped...
    let ok_hello = br#"{"type":"hello","version":1,"guest":"lee","mode":"mirror","term":"xterm","cols":80,"rows":24,"source":null}"#;
    let mut frames = msg_frame(ok_hello);
    frames.extend_from_slice(b"\x07\x00\x00\x00\x01x");
    let said = w.raw_client(HOST, "sproto", &hex(&frames));
    assert!(said.contains("malformed frame from the guest"), "{said:?}");
    // A message type of 12 KB, C1 controls in it (a clipboard write on
    // terminals that read them): serde quotes an unknown type whole, and a
    // guest could grow the share's log, the audit log and the recording by
    // a megabyte a login. What gets written of it is short, and no raw C1
    // control reaches the audit log. (A larger message is refused from its
    // header, below.)
    let log_path = w.runtime.join(HOST).join("sproto.log");
    let log_before = std::fs::metadata(&log_path).unwrap().len();
    // The host's audit log holds every earlier run's lines too.
    let audit = PathBuf::from(format!("/home/{HOST}/.local/state/pairjail/audit.jsonl"));
    let audit_before = std::fs::read(&audit).unwrap_or_default().len();
    let long = "PJ-LONG\u{9d}52;c;cHduZWQ=\u{9c}".repeat(500);
    let mut frames = msg_frame(ok_hello);
    frames.extend(msg_frame(format!(r#"{{"type":"{long}"}}"#).as_bytes()));
    assert!(frames.len() > 12_000);
    let said = w.raw_client(HOST, "sproto", &hex(&frames));
    assert!(said.contains("malformed frame from the guest"), "{said:?}");
    let grew = std::fs::metadata(&log_path).unwrap().len() - log_before;
    assert!(grew < 2048, "the share's log grew by {grew} bytes");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read(&audit).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(audit_before..).unwrap_or_default());
        if let Some(l) = text
            .lines()
            .find(|l| l.contains(r#""session":"sproto""#) && l.contains("PJ-LONG"))
        {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no audit line for the long frame"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(line.len() < 2048, "an audit line of {} bytes", line.len());
    assert!(
        !line.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
        "a raw C1 control reached the audit log: {line:?}"
    );
    // 40 KB: larger than any message a client sends, refused from its
    // header, never read whole or parsed on the broker's one thread.
    let log_before = std::fs::metadata(&log_path).unwrap().len();
    let mut frames = msg_frame(ok_hello);
    frames.extend(msg_frame(
        format!(r#"{{"type":"{}"}}"#, "x".repeat(40_000)).as_bytes(),
    ));
    let said = w.raw_client(HOST, "sproto", &hex(&frames));
    assert!(said.contains("larger than any a client sends"), "{said:?}");
    let grew = std::fs::metadata(&log_path).unwrap().len() - log_before;
    assert!(grew < 2048, "the share's log grew by {grew} bytes");
    // ...while the real guest keeps receiving the session.
    let before = w.screen(&guest);
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.screen(&guest) == before {
        assert!(
            Instant::now() < deadline,
            "the other guest stopped receiving output"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!w.screen(&guest).contains("SSH-EXIT="));
    let _ = w.host_pairjail(&["stop", "--session", "sproto"]);
}

#[test]
fn the_host_attaches_with_pairjail_attach_and_sees_status() {
    let Some((w, guests)) = World::new("attach", &[("max", "sattach", Some("mirror"))]) else {
        return;
    };
    w.start_session("sattach", "mirror", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    let cmd = format!(
        "setpriv --reuid {HOST} --regid {HOST} --init-groups -- env HOME=/home/{HOST} {} attach --session sattach --runtime-dir {}; echo ATTACH-EXIT=$?; sleep 600",
        common::shared_binary().display(),
        w.runtime.display()
    );
    w.drv(&["new-window", "-d", "-n", "hostattach", &cmd]);
    w.wait_screen("drv:hostattach", "HOST-MARKER-4242", 20);
    let out = w.host_pairjail(&["status"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("session sattach (allowed: mirror, default: mirror), 1 guest(s)"),
        "{s}"
    );
    assert!(s.contains("max") && s.contains("from 127.0.0.1:"), "{s}");
    let _ = w.host_pairjail(&["stop", "--session", "sattach"]);
    w.wait_screen("drv:hostattach", "ATTACH-EXIT=", 10);
}

#[test]
fn direct_transport_guest_runs_its_own_jailed_tmux_client_read_only() {
    let Some((w, guests)) = World::new(
        "direct",
        &[("nina", "sdirect", Some("mirror --transport direct"))],
    ) else {
        return;
    };
    w.start_session_with("sdirect", "mirror", HOST_PROGRAM, &["--direct"]);
    let host = w.attach_host("sdirect");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let guest = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The guest's client is tmux's own, connected as the pair user, read-only.
    let clients = w.host_tmux(
        "sdirect",
        &["list-clients", "-F", "#{client_uid} #{client_flags}"],
    );
    let pair_uid = nix::unistd::User::from_name(GUEST_USER)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert!(
        clients
            .lines()
            .any(|l| l.starts_with(&format!("{pair_uid} ")) && l.contains("read-only")),
        "{clients}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&w.host_pairjail(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status[0]["guests"][0]["name"], "nina");

    let before = w.host_tmux("sdirect", &["capture-pane", "-p", "-t", "=sdirect:"]);
    let proof = w.dir.join("direct-typed-this");
    let touch = format!("touch {}", proof.display());
    w.drv(&["send-keys", "-t", &guest, &touch, "Enter"]);
    w.drv(&["send-keys", "-t", &guest, "C-b", ":"]);
    w.drv(&["send-keys", "-t", &guest, "kill-server", "Enter"]);
    w.barrier(&guest, "sdirect");
    assert_eq!(
        w.host_tmux("sdirect", &["capture-pane", "-p", "-t", "=sdirect:"]),
        before
    );
    assert!(!proof.exists(), "a read-only direct guest ran a command");
    // Ending the session ends the guest's client too.
    let _ = w.host_pairjail(&["stop", "--session", "sdirect"]);
    w.wait_screen(&guest, "SSH-EXIT=", 10);
}

#[test]
fn a_direct_guest_of_one_host_never_reaches_another_hosts_session() {
    // eve is invited (by the forced command sshd runs) to a direct share of
    // mallory's, a local user. mallory's "share" is a broker of his own
    // that welcomes anyone, and a link from his session's tmux directory
    // to the host's: the pair user, whom the host's direct share lets
    // attach, would follow it into the host's session.
    const MALLORY: &str = "pjmallory";
    let Some((w, guests)) = World::new("dlink", &[("eve", "sdl", Some("pair --transport direct"))])
    else {
        return;
    };
    common::ensure_user(MALLORY);
    // The host never invited eve (World invites every guest it makes).
    let revoke = w.host_pairjail(&["invite", "revoke", "eve"]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let keys = w.dir.join("keys").join(GUEST_USER);
    let lines = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(
        &keys,
        lines.replace(&format!("--host {HOST} "), &format!("--host {MALLORY} ")),
    )
    .unwrap();
    w.start_session_with(
        "sdl",
        "mirror,pair",
        HOST_PROGRAM,
        &["--direct", "--unconfined-session"],
    );
    let mine = w.runtime.join(MALLORY);
    // mallory names his session after the host's.
    let session = mine.join("sdl");
    std::fs::create_dir_all(&session).unwrap();
    std::os::unix::fs::symlink(w.session_paths("sdl").join("tmux"), session.join("tmux")).unwrap();
    let chown = Command::new("chown")
        .args(["-hR", &format!("{MALLORY}:{MALLORY}")])
        .arg(&mine)
        .output()
        .unwrap();
    assert!(chown.status.success(), "{}", text(&chown.stderr));
    let welcome = msg_frame(br#"{"type":"welcome","session":"sdl","mode":"pair"}"#);
    let broker = session.join("broker.sock");
    let script = format!(
        "import os,socket\ns=socket.socket(socket.AF_UNIX)\ns.bind({p:?})\nos.chmod({p:?}, 0o666)\ns.listen(4)\nkeep=[]\nwhile True:\n  c,_=s.accept()\n  c.recv(65536)\n  c.sendall(bytes.fromhex({h:?}))\n  keep.append(c)\n",
        p = broker.display().to_string(),
        h = hex(&welcome)
    );
    let mut fake = run_as(MALLORY, "/usr/bin/python3")
        .args(["-c", &script])
        .current_dir("/")
        .spawn()
        .unwrap();
    common::eventually(10, || {
        if broker.exists() {
            Ok(())
        } else {
            Err("mallory's broker never listened".to_string())
        }
    });
    let guest = w.join_in_window(&guests[0], 100, 30);
    let screen = w.wait_screen(&guest, "SSH-EXIT=", 30);
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(
        !screen.contains("HOST-MARKER-4242"),
        "mallory's guest reached the host's session:\n{screen}"
    );
    assert!(
        screen
            .replace('\n', "")
            .contains(&format!("not {MALLORY}'s own socket"))
            && screen.contains("SSH-EXIT=1"),
        "{screen}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "sdl"]);
    let _ = std::fs::remove_dir_all(&mine);
}

#[test]
fn the_direct_transport_is_refused_unless_the_host_enabled_it() {
    let Some((w, guests)) = World::new(
        "nodirect",
        &[("olga", "snodirect", Some("mirror --transport direct"))],
    ) else {
        return;
    };
    w.start_session("snodirect", "mirror", HOST_PROGRAM);
    w.assert_join_refused(&guests[0], "the host did not enable the direct transport");
    let _ = w.host_pairjail(&["stop", "--session", "snodirect"]);
}

#[test]
fn only_the_host_controls_its_session() {
    let Some((w, _guests)) = World::new("ctl", &[]) else {
        return;
    };
    w.start_session("sctl", "mirror", HOST_PROGRAM);
    let control = w.session_paths("sctl").join("control.sock");
    // Another user cannot even open the control socket (mode 0600)...
    let stop = br#"{"type":"stop"}"#;
    let frame = msg_frame(stop);
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(bytes.fromhex({:?}))\ns.settimeout(5)\nprint(repr(s.recv(4096)))\n",
        control.display().to_string(),
        hex(&frame)
    );
    let out = run_as(GUEST_USER, "/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("PermissionError"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // ...and root, who can, is refused by the peer-credential check.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !said.contains("stopping"),
        "root stopped the host's session: {said}"
    );
    assert!(
        said.contains("b''") || said.contains("BrokenPipe") || said.contains("ConnectionReset"),
        "{said}"
    );
    // The session is still shared.
    let status: serde_json::Value =
        serde_json::from_slice(&w.host_pairjail(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status[0]["session"], "sctl");
    let _ = w.host_pairjail(&["stop", "--session", "sctl"]);
}

/// The `pairjail join` serving a guest, found by its `--guest NAME`.
fn join_pid(guest: &str) -> Option<i32> {
    let want = format!("--guest\0{guest}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("\0join\0") && cmd.contains(&want)).then_some(pid)
    })
}

/// sshd ends a session with SIGHUP, an admin with SIGTERM: either, sent to
/// `pairjail join`, ends the guest's jailed relay (its jail's pid 1, which
/// handles neither) and so the guest's connection.
#[test]
fn a_signal_to_join_ends_the_guests_relay() {
    let Some((w, guests)) = World::new(
        "joinsig",
        &[
            ("sig1", "sjoinsig", Some("mirror")),
            ("sig2", "sjoinsig", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("sjoinsig", "mirror", HOST_PROGRAM);
    for (g, signal) in guests.iter().zip([
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ]) {
        let t = w.join_in_window(g, 80, 24);
        w.wait_screen(&t, "HOST-MARKER-4242", 20);
        let pid = common::eventually(10, || {
            join_pid(&g.name).ok_or(format!("no join process for {}", g.name))
        });
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        w.wait_screen(&t, "SSH-EXIT=", 20);
    }
    common::eventually(10, || {
        let n = w.guests("sjoinsig").len();
        (n == 0)
            .then_some(())
            .ok_or(format!("{n} guests still listed"))
    });
    let _ = w.host_pairjail(&["stop", "--session", "sjoinsig"]);
}
