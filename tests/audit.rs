//! A record a security team can trust, tried for real: a scripted share
//! (invites, join, typing, promote, kick, leave, stop) through a real
//! sshd leaves exactly the expected audit events, each valid against the
//! published schema and copied to a syslog socket; `audit verify` names
//! the line that was edited, removed or swapped; the recording replays
//! with `asciinema cat` and says which guest typed what; a flood stays
//! within the recording's documented bound.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::{HOST, World};
use common::{eventually, shared_binary, text};

/// The host's own audit log (the default: every share and invite of the
/// host appends to it, so lines of other tests' sessions are in it too).
fn host_log() -> PathBuf {
    PathBuf::from(format!("/home/{HOST}/.local/state/pairjail/audit.jsonl"))
}

/// The complete lines (another test's broker may be writing the next).
fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `event guest` for each line of one session, from line `from` on.
fn events(path: &Path, session: &str, from: usize) -> Vec<String> {
    lines_of(path)
        .iter()
        .skip(from)
        .filter(|l| l["session"] == session)
        .map(|l| {
            let who = l["guest"]
                .as_str()
                .map(|g| format!(" {g}"))
                .unwrap_or_default();
            format!("{}{who}", l["event"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// One memory figure (KiB) of a process's /proc/PID/status.
fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A directory the host may write into.
/// A tmpfs of `size` mounted on `dir` (root only), unmounted when the
/// guard goes: a disk that fills up.
fn small_tmpfs(dir: &Path, size: &str) -> Unmount {
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size},mode=0700"))
        .arg("tmpfs")
        .arg(dir)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a small tmpfs");
    Unmount(dir.to_path_buf())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn host_dir(tag: &str, name: &str) -> PathBuf {
    let d = World::dir_for(tag).join(name);
    std::fs::create_dir_all(&d).unwrap();
    let st = Command::new("chown")
        .arg(format!("{HOST}:{HOST}"))
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    d
}

/// `asciinema cat` (Debian's 2.2 wants a terminal: `script` gives it one).
fn replay(cast: &Path) -> String {
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat '{}'", cast.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema cat: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn pairjail(args: &[&str]) -> std::process::Output {
    Command::new(shared_binary()).args(args).output().unwrap()
}

/// Validates every line of `log` against `pairjail audit schema` with
/// python's jsonschema (an independent validator).
fn validate_all(log: &Path) {
    let schema = pairjail(&["audit", "schema"]);
    assert!(schema.status.success(), "{}", text(&schema.stderr));
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.json");
    std::fs::write(&schema_file, &schema.stdout).unwrap();
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema)
n = 0
for i, line in enumerate(open(sys.argv[2]), 1):
    errs = list(v.iter_errors(json.loads(line)))
    if errs:
        print(f"line {i}: {errs[0].message}")
        sys.exit(1)
    n += 1
# A schema that accepts anything proves nothing: a line with an unknown
# event and one missing its chain must both be rejected.
bad = json.loads(line)
bad["event"] = "made-up"
assert list(v.iter_errors(bad)), "an unknown event passed"
bad = json.loads(line)
del bad["prev"]
assert list(v.iter_errors(bad)), "a line without prev passed"
print(f"{n} valid")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&schema_file)
        .arg(log)
        .output()
        .expect("python3 (apt install python3-jsonschema)");
    assert!(
        out.status.success(),
        "schema validation: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `audit verify` on `lines` written to a file: (exit code, output).
fn verify(lines: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("audit.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    let out = pairjail(&["audit", "verify", f.to_str().unwrap()]);
    (out.status.code(), text(&out.stdout) + &text(&out.stderr))
}

fn tampering_is_named(log: &Path) {
    let lines: Vec<String> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(lines.len() > 8, "{} lines", lines.len());
    let (code, out) = verify(&lines);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok,"), "{out}");
    let k = lines.len() / 2;
    // One line edited (a guest's name), one removed, two swapped.
    let mut edited = lines.clone();
    let field = if edited[k].contains("\"machine\"") {
        "\"machine\":\""
    } else {
        "\"v\":"
    };
    edited[k] = edited[k].replacen(field, &format!("{field}X"), 1);
    let (code, out) = verify(&edited);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("line {}:", k + 1)), "edit: {out}");
    let mut removed = lines.clone();
    removed.remove(k);
    let (code, out) = verify(&removed);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("line {}:", k + 1)), "removal: {out}");
    let mut swapped = lines.clone();
    swapped.swap(k, k + 1);
    let (code, out) = verify(&swapped);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("line {}:", k + 1)), "swap: {out}");
}

#[test]
fn a_scripted_share_is_audited_exactly_verified_and_replayed_with_attributed_input() {
    // The host's log outlives test runs: only what this one adds counts.
    let before = lines_of(&host_log()).len();
    let Some((w, guests)) = World::new(
        "audit",
        &[
            ("bob", "saudit", Some("mirror")),
            ("carol", "saudit", Some("pair")),
        ],
    ) else {
        return;
    };
    let rec = host_dir("audit", "rec");
    let syslog_path = World::dir_for("audit").join("syslog.sock");
    let _ = std::fs::remove_file(&syslog_path);
    let syslog = UnixDatagram::bind(&syslog_path).unwrap();
    // A syslog daemon that reads as lines come (its queue holds only a
    // few datagrams), until the share's last line or two minutes; what
    // ended it is kept for the failure message.
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let collector = std::thread::spawn(move || {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut copies = vec![];
        let mut buf = vec![0u8; 65536];
        let ended = loop {
            match syslog.recv(&mut buf) {
                Ok(n) => {
                    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let last = line.contains("\"session-stop\"") && line.contains("\"saudit\"");
                    copies.push(line);
                    if last {
                        break "the share's last line".to_string();
                    }
                }
                Err(e) if std::time::Instant::now() >= until => break format!("two minutes: {e}"),
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
                Err(e) => break format!("recv: {e}"),
            }
        };
        (copies, ended)
    });
    std::fs::set_permissions(
        &syslog_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    w.start_session_with(
        "saudit",
        "mirror,pair",
        "echo HOST-MARKER-5151; exec sh",
        &[
            "--record",
            rec.to_str().unwrap(),
            "--audit-syslog",
            syslog_path.to_str().unwrap(),
        ],
    );
    let host = w.attach_host("saudit");
    w.wait_screen(&host, "HOST-MARKER-5151", 20);

    // bob joins as mirror: the banner says the share is recorded.
    let bob = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&bob, "HOST-MARKER-5151", 20);
    let history = w.history(&bob);
    assert!(history.contains("This session is recorded"), "{history}");
    // Typed while mirror: goes nowhere, and is attributed to nobody.
    w.drv(&["send-keys", "-t", &bob, "-l", "MIRRORTYPING"]);
    w.barrier(&bob, "saudit");
    // Promoted, bob types a command that runs.
    let out = w.host_pairjail(&["mode", "bob", "pair", "--session", "saudit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.drv(&["send-keys", "-t", &bob, "-l", "echo TYPED-BY-BOB-$((6*7))"]);
    w.drv(&["send-keys", "-t", &bob, "Enter"]);
    w.wait_screen(&host, "TYPED-BY-BOB-42", 20);
    let out = w.host_pairjail(&["kick", "bob", "--session", "saudit", "--reason", "done"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&bob, "SSH-EXIT=0", 10);
    eventually(10, || {
        if w.guests("saudit").is_empty() {
            Ok(())
        } else {
            Err("bob is still listed".to_string())
        }
    });
    // carol joins as pair and leaves by herself.
    let carol = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&carol, "HOST-MARKER-5151", 20);
    w.drv(&["send-keys", "-t", &carol, "-l", "echo CAROL-WAS-HERE"]);
    w.drv(&["send-keys", "-t", &carol, "Enter"]);
    w.wait_screen(&host, "CAROL-WAS-HERE", 20);
    // She has tmux pass a clipboard write on to every client: whoever
    // replays the recording would get it.
    w.drv(&[
        "send-keys",
        "-t",
        &carol,
        "-l",
        "tmux set -g set-clipboard on; printf '\\033]52;c;UEotQ0xJUEJPQVJE\\007'; echo CLIP-$((40+2))",
    ]);
    w.drv(&["send-keys", "-t", &carol, "Enter"]);
    w.wait_screen(&host, "CLIP-42", 20);
    w.drv(&["send-keys", "-t", &carol, "C-b", "d"]);
    w.wait_screen(&carol, "SSH-EXIT=0", 10);
    let out = w.host_pairjail(&["stop", "--session", "saudit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Exactly these events, in this order (the broker writes the last
    // one, the session's leftover invite, as it exits).
    let want = [
        "invite-added bob",
        "invite-added carol",
        "session-start",
        "join-attempt bob",
        "admitted bob",
        "joined bob",
        "mode-changed bob",
        "invite-revoked bob",
        "kicked bob",
        "left bob",
        "join-attempt carol",
        "admitted carol",
        "joined carol",
        "left carol",
        "session-stop",
        "invite-revoked carol",
    ];
    let log = host_log();
    let got = eventually(20, || {
        let got = events(&log, "saudit", before);
        if got.len() >= want.len() {
            Ok(got)
        } else {
            Err(format!(
                "{} of {} events so far: {got:?}",
                got.len(),
                want.len()
            ))
        }
    });
    assert_eq!(got, want);
    let all = lines_of(&log);
    let ours: Vec<&serde_json::Value> = all
        .iter()
        .skip(before)
        .filter(|l| l["session"] == "saudit")
        .collect();
    let joined = ours.iter().find(|l| l["event"] == "joined").unwrap();
    assert!(
        joined["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:"))
            && joined["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{joined}"
    );
    assert_eq!(ours[4]["by"], "invite");
    assert_eq!(ours[6]["from"], "mirror");
    assert_eq!(ours[6]["to"], "pair");
    assert!(
        ours[13]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("detached"),
        "{}",
        ours[13]
    );
    validate_all(&log);
    tampering_is_named(&log);
    // The syslog copy: the share's lines, each with its own hash.
    let (copies, ended) = collector.join().unwrap();
    let raw = std::fs::read_to_string(&log).unwrap();
    let stop_line = raw
        .lines()
        .skip(before)
        .find(|l| l.contains("\"session\":\"saudit\"") && l.contains("\"session-stop\""))
        .unwrap();
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("<86>pairjail[") && c.ends_with(stop_line)),
        "no syslog copy of {stop_line}; the collector ended on {ended}; the broker's log: {:?}; copies: {copies:?}",
        std::fs::read_to_string(w.runtime.join(HOST).join("saudit.log"))
    );
    // `audit verify --syslog`: every line the copy holds is in the file;
    // a file with its last line cut off is named, whatever its chain says.
    let copy_file = World::dir_for("audit").join("syslog-copy.txt");
    std::fs::write(&copy_file, copies.join("\n") + "\n").unwrap();
    let against_copy = |file: &Path| {
        let args = ["audit", "verify", file.to_str().unwrap(), "--syslog"];
        common::as_user(
            HOST,
            shared_binary(),
            &[&args[..], &[copy_file.to_str().unwrap()]].concat(),
        )
    };
    let out = against_copy(&log);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("in the syslog copy are in the file"),
        "{}",
        text(&out.stdout)
    );
    let cut = World::dir_for("audit").join("cut.jsonl");
    // Cut before the share's last line (other tests' shares may have
    // written after it: the host's log is one file).
    let kept: Vec<&str> = raw.lines().take_while(|l| *l != stop_line).collect();
    std::fs::write(&cut, kept.join("\n") + "\n").unwrap();
    let out = against_copy(&cut);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("of this log that the file does not hold"),
        "{}",
        text(&out.stdout)
    );

    // The recording: asciinema replays it, the markers are in it, and
    // bob's (pair) typing is his; his mirror typing is nowhere.
    let casts: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cast"))
        .collect();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = &casts[0];
    let shown = replay(cast);
    assert!(shown.contains("HOST-MARKER-5151"), "{shown}");
    assert!(shown.contains("TYPED-BY-BOB-42"), "{shown}");
    let body = std::fs::read_to_string(cast).unwrap();
    let output: String = body
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        output.contains("CLIP-42"),
        "the recording missed the output"
    );
    assert!(
        !output.contains("\u{1b}]52;"),
        "the recording holds a clipboard write"
    );
    let header: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let markers: Vec<String> = body
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "m")
        .map(|e| e[2].as_str().unwrap_or("").to_string())
        .collect();
    for m in [
        "bob joined as mirror",
        "bob is now pair (was mirror)",
        "bob left",
        "carol joined as pair",
    ] {
        assert!(
            markers.iter().any(|x| x.contains(m)),
            "no marker {m:?}: {markers:?}"
        );
    }
    let inputs = std::fs::read_to_string(cast.with_extension("inputs.jsonl")).unwrap();
    let typed = |who: &str| -> String {
        inputs
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["guest"] == who)
            .map(|e| e["data"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        typed("bob").contains("echo TYPED-BY-BOB-$((6*7))"),
        "{inputs}"
    );
    assert!(typed("carol").contains("echo CAROL-WAS-HERE"), "{inputs}");
    assert!(!inputs.contains("MIRRORTYPING"), "{inputs}");
    // Every attributed input is an `i` event of the cast at the same time.
    let times: Vec<String> = body
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "i")
        .map(|e| e[0].to_string())
        .collect();
    for l in inputs.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(times.contains(&e["time"].to_string()), "{l} has no i event");
    }
}

#[test]
fn a_flood_leaves_the_recording_within_its_bound_and_it_still_replays() {
    let Some((w, guests)) = World::new("aflood", &[("dan", "sflood", Some("pair"))]) else {
        return;
    };
    let rec = host_dir("aflood", "rec");
    let began = std::time::Instant::now();
    w.start_session_with(
        "sflood",
        "pair",
        "timeout 10 yes FLOODFLOODFLOOD; echo FLOOD-IS-OVER; exec sh",
        &["--record", rec.to_str().unwrap()],
    );
    let cast = eventually(10, || {
        std::fs::read_dir(&rec)
            .map_err(|e| e.to_string())?
            .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "cast"))
            .ok_or_else(|| "no recording yet".to_string())
    });
    // A pair guest typing while the flood has spent the output budget:
    // its keys are still recorded as its own.
    let dan = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&dan, "FLOODFLOODFLOOD", 20);
    w.drv(&["send-keys", "-t", &dan, "-l", "DAN-TYPED-DURING-THE-FLOOD"]);
    let inputs = cast.with_extension("inputs.jsonl");
    eventually(20, || {
        let side = std::fs::read_to_string(&inputs).map_err(|e| e.to_string())?;
        let typed: String = side
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["guest"] == "dan")
            .map(|e| e["data"].as_str().unwrap_or("").to_string())
            .collect();
        if typed.contains("DAN-TYPED-DURING-THE-FLOOD") {
            Ok(())
        } else {
            Err(format!("dan's typing is not in the recording: {typed:?}"))
        }
    });
    // After the flood, the recording catches up with a redraw.
    eventually(40, || {
        let body = std::fs::read_to_string(&cast).map_err(|e| e.to_string())?;
        if body.contains("FLOOD-IS-OVER") {
            Ok(())
        } else {
            Err(format!(
                "the recording never showed the end of the flood ({} bytes)",
                body.len()
            ))
        }
    });
    let out = w.host_pairjail(&["stop", "--session", "sflood"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secs = began.elapsed().as_secs_f64();
    let size = std::fs::metadata(&cast).unwrap().len()
        + std::fs::metadata(cast.with_extension("inputs.jsonl"))
            .unwrap()
            .len();
    // README: at most burst + rate × seconds (1 MiB + 64 KiB/s), plus one
    // line per marker.
    let bound = 1024.0 * 1024.0 + 65536.0 * secs + 4096.0;
    assert!(
        (size as f64) <= bound,
        "{size} bytes after {secs:.1} s: over the bound {bound:.0}"
    );
    let body = std::fs::read_to_string(&cast).unwrap();
    // The bound was needed: output was skipped, and the marker says so.
    assert!(
        body.contains("bytes were not recorded"),
        "the flood never hit the budget"
    );
    assert!(replay(&cast).contains("FLOOD-IS-OVER"));
}

#[test]
fn profiles_that_require_recording_and_auditing_are_enforced_at_start_and_at_the_door() {
    let Some((w, guests)) = World::new(
        "areq",
        &[
            ("eve", "sreq", Some("mirror")),
            ("fay", "sreq", Some("mirror")),
        ],
    ) else {
        return;
    };
    // A security team's /etc/pairjail/profiles/guest-relay.toml, here on
    // PAIRJAIL_PROFILE_PATH: the shipped profile, requiring both.
    let team = host_dir("areq", "team");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/guest-relay.toml"),
    )
    .unwrap();
    assert!(
        shipped.trim_end().ends_with("idle_timeout = \"2h\""),
        "[session] is no longer last"
    );
    std::fs::write(
        team.join("guest-relay.toml"),
        format!("{shipped}require_recording = true\nrequire_audit_log = true\n"),
    )
    .unwrap();
    let env = [("PAIRJAIL_PROFILE_PATH", team.to_str().unwrap())];
    let out = w.try_start_session("sreq", "mirror", "exec sh", &[], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("requires a recording") && err.contains("add --record"),
        "{err}"
    );
    let rec = host_dir("areq", "rec");
    let out = w.try_start_session(
        "sreq",
        "mirror",
        "exec sh",
        &["--record", rec.to_str().unwrap(), "--no-audit"],
        &env,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("drop --no-audit"),
        "{}",
        text(&out.stderr)
    );
    // Given both, the share starts, and the host is told that guests'
    // joins (which sshd runs without the host's environment) never read
    // that file: its limits apply to nobody.
    let out = w.try_start_session(
        "swarn",
        "mirror",
        "exec sh",
        &["--record", rec.to_str().unwrap()],
        &env,
    );
    let _ = w.host_pairjail(&["stop", "--session", "swarn"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!(
            "{} is not read for guests",
            team.join("guest-relay.toml").display()
        )) && said.contains(&format!("/home/{HOST}/.config/pairjail/profiles")),
        "{said}"
    );

    // The broker checks again for every guest, from the profile its forced
    // command names: a share started without them turns those guests away.
    w.guest_profile("eve", "rec", "require_recording = true");
    w.guest_profile("fay", "aud", "require_audit_log = true");
    w.start_session_with("sreq", "mirror", "exec sh", &["--no-audit"]);
    w.assert_join_refused(&guests[0], "requires a recording");
    w.assert_join_refused(&guests[1], "requires an audit log");
    let _ = w.host_pairjail(&["stop", "--session", "sreq"]);
}

#[test]
fn a_pair_guest_who_detaches_the_recording_ends_the_share() {
    let Some((w, guests)) = World::new("arecstop", &[("rex", "srec", Some("pair"))]) else {
        return;
    };
    let rec = host_dir("arecstop", "rec");
    w.start_session_with(
        "srec",
        "pair",
        "echo HOST-MARKER-4242; exec sh",
        &["--record", rec.to_str().unwrap()],
    );
    let rex = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&rex, "HOST-MARKER-4242", 20);
    // The recording's tmux client is a client of the server guests
    // command: rex detaches every read-only one (the recording's is the
    // only one here), to go on where nothing records the screen.
    w.drv(&[
        "send-keys",
        "-t",
        &rex,
        "-l",
        "tmux list-clients -F '#{client_name} #{client_readonly} #{client_control_mode}' | while read n r c; do [ $r = 1 ] && [ $c = 0 ] && tmux detach-client -t $n; done; echo DETACHED-$((40+2))",
    ]);
    w.drv(&["send-keys", "-t", &rex, "Enter"]);
    ended_with_its_recording(&w, &rex, "srec");
}

/// The guest on `target` was disconnected saying the recording is why,
/// and the share is gone: it did not go on unrecorded.
fn ended_with_its_recording(w: &World, target: &str, session: &str) {
    let screen = w.wait_screen(target, "SSH-EXIT=", 30);
    assert!(
        screen.contains("recording"),
        "{target} was disconnected without the reason:\n{screen}"
    );
    let status = w.host_pairjail(&["status", "--json"]);
    assert!(
        !text(&status.stdout).contains(&format!("\"{session}\"")),
        "the share went on unrecorded: {}",
        text(&status.stdout)
    );
}

/// Found by a read-only attack hunt: a pair guest who filled the disk
/// the recording is on (`head -c 30M /dev/zero > big` in a workspace on
/// the same filesystem) stopped the recording, and the share went on with
/// its typing unrecorded. Here the guest floods the screen into a small
/// recordings filesystem; the share ends with the recording.
#[test]
fn a_pair_guest_who_fills_the_recordings_disk_ends_the_share() {
    let Some((w, guests)) = World::new("arecfull", &[("ria", "srecfull", Some("pair"))]) else {
        return;
    };
    let rec = host_dir("arecfull", "rec");
    let _unmount = small_tmpfs(&rec, "256k");
    let owned = Command::new("chown")
        .arg(format!("{HOST}:{HOST}"))
        .arg(&rec)
        .status()
        .unwrap();
    assert!(owned.success(), "chown the small tmpfs");
    w.start_session_with(
        "srecfull",
        "pair",
        "echo HOST-MARKER-4242; exec sh",
        &["--record", rec.to_str().unwrap()],
    );
    let ria = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&ria, "HOST-MARKER-4242", 20);
    w.drv(&["send-keys", "-t", &ria, "-l", "seq 1 200000"]);
    w.drv(&["send-keys", "-t", &ria, "Enter"]);
    ended_with_its_recording(&w, &ria, "srecfull");
    // What was recorded ends with a whole line.
    let cast = std::fs::read_dir(&rec)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cast"))
        .expect("a recording");
    let body = std::fs::read(&cast).unwrap();
    assert_eq!(body.last(), Some(&b'\n'), "the recording ends mid-line");
}

#[test]
fn a_guest_cannot_grow_the_brokers_memory_through_tmux() {
    let Some((w, guests)) = World::new("abig", &[("bea", "sbig", Some("pair"))]) else {
        return;
    };
    let rec = host_dir("abig", "rec");
    w.start_session_with(
        "sbig",
        "pair",
        "echo HOST-MARKER-4242; exec sh",
        &["--record", rec.to_str().unwrap()],
    );
    let bea = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&bea, "HOST-MARKER-4242", 20);
    // The broker watches the session with a control-mode client: bea has
    // tmux send it a line of 100 MB.
    w.drv(&[
        "send-keys",
        "-t",
        &bea,
        "-l",
        "for c in $(tmux list-clients -F '#{client_name}:#{client_control_mode}' | grep ':1$' | cut -d: -f1); do tmux refresh-client -t $c -B 'x::#{p100000000:x}'; done; sleep 2; tmux resize-window -x 111 -y 29; echo BIG-$((40+2))",
    ]);
    w.drv(&["send-keys", "-t", &bea, "Enter"]);
    w.wait_screen(&bea, "BIG-42", 20);
    // tmux sends subscriptions once a second: bea's resize, after that,
    // reaches the watcher after the line. The watcher has read past the
    // line once the recording follows the resize.
    let cast = eventually(10, || {
        std::fs::read_dir(&rec)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "cast"))
            .ok_or_else(|| "no recording yet".to_string())
    });
    eventually(60, || {
        let body = std::fs::read_to_string(&cast).map_err(|e| e.to_string())?;
        if body.contains("\"r\", \"111x") || body.contains("\"r\",\"111x") {
            Ok(())
        } else {
            Err("the recording never followed the resize".to_string())
        }
    });
    let peak_kib = status_kib(w.broker_pid("sbig"), "VmHWM:");
    let _ = w.host_pairjail(&["stop", "--session", "sbig"]);
    assert!(
        peak_kib < 60 * 1024,
        "the broker's memory peaked at {peak_kib} KiB after a guest's 100 MB line"
    );
}

/// A local user who is not the host, knocking on the broker's socket as
/// fast as it can, never grows the share's log or the audit log beyond the
/// refusals' rate (the share's log lives in the runtime directory, often a
/// tmpfs, and a full disk would take the audit log down with it), nor the
/// broker's memory.
#[test]
fn a_local_user_cannot_grow_the_shares_logs_or_the_broker_by_knocking() {
    let Some((w, _guests)) = World::new("aknock", &[("kay", "sknock", Some("mirror"))]) else {
        return;
    };
    let stranger = "pjevil";
    common::ensure_user(stranger);
    w.start_session("sknock", "mirror", "echo HOST-MARKER-4242; exec sh");
    let share_log = w.runtime.join(HOST).join("sknock.log");
    let logged_before = std::fs::metadata(&share_log).map_or(0, |m| m.len());
    let audited_before = lines_of(&host_log()).len();
    let sock = w.session_paths("sknock").join("broker.sock");
    // N connections, each refused for its uid; the last one reads the
    // broker's answer.
    let knock = |n: u32| {
        let script = format!(
            "import socket\nfor i in range({n}):\n  s=socket.socket(socket.AF_UNIX)\n  s.connect({:?})\n  if i == {n} - 1:\n    s.settimeout(5)\n    print(s.recv(4096).decode('utf-8','replace'))\n  s.close()\n",
            sock.display().to_string()
        );
        let out = common::run_as(stranger, "/usr/bin/python3")
            .args(["-c", &script])
            .current_dir("/")
            .output()
            .unwrap();
        text(&out.stdout) + &text(&out.stderr)
    };
    let said = knock(20000);
    assert!(said.contains("may not join this session"), "{said}");
    let grown = std::fs::metadata(&share_log).unwrap().len() - logged_before;
    assert!(
        grown < 64 * 1024,
        "20000 knocks grew the share's log by {grown} bytes"
    );
    // Nor the broker's memory: what it kept of each connection it took.
    let broker = w.broker_pid("sknock");
    let rss_kib = || status_kib(broker, "VmRSS:");
    let before = rss_kib();
    knock(60000);
    let after = rss_kib();
    assert!(
        after < before + 4 * 1024,
        "60000 more knocks took the broker from {before} to {after} KiB"
    );
    // The refusals the limit held back are counted in the next one it lets
    // through.
    eventually(10, || {
        let said = knock(1);
        let log = std::fs::read_to_string(&share_log).map_err(|e| e.to_string())?;
        if !said.contains("may not join this session") {
            return Err(format!("the broker answered {said:?}"));
        }
        if log.contains("earlier refusals not recorded") {
            Ok(())
        } else {
            Err("no refusal was counted as held back".to_string())
        }
    });
    let refusals = events(&host_log(), "sknock", audited_before)
        .iter()
        .filter(|e| e.starts_with("refused"))
        .count();
    let _ = w.host_pairjail(&["stop", "--session", "sknock"]);
    assert!(refusals < 100, "20000 knocks made {refusals} audit lines");
}

/// The broker has one thread for every guest's screen: an audit log that
/// cannot be written for a while must not stop it. While the log's lock
/// is held (another writer that hangs: the same wait as a stalled disk or
/// a hung network home), a guest joins and every guest keeps seeing the
/// host type; a guest whose profile requires the audit log waits at the
/// door until its attempt is on disk; once the lock is let go, the log
/// has every event.
#[test]
fn an_audit_log_that_cannot_be_written_never_freezes_the_guests_screens() {
    let Some((w, guests)) = World::new(
        "afreeze",
        &[
            ("ann", "sfreeze", Some("mirror")),
            ("bob", "sfreeze", Some("mirror")),
            ("cyd", "sfreeze", Some("mirror")),
        ],
    ) else {
        return;
    };
    let log = host_dir("afreeze", "log").join("audit.jsonl");
    w.guest_profile("cyd", "aud", "require_audit_log = true");
    w.start_session_with(
        "sfreeze",
        "mirror",
        "echo HOST-MARKER-4242; exec sh",
        &["--audit-log", log.to_str().unwrap()],
    );
    let host = w.attach_host("sfreeze");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let ann = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&ann, "HOST-MARKER-4242", 30);

    // The lock every writer of the log takes, held.
    let file = std::fs::File::open(&log).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let bob = w.join_in_window(&guests[1], 80, 24);
    w.wait_screen(&bob, "HOST-MARKER-4242", 30);
    w.host_tmux(
        "sfreeze",
        &[
            "send-keys",
            "-t",
            "=sfreeze:",
            "echo FROZEN-$((40+2))",
            "Enter",
        ],
    );
    w.wait_screen(&ann, "FROZEN-42", 30);
    w.wait_screen(&bob, "FROZEN-42", 30);
    // cyd reaches the broker and waits at the door, told why: its attempt
    // is not on disk yet. (Joined last: it waits 10 s at most.)
    let cyd = w.join_in_window(&guests[2], 80, 24);
    w.wait_screen(&cyd, "waiting for the host's audit log", 30);
    let listed: Vec<String> = w
        .guests("sfreeze")
        .iter()
        .filter_map(|g| g["name"].as_str().map(String::from))
        .collect();
    assert!(
        !listed.contains(&"cyd".to_string()),
        "cyd was let in before its attempt was on disk: {listed:?}"
    );
    assert!(!w.screen(&cyd).contains("HOST-MARKER-4242"));

    drop(held);
    w.wait_screen(&cyd, "FROZEN-42", 30);
    let out = w.host_pairjail(&["stop", "--session", "sfreeze"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every event, in order, chained: cyd's attempt before it was let in.
    let got = events(&log, "sfreeze", 0);
    let at = |e: &str| {
        got.iter()
            .position(|g| g == e)
            .unwrap_or_else(|| panic!("no {e} in {got:?}"))
    };
    assert!(at("join-attempt cyd") < at("admitted cyd"), "{got:?}");
    assert!(at("admitted cyd") < at("joined cyd"), "{got:?}");
    for e in ["joined ann", "joined bob", "session-stop"] {
        at(e);
    }
    assert!(!got.iter().any(|g| g == "unrecorded"), "{got:?}");
    let check = pairjail(&["audit", "verify", log.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        text(&check.stdout) + &text(&check.stderr)
    );
}

/// The broker copies every guest's screen on one thread, which also
/// records. A recordings directory on a disk that stalls (a hung network
/// home; here a filesystem frozen with `fsfreeze`, whose writes wait until
/// it thaws) must hold up the recording only: the guests' screens go on,
/// a guest still gets in, and once the disk is back nothing is lost.
#[test]
fn a_recordings_disk_that_stalls_never_freezes_the_guests_screens() {
    let Some((w, guests)) = World::new(
        "rfreeze",
        &[
            ("ann", "srfreeze", Some("mirror")),
            ("bob", "srfreeze", Some("mirror")),
        ],
    ) else {
        return;
    };
    // A filesystem of its own, owned by the host, that can be frozen: on a
    // loop device, which a container may not have.
    let loop_free = Command::new("losetup").arg("-f").output().unwrap();
    if !loop_free.status.success() {
        assert!(
            !common::in_ci(),
            "the frozen-disk test needs a loop device in CI"
        );
        eprintln!("SKIPPED: no free loop device to freeze a filesystem on");
        return;
    }
    let mnt = host_dir("rfreeze", "rec");
    let image = World::dir_for("rfreeze").join("rec.img");
    let thaw = || {
        let _ = Command::new("fsfreeze").arg("-u").arg(&mnt).status();
    };
    // Thawed and unmounted however the test ends, from here on (a frozen
    // filesystem would hold every writer forever).
    let _mounted = common::OnDrop(|| {
        thaw();
        let _ = Command::new("umount").arg("-l").arg(&mnt).status();
    });
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "truncate -s 64M '{img}' && mkfs.ext4 -q -F '{img}' && mount -o loop '{img}' '{mnt}' && chown {HOST}:{HOST} '{mnt}'",
            img = image.display(),
            mnt = mnt.display()
        ))
        .status()
        .unwrap();
    assert!(made.success(), "cannot mount a loop filesystem to freeze");
    w.start_session_with(
        "srfreeze",
        "mirror",
        "echo HOST-MARKER-4242; exec sh",
        &["--record", mnt.to_str().unwrap()],
    );
    let host = w.attach_host("srfreeze");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let ann = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&ann, "HOST-MARKER-4242", 30);

    let frozen = Command::new("fsfreeze")
        .arg("-f")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(frozen.success());
    w.host_tmux(
        "srfreeze",
        &[
            "send-keys",
            "-t",
            "=srfreeze:",
            "echo STALLED-$((40+2))",
            "Enter",
        ],
    );
    w.wait_screen(&ann, "STALLED-42", 30);
    // A join writes a marker into the recording, and is not held up.
    let bob = w.join_in_window(&guests[1], 80, 24);
    w.wait_screen(&bob, "STALLED-42", 30);

    thaw();
    let out = w.host_pairjail(&["stop", "--session", "srfreeze"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cast = std::fs::read_dir(&mnt)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cast"))
        .expect("a recording");
    let body = std::fs::read_to_string(&cast).unwrap();
    assert!(
        body.contains("STALLED-42"),
        "the recording lost the stall:\n{body}"
    );
    assert!(body.contains("bob joined"), "no marker for bob:\n{body}");
}

/// An admin's SIGTERM (or the machine shutting down) ends a share as
/// `stop` does: the guest is told, and the record is complete (the
/// broker's audit events are written by a thread of their own, so a
/// broker killed outright would lose those still queued).
#[test]
fn a_broker_ended_by_a_signal_tells_its_guests_and_completes_the_record() {
    let Some((w, guests)) = World::new("asig", &[("dee", "ssig", Some("mirror"))]) else {
        return;
    };
    let log = host_dir("asig", "log").join("audit.jsonl");
    w.start_session_with(
        "ssig",
        "mirror",
        "echo HOST-MARKER-4242; exec sh",
        &["--audit-log", log.to_str().unwrap()],
    );
    let dee = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&dee, "HOST-MARKER-4242", 30);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.broker_pid("ssig")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    w.wait_screen(&dee, "got SIGTERM", 30);
    w.wait_screen(&dee, "SSH-EXIT=", 30);
    // The run's invite is revoked after the broker's last line.
    let got = eventually(20, || {
        let got = events(&log, "ssig", 0);
        got.iter()
            .any(|e| e == "invite-revoked dee")
            .then_some(got.clone())
            .ok_or(format!("{got:?}"))
    });
    let tail = ["left dee", "session-stop", "invite-revoked dee"].map(String::from);
    assert!(got.ends_with(&tail), "{got:?}");
    let stop = lines_of(&log)
        .into_iter()
        .find(|l| l["event"] == "session-stop")
        .unwrap();
    assert!(
        stop["reason"].as_str().unwrap_or("").contains("SIGTERM"),
        "{stop}"
    );
    // The run is over: the invite with it.
    w.assert_join_refused(&guests[0], "");
}

/// A host who presses Ctrl-C while `start` waits for the broker: the
/// broker cannot tell anyone the share runs, so it ends it and cleans up
/// as `stop` would, instead of dying on the closed pipe and leaving the
/// session's directory, invites and tmux server behind. (The audit log's
/// lock, held, keeps the broker from saying it is ready until `start` is
/// gone.)
#[test]
fn a_start_that_stops_waiting_leaves_no_share_behind() {
    let Some((w, _guests)) = World::new("aready", &[("gil", "sready", Some("mirror"))]) else {
        return;
    };
    let log = host_dir("aready", "log").join("audit.jsonl");
    std::fs::write(&log, "").unwrap();
    let owned = Command::new("chown")
        .arg(format!("{HOST}:{HOST}"))
        .arg(&log)
        .status()
        .unwrap();
    assert!(owned.success());
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = std::fs::File::open(&log).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let rt = w.runtime.display().to_string();
    let mut start = common::run_as(HOST, shared_binary())
        .args([
            "start",
            "--detach",
            "--session",
            "sready",
            "--allow",
            "mirror",
        ])
        .args([
            "--guest-user",
            common::sshd::GUEST_USER,
            "--runtime-dir",
            &rt,
        ])
        .arg("--audit-log")
        .arg(&log)
        .args(["--", "sh", "-c", "exec sh"])
        .env("HOME", format!("/home/{HOST}"))
        .env("TERM", "xterm")
        .current_dir(w.workspace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = w.session_paths("sready");
    eventually(30, || {
        dir.join("broker.pid")
            .exists()
            .then_some(())
            .ok_or("no broker yet".to_string())
    });
    start.kill().unwrap();
    let _ = start.wait();
    drop(held);
    eventually(30, || {
        (!dir.exists()).then_some(()).ok_or(format!(
            "the session's directory is left: {}",
            dir.display()
        ))
    });
    // Its record says it ended, and why.
    let stop = lines_of(&log)
        .into_iter()
        .find(|l| l["session"] == "sready" && l["event"] == "session-stop")
        .expect("no session-stop line");
    assert!(
        stop["reason"]
            .as_str()
            .unwrap_or("")
            .contains("stopped waiting"),
        "{stop}"
    );
}

/// A log someone else wrote (handed over, copied from elsewhere) is read
/// on the host's terminal: what `audit verify` quotes from it, in either
/// form, holds no C1 control (U+009D starts an OSC in terminals that take
/// UTF-8 C1: here a clipboard write) and reads back the same.
#[test]
fn verify_never_prints_a_logs_terminal_controls() {
    let osc = "\u{9d}52;c;aGk=\u{9c}";
    let line = format!(
        r#"{{"v":1,"seq":1,"time":"2026-12-08T00:41:18.918Z","machine":"vm","host":"h","session":"s1","event":"invite-added","guest":"g1","mode":"{osc}","keys":[],"expires":null,"approve":false,"direct":false,"prev":"{zero}"}}"#,
        zero = "0".repeat(64)
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("audit.jsonl");
    std::fs::write(&f, line + "\n").unwrap();
    for json in [false, true] {
        let mut args = vec!["audit", "verify"];
        if json {
            args.push("--json");
        }
        args.push(f.to_str().unwrap());
        let out = pairjail(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(
            !shown.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "--json {json}: a C1 control reached the terminal: {shown:?}"
        );
        if json {
            let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
            let what = v["problem"]["what"].as_str().unwrap();
            assert!(what.contains(osc), "{what:?}");
        } else {
            assert!(shown.contains("unknown variant"), "{shown}");
        }
    }
}

/// Found by a read-only attack hunt: a pair guest who fills the disk the
/// audit log is on (a shared workspace on the same filesystem) made the
/// next line go in cut short, and every later line chained to it, so
/// `audit verify` stopped there and checked nothing after it, in every
/// later share. A line the disk takes only part of is cut off again.
#[test]
fn a_line_a_full_disk_cut_short_is_taken_back_and_the_chain_still_verifies() {
    use pairjail::audit::{Event, Origin, chain};
    if !common::root_or_skip() {
        return;
    }
    let d = tempfile::tempdir().expect("temp dir");
    let small = d.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    // Two pages: the log's first page, and one the filler takes.
    let _unmount = small_tmpfs(&small, "8k");
    let log = small.join("audit.jsonl");
    let origin = Origin {
        machine: "m".into(),
        host: "h".into(),
        session: "s".into(),
    };
    let event = |reason: String| Event::SessionStop { reason };
    chain::append(&log, &origin, event("first".into())).expect("first line");
    std::fs::write(small.join("filler"), vec![b'x'; 4096]).expect("filler");
    // More than the log's page has left: the disk takes part of it.
    let e = chain::append(&log, &origin, event("y".repeat(6000)));
    assert!(e.is_err(), "a line longer than the disk's room went in");
    let text = std::fs::read_to_string(&log).expect("read log");
    let tail: String = text
        .chars()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        text.ends_with('\n'),
        "a half line was left, ending {tail:?}"
    );
    std::fs::remove_file(small.join("filler")).expect("rm filler");
    chain::append(&log, &origin, event("third".into())).expect("third line");
    let r =
        pairjail::audit::verify(std::fs::File::open(&log).expect("open"), None).expect("verify");
    assert_eq!(r.problem, None, "{r:?}");
    assert_eq!(r.lines, 2, "{r:?}");
}
