//! From install to a guest typing, as a new user meets it: a host with no
//! XDG_RUNTIME_DIR (after `su -`), setup that the other commands remember,
//! the connect line printed with real values, and `setup --undo`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::sshd::{HOST, World};
use common::*;

const MARKER: &str = "ONBOARD-MARKER-77";

/// The host's managed block in ~/.ssh/authorized_keys mirrors the invites
/// of one runtime directory: tests that share as the host with different
/// runtime directories take turns.
static HOST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_turn() -> std::sync::MutexGuard<'static, ()> {
    HOST_TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The user's passwd line through getent (a static test binary must not
/// load NSS modules itself).
fn passwd(user: &str) -> Option<String> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap();
    out.status.success().then(|| text(&out.stdout))
}

fn uid_of(user: &str) -> u32 {
    passwd(user)
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

/// A fresh directory for one test, open to its users (sticky, like /tmp).
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = World::dir_for(tag);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// An ed25519 key pair at `path` (and `path.pub`), no passphrase.
fn keygen_at(path: &Path) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen {}", path.display());
}

/// A copy of test data the host user can read (the checkout may not be:
/// CI clones into a private temp directory).
fn readable_copy(dir: &Path, name: &str) -> String {
    let to = dir.join(name);
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/keys")
            .join(name),
        &to,
    )
    .unwrap();
    fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
    to.display().to_string()
}

/// `pairjail ARGS` as the host the way `su - host` leaves it: a login
/// environment with no XDG_RUNTIME_DIR, and nothing of the test's own.
fn as_login_host(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    run_as(HOST, "/usr/bin/env")
        .arg("-i")
        .arg(format!("HOME=/home/{HOST}"))
        .arg(format!("USER={HOST}"))
        .arg(format!("LOGNAME={HOST}"))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin")
        .arg("TERM=xterm")
        .arg("SHELL=/bin/sh")
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .arg(bin)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap()
}

/// The `ssh -t USER@HOST -p PORT` line a command printed, as words.
fn printed_line(said: &str) -> Vec<String> {
    let line = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("guests join with: "))
        .unwrap_or_else(|| panic!("no connect line in: {said}"));
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs the printed line in a driver window, with the guest's key and
/// ssh's host-key prompt answered (the test cannot read it out).
fn run_printed_line(w: &World, name: &str, key: &Path, words: &[String]) -> String {
    assert_eq!(&words[..2], ["ssh", "-t"], "{words:?}");
    let cmd = format!(
        "ssh -tt -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes {}; echo SSH-EXIT=$?; sleep 600",
        key.display(),
        words[2..].join(" ")
    );
    w.drv(&["new-window", "-d", "-n", name, &cmd]);
    format!("drv:{name}")
}

#[test]
fn a_runtime_dir_someone_else_made_is_refused() {
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    let bin = SafeBinary::new("ob-rt");
    let tmp = scratch("ob-rt");
    let tmpdir = tmp.display().to_string();
    let dir = tmp.join(format!("pairjail-{}", uid_of(HOST)));
    let status = || as_login_host(&bin.path, &["status"], &[("TMPDIR", &tmpdir)]);

    // Made first by another user (nobody), open to all: refused.
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = status();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("belongs to uid 65534") && err.contains("refusing"),
        "{err}"
    );
    // The host's own, but open to others: refused too.
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(uid_of(HOST))), None).unwrap();
    let err = text(&status().stderr);
    assert!(err.contains("has mode 777"), "{err}");
    // A symlink to the host's real directory: refused.
    fs::remove_dir(&dir).unwrap();
    let elsewhere = tmp.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let err = text(&status().stderr);
    assert!(err.contains("is not a directory"), "{err}");
    // Gone: the host's command makes it, 0700, and works.
    fs::remove_file(&dir).unwrap();
    let out = status();
    assert_eq!(ok(&out).trim(), "no shared sessions");
    let m = fs::symlink_metadata(&dir).unwrap();
    assert!(m.is_dir() && m.uid() == uid_of(HOST) && m.mode() & 0o777 == 0o700);
    let _ = fs::remove_dir_all(&tmp);
}

#[test]
fn a_host_after_su_shares_in_no_root_mode_without_xdg_runtime_dir() {
    let _turn = host_turn();
    let Some(mut w) = World::bare("ob-nr", "", ".ssh/authorized_keys") else {
        return;
    };
    assert!(
        !Path::new("/etc/pairjail/config.toml").exists(),
        "this test is about a machine without `pairjail setup`"
    );
    w.start_sshd();
    let bin = shared_binary();
    let ssh = Path::new("/home").join(HOST).join(".ssh");
    let _ = fs::remove_file(ssh.join("authorized_keys"));
    let fallback = Path::new("/tmp").join(format!("pairjail-{}", uid_of(HOST)));
    // A share an earlier run of this test left behind.
    let _ = as_login_host(bin, &["stop", "--session", "obnr"], &[]);

    let out = as_login_host(
        bin,
        &[
            "start",
            "--detach",
            "--session",
            "obnr",
            "--public-host",
            "127.0.0.1",
            "--",
            "sh",
            "-c",
            &format!("echo {MARKER}; exec sh"),
        ],
        &[],
    );
    let said = ok(&out);
    // The line names the host's own account (no-root mode) and this
    // machine's sshd port as its config says; hints need no extra flags.
    let words = printed_line(&said);
    assert_eq!(words[2], format!("{HOST}@127.0.0.1"), "{said}");
    assert!(
        said.contains("  attach: pairjail attach --session obnr\n"),
        "{said}"
    );
    assert!(said.contains("SHA256:"), "no host key fingerprint: {said}");
    let m = fs::symlink_metadata(&fallback).unwrap();
    assert!(m.uid() == uid_of(HOST) && m.mode() & 0o777 == 0o700);

    let bob = w.keygen("bob");
    let bob_pub = bob.with_extension("pub").display().to_string();
    let said = ok(&as_login_host(
        bin,
        &[
            "invite",
            "add",
            "bob",
            "--key-file",
            &bob_pub,
            "--session",
            "obnr",
        ],
        &[],
    ));
    assert_eq!(
        printed_line(&said),
        words,
        "invite add printed another line"
    );
    // The printed line, with the test sshd's port (the machine's own sshd
    // is not this one).
    let mut words = words;
    let p = words.iter().position(|w| w == "-p").unwrap();
    words[p + 1] = w.port.to_string();
    let win = run_printed_line(&w, "bob", &bob, &words);
    w.wait_screen(&win, MARKER, 20);
    let status = ok(&as_login_host(bin, &["status", "--json"], &[]));
    assert!(status.contains("\"bob\""), "{status}");
    // From a login with another XDG_RUNTIME_DIR the share is not lost:
    // status says where it is.
    let elsewhere = ok(&as_login_host(
        bin,
        &["status"],
        &[("XDG_RUNTIME_DIR", "/nonexistent-xdg")],
    ));
    assert!(
        elsewhere.contains(&format!(
            "note: also shared from {}: obnr",
            fallback.display()
        )),
        "{elsewhere}"
    );

    // doctor, as this host: fixes a non-root user can act on, and bob's key
    // pasted as a plain line (a shell without the jail) is caught.
    let ak = ssh.join("authorized_keys");
    let mut text_ak = fs::read_to_string(&ak).unwrap();
    text_ak.push_str(&fs::read_to_string(bob.with_extension("pub")).unwrap());
    fs::write(&ak, text_ak).unwrap();
    let out = as_login_host(bin, &["doctor", "--json"], &[]);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in checks.as_array().unwrap() {
        let fix = c["fix"].as_str().unwrap_or("");
        assert!(
            !fix.starts_with("sudo ") && !fix.starts_with("sysctl") && !fix.starts_with("apt-get"),
            "a root-only fix for a non-root host: {c}"
        );
    }
    let keys = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "authorized_keys")
        .unwrap();
    assert_eq!(keys["status"], "fail", "{keys}");
    assert!(
        keys["detail"].as_str().unwrap().contains("(guest bob)"),
        "{keys}"
    );
    ok(&as_login_host(bin, &["stop", "--session", "obnr"], &[]));
    w.wait_screen(&win, "SSH-EXIT=", 20);
    let _ = fs::remove_file(ssh.join("authorized_keys"));
}

#[test]
fn setup_is_remembered_and_undone() {
    let _turn = host_turn();
    let sd = World::dir_for("ob-su").join("sshd.d");
    let top = format!("Include {}/*.conf\n", sd.display());
    let Some(mut w) = World::bare("ob-su", &top, "none") else {
        return;
    };
    const PAIR: &str = "pjobpair";
    const KEYS: &str = "pjobkeys";
    const OTHER: &str = "pjobother";
    ensure_user(OTHER);
    for u in [PAIR, KEYS] {
        let _ = Command::new("userdel").arg(u).output();
    }
    let bin = SafeBinary::new("ob-su");
    let d = w.dir.display().to_string();
    let config = format!("{d}/etc/config.toml");
    let setup = |extra: &[&str]| {
        Command::new(&bin.path)
            .args(["setup", "--config", &config, "--pair-user", PAIR])
            .args([
                "--keys-command-user",
                KEYS,
                "--runtime-dir",
                &format!("{d}/prun"),
            ])
            .args(["--sshd-config-dir", &format!("{d}/sshd.d")])
            .args(["--sshd-config", &format!("{d}/sshd_config")])
            .args(["--tmpfiles-dir", &format!("{d}/tmpfiles")])
            .args(["--shell", &format!("{}/lib/pair-shell", bin.dir.display())])
            .args(extra)
            .output()
            .unwrap()
    };
    // A site's block for remote addresses, read before pairjail's, that
    // gives passwords back: setup checks a remote login too, and undoes
    // itself (found by a read-only attack hunt: only a login from
    // 127.0.0.1 was checked).
    fs::create_dir_all(&sd).unwrap();
    let site = sd.join("00-site.conf");
    fs::write(
        &site,
        "Match Address 203.0.113.0/24\n\tPasswordAuthentication yes\n",
    )
    .unwrap();
    let refused = setup(&["--host", HOST, "--public-host", "127.0.0.1"]);
    assert!(
        !refused.status.success(),
        "setup took a site block that lets passwords in"
    );
    assert!(
        text(&refused.stderr).contains("from 203.0.113.7 lacks 'passwordauthentication no'"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!sd.join("pairjail.conf").exists(), "the drop-in was left");
    fs::remove_file(&site).unwrap();
    let said = ok(&setup(&["--host", HOST, "--public-host", "127.0.0.1"]));
    assert!(
        said.contains(&format!("guests log in as {PAIR}; who may host: {HOST}")),
        "{said}"
    );
    let conf = fs::read_to_string(&config).unwrap();
    assert!(conf.contains(&format!("port = {}", w.port)), "{conf}");
    w.start_sshd();

    // The host names nothing: the config gives the runtime dir, the pair
    // user to admit, pair-user invites, and the line with sshd's port.
    let env = [("PAIRJAIL_CONFIG", config.as_str())];
    let said = ok(&as_login_host(
        &bin.path,
        &[
            "start",
            "--detach",
            "--session",
            "obsu",
            "--",
            "sh",
            "-c",
            &format!("echo {MARKER}; exec sh"),
        ],
        &env,
    ));
    let words = printed_line(&said);
    assert_eq!(
        words[2..],
        [format!("{PAIR}@127.0.0.1"), "-p".into(), w.port.to_string()],
        "{said}"
    );
    let bob = w.keygen("bob");
    let bob_pub = bob.with_extension("pub").display().to_string();
    let said = ok(&as_login_host(
        &bin.path,
        &[
            "invite",
            "add",
            "bob",
            "--key-file",
            &bob_pub,
            "--session",
            "obsu",
        ],
        &env,
    ));
    assert_eq!(printed_line(&said), words, "{said}");
    let win = run_printed_line(&w, "bob", &bob, &words);
    let screen = w.wait_screen(&win, MARKER, 20);
    assert!(!w.history(&win).contains("Could not chdir"), "{screen}");

    // A user the config does not let host: refused with the fix.
    let other = run_as(OTHER, &bin.path)
        .args([
            "invite",
            "add",
            "bob",
            "--key-file",
            &bob_pub,
            "--via",
            "pair-user",
        ])
        .env_clear()
        .env("HOME", format!("/home/{OTHER}"))
        .env("PAIRJAIL_CONFIG", &config)
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2), "{}", text(&other.stdout));
    assert!(
        text(&other.stderr).contains(&format!("does not let {OTHER} host")),
        "{}",
        text(&other.stderr)
    );

    // Undo while a share runs: refused, and nothing is changed.
    let dropin = w.dir.join("sshd.d/pairjail.conf");
    let (conf_before, dropin_before) = (
        fs::read_to_string(&config).unwrap(),
        fs::read_to_string(&dropin).unwrap(),
    );
    // `setup --undo ARGS` is refused while `session` is shared.
    let undo_refused = |args: &[&str], session: &str| {
        let out = Command::new(&bin.path)
            .args(["setup", "--undo"])
            .args(args)
            .args(["--config", &config])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(&format!("{HOST} is sharing session {session}")),
            "{}",
            text(&out.stderr)
        );
    };
    undo_refused(&[], "obsu");
    assert_eq!(fs::read_to_string(&config).unwrap(), conf_before);
    assert_eq!(fs::read_to_string(&dropin).unwrap(), dropin_before);
    // A re-run that fails (sshd's main config is missing) takes back what
    // it changed and leaves the working setup as it was.
    let out = Command::new(&bin.path)
        .args(["setup", "--config", &config, "--pair-user", PAIR])
        .args([
            "--keys-command-user",
            KEYS,
            "--runtime-dir",
            &format!("{d}/prun"),
        ])
        .args(["--sshd-config-dir", &format!("{d}/sshd.d")])
        .args(["--sshd-config", &format!("{d}/no-such-sshd_config")])
        .args(["--tmpfiles-dir", &format!("{d}/tmpfiles")])
        .args(["--shell", &format!("{}/lib/pair-shell", bin.dir.display())])
        .args(["--public-host", "changed.example"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("put"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&config).unwrap(), conf_before);
    assert_eq!(fs::read_to_string(&dropin).unwrap(), dropin_before);

    // Setup again with only OTHER allowed: the host's live invite is no
    // longer served by sshd (what setup was not given is kept).
    ok(&setup(&["--host", OTHER]));
    let conf = fs::read_to_string(&config).unwrap();
    assert!(conf.contains("public_host = \"127.0.0.1\""), "{conf}");
    let out = Command::new("ssh")
        .args(["-i", &bob.display().to_string(), "-p", &w.port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .args(["-T", &format!("{PAIR}@127.0.0.1"), "true"])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    ok(&as_login_host(
        &bin.path,
        &["stop", "--session", "obsu"],
        &env,
    ));

    // Undo: every file setup listed is gone, and with --remove-user the
    // users it created.
    let written: Vec<String> = fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("files = ") || l.starts_with("dirs = "))
        .flat_map(|l| {
            l.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(written.len() >= 6, "{written:?}");
    // A run whose pid file is gone but whose broker still holds its run
    // lock is still ending (removing its invites and files): undo waits
    // for it too. The test holds a session's run lock as such a broker.
    let ending = Path::new(&d).join("prun").join(HOST).join("oend.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&ending)
        .unwrap();
    std::os::unix::fs::chown(&ending, Some(uid_of(HOST)), None).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    undo_refused(&["--remove-user"], "oend");
    drop(held);
    let said = ok(&Command::new(&bin.path)
        .args(["setup", "--undo", "--remove-user", "--config", &config])
        .output()
        .unwrap());
    assert!(said.contains("done: pairjail's setup is undone"), "{said}");
    for f in &written {
        assert!(fs::symlink_metadata(f).is_err(), "setup --undo left {f}");
    }
    for u in [PAIR, KEYS] {
        assert!(passwd(u).is_none(), "{u} is still there");
    }
}

#[test]
fn invites_say_what_will_happen() {
    let _turn = host_turn();
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    let bin = shared_binary();
    let d = scratch("ob-inv");
    let rt = d.join("run").display().to_string();
    let key = &readable_copy(&d, "ed25519.pub");
    let rfc = &readable_copy(&d, "ed25519.rfc4716");
    let pj = |args: &[&str]| {
        // Options before a `--` (start's command follows it).
        let cut = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        run_as(HOST, bin)
            .args(&args[..cut])
            .args(["--runtime-dir", &rt])
            .args(if args[0] == "invite" && args[1] == "add" {
                &["--via", "pair-user"][..]
            } else {
                &[]
            })
            .args(&args[cut..])
            .env("HOME", format!("/home/{HOST}"))
            .env("TZ", "Europe/Berlin")
            .env("PAIRJAIL_AUDIT_LOG", d.join("audit.jsonl"))
            .current_dir("/")
            .output()
            .unwrap()
    };
    let other_key = d.join("dan");
    keygen_at(&other_key);
    let other_key = format!("{}.pub", other_key.display());
    let refused = |args: &[&str], needle: &str| {
        let out = pj(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    };

    // An invite for `review`, made before anything runs, survives the
    // start of another session.
    ok(&pj(&[
        "invite",
        "add",
        "carol",
        "--key-file",
        rfc,
        "--session",
        "review",
    ]));
    ok(&pj(&[
        "start",
        "--detach",
        "--session",
        "other",
        "--",
        "sh",
    ]));
    let list = ok(&pj(&["invite", "list", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows[0]["session"], "review", "{list}");
    // The RFC 4716 file became the same key as the OpenSSH one.
    let fp = text(
        &Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f", key])
            .output()
            .unwrap()
            .stdout,
    );
    let fp_rfc = rows[0]["fingerprint"].as_str().unwrap().to_string();
    assert!(fp.contains(&fp_rfc), "{fp} vs {fp_rfc}");

    // A mode the live session does not allow: refused with the fix.
    refused(
        &[
            "invite",
            "add",
            "bob",
            "--key-file",
            key,
            "--session",
            "other",
            "--mode",
            "pair",
        ],
        "session other allows only mirror: invite with --mode mirror",
    );
    // The same name twice: only with --replace.
    ok(&pj(&[
        "invite",
        "add",
        "dan",
        "--key-file",
        &other_key,
        "--session",
        "review2",
    ]));
    refused(
        &[
            "invite",
            "add",
            "dan",
            "--key-file",
            &other_key,
            "--session",
            "review2",
        ],
        "add --replace",
    );
    ok(&pj(&[
        "invite",
        "add",
        "dan",
        "--key-file",
        &other_key,
        "--session",
        "review2",
        "--replace",
        "--expires",
        "18:00 tomorrow",
    ]));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&pj(&["invite", "list", "--json"]))).unwrap();
    let dan = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dan")
        .unwrap();
    // 18:00 in Berlin is 16:00 or 17:00 UTC, whatever the season.
    let expires = dan["expires"].as_str().unwrap();
    assert!(
        expires.ends_with("T17:00:00Z") || expires.ends_with("T16:00:00Z"),
        "{expires}"
    );
    refused(
        &[
            "invite",
            "add",
            "erin",
            "--key-file",
            key,
            "--expires",
            "100y",
        ],
        "more than 30 days away",
    );
    refused(
        &[
            "invite",
            "add",
            "erin",
            "--key-file",
            key,
            "--expires",
            "2001-01-01",
        ],
        "not in the future",
    );
    // Completion (clap's dynamic engine through a real bash) offers this
    // host's sessions: the running one and the one an invite waits for;
    // profile names; and never the internal commands.
    let script = r#"
source <(PAIRJAIL_COMPLETE=bash "$PJ")
complete_words() {
  COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_TYPE=9
  _clap_complete_pairjail pairjail "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}"
}
echo "== sessions"; PAIRJAIL_RUNTIME_DIR="$RT" complete_words pairjail status --session ""
echo "== profiles"; complete_words pairjail probe --profile gu
echo "== commands"; complete_words pairjail ""
"#;
    let out = run_as(HOST, "bash")
        .args(["-c", script])
        .env("PJ", bin)
        .env("RT", &rt)
        .env("HOME", format!("/home/{HOST}"))
        .current_dir("/")
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let part = |name: &str| {
        said.split(&format!("== {name}\n"))
            .nth(1)
            .unwrap_or("")
            .split("==")
            .next()
            .unwrap_or("")
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let sessions = part("sessions");
    for want in ["other", "review", "review2"] {
        assert!(
            sessions.iter().any(|s| s == want),
            "{said}{}",
            text(&out.stderr)
        );
    }
    assert_eq!(part("profiles"), ["guest-direct", "guest-relay"], "{said}");
    let commands = part("commands");
    assert!(commands.iter().any(|c| c == "start"), "{said}");
    assert!(!said.contains("__"), "internal commands offered: {said}");
    ok(&pj(&["stop", "--session", "other"]));
    let _ = fs::remove_dir_all(&d);
}

/// A second sshd on 127.0.0.1 acting as the relay: it lets the host in
/// with `key`'s public half and binds remote forwards where the client
/// asks (`GatewayPorts clientspecified`: here, 127.0.0.1 only).
struct Relay {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Relay {
    fn new(dir: &Path, host_public: &str) -> Relay {
        fs::create_dir_all(dir.join("keys")).unwrap();
        fs::write(dir.join("keys").join(HOST), host_public).unwrap();
        keygen_at(&dir.join("hostkey"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/keys/%u\nGatewayPorts clientspecified\nAllowTcpForwarding remote\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nLogLevel ERROR\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut r = Relay {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        r.start();
        r
    }

    fn start(&mut self) {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stderr(fs::File::create(self.dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually(10, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .map(|_| ())
                .map_err(|e| format!("relay sshd: {e}"))
        });
    }

    /// Every process of this sshd, its connections' too: a restart as a
    /// reboot of the relay would do it.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let mut doomed = vec![c.id() as i32];
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(children(doomed[i]));
            i += 1;
        }
        for pid in doomed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = c.wait();
    }

    fn host_key_line(&self) -> String {
        let public = fs::read_to_string(self.dir.join("hostkey.pub")).unwrap();
        format!("[127.0.0.1]:{} {}", self.port, public.trim())
    }
}

/// The pids whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid: Option<i32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid)
            && let Ok(child) = e.file_name().to_string_lossy().parse()
        {
            out.push(child);
        }
    }
    out
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_tunnel_through_a_relay_comes_back_after_the_relay_restarts() {
    let _turn = host_turn();
    let Some(mut w) = World::bare("ob-tun", "", ".ssh/authorized_keys") else {
        return;
    };
    w.start_sshd();
    let bin = shared_binary();
    let ssh = Path::new("/home").join(HOST).join(".ssh");
    let _ = fs::remove_file(ssh.join("authorized_keys"));
    fs::create_dir_all(&ssh).unwrap();
    let own = |p: &Path| {
        let uid = nix::unistd::Uid::from_raw(uid_of(HOST));
        nix::unistd::chown(p, Some(uid), None).unwrap();
    };
    own(&ssh);
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
    // The host's key for the relay, and its ~/.ssh/config alias.
    let key = ssh.join("pj_tunnel");
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    keygen_at(&key);
    let mut relay = Relay::new(
        &w.dir.join("relay"),
        &fs::read_to_string(key.with_extension("pub")).unwrap(),
    );
    // First with the relay's host key unknown: start says so, and stops.
    fs::write(ssh.join("pj_known_relay"), "").unwrap();
    fs::write(
        ssh.join("config"),
        format!(
            "Host pjrelay\n  HostName 127.0.0.1\n  Port {}\n  User {HOST}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
            relay.port,
            key.display(),
            ssh.join("pj_known_relay").display()
        ),
    )
    .unwrap();
    for f in ["pj_tunnel", "pj_tunnel.pub", "pj_known_relay", "config"] {
        own(&ssh.join(f));
    }
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _ = as_login_host(bin, &["stop", "--session", "obtun"], &[]);
    let start = || {
        as_login_host(
            bin,
            &[
                "start",
                "--detach",
                "--session",
                "obtun",
                "--ssh-port",
                &w.port.to_string(),
                "--tunnel",
                "pjrelay",
                "--tunnel-port",
                &format!("127.0.0.1:{listen}"),
                "--",
                "sh",
                "-c",
                &format!("echo {MARKER}; exec sh"),
            ],
            &[],
        )
    };
    let out = start();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the tunnel to pjrelay did not come up: Host key verification failed")
            && err.contains("the share was stopped")
            && !err.contains("\\r"),
        "{err}"
    );
    let st = ok(&as_login_host(bin, &["status"], &[]));
    assert!(st.contains("no shared sessions"), "{st}");
    fs::write(ssh.join("pj_known_relay"), relay.host_key_line() + "\n").unwrap();

    let said = ok(&start());
    // The line leads to the relay (its real name, from the alias).
    let words = printed_line(&said);
    assert_eq!(
        words[2..],
        [format!("{HOST}@127.0.0.1"), "-p".into(), listen.to_string()],
        "{said}"
    );
    let bob = w.keygen("bob");
    let carol = w.keygen("carol");
    for (name, k) in [("bob", &bob), ("carol", &carol)] {
        let public = k.with_extension("pub").display().to_string();
        ok(&as_login_host(
            bin,
            &[
                "invite",
                "add",
                name,
                "--key-file",
                &public,
                "--session",
                "obtun",
            ],
            &[],
        ));
    }
    let win = run_printed_line(&w, "bob", &bob, &words);
    w.wait_screen(&win, MARKER, 20);

    // The relay restarts (every sshd process of it): the tunnel comes back
    // by itself, and a guest gets in through it again.
    relay.stop();
    relay.start();
    let tunnel = || {
        let out = as_login_host(bin, &["status", "--json", "--session", "obtun"], &[]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["tunnel"].clone()
    };
    eventually(60, || {
        let t = tunnel();
        if t["state"] == "up" && t["reconnects"].as_u64() >= Some(1) {
            Ok(())
        } else {
            Err(format!("the tunnel did not come back: {t}"))
        }
    });
    let win = run_printed_line(&w, "carol", &carol, &words);
    w.wait_screen(&win, MARKER, 20);

    // The tunnel lives exactly as long as the share.
    ok(&as_login_host(bin, &["stop", "--session", "obtun"], &[]));
    eventually(10, || {
        let out = Command::new("pgrep")
            .args(["-u", HOST, "-f", "pjrelay"])
            .output()
            .unwrap();
        if out.stdout.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the tunnel's ssh outlived the share: {}",
                text(&out.stdout)
            ))
        }
    });
    for f in [
        "pj_tunnel",
        "pj_tunnel.pub",
        "pj_known_relay",
        "config",
        "authorized_keys",
    ] {
        let _ = fs::remove_file(ssh.join(f));
    }
}

/// Checks `json_text` against `pairjail schema OUTPUT` with python's
/// jsonschema, and that the schema rejects an empty record, or for a
/// profile a wrong type (a schema that takes anything proves nothing).
fn validates(bin: &Path, output: &str, json_text: &str) {
    let schema = Command::new(bin).args(["schema", output]).output().unwrap();
    let schema = ok(&schema);
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (dir.path().join("schema.json"), dir.path().join("doc.json"));
    fs::write(&s, schema).unwrap();
    fs::write(&d, json_text).unwrap();
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema, format_checker=cls.FORMAT_CHECKER)
text = open(sys.argv[2]).read()
docs = [json.loads(l) for l in text.splitlines() if l.strip()] if sys.argv[3] == "lines" else [json.loads(text)]
for doc in docs:
    errs = list(v.iter_errors(doc))
    if errs:
        sys.exit(f"{errs[0].json_path}: {errs[0].message}")
# A profile may be empty (every field has a default); a wrong type may not.
if sys.argv[4] == "profile":
    bad = {"namespaces": 5}
else:
    bad = [{}] if isinstance(docs[0], list) else {}
assert list(v.iter_errors(bad)), f"{bad} passed"
"#;
    let lines = if output == "audit-line" {
        "lines"
    } else {
        "one"
    };
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&s)
        .arg(&d)
        .arg(lines)
        .arg(output)
        .output()
        .expect("python3 (apt install python3-jsonschema)");
    assert!(
        out.status.success(),
        "{output}: {}{}\n{json_text}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn every_json_output_validates_against_its_schema() {
    let _turn = host_turn();
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    let bin = shared_binary();
    let d = scratch("ob-json");
    let rt = d.join("run").display().to_string();
    let audit = d.join("audit.jsonl").display().to_string();
    let key = &readable_copy(&d, "ed25519.pub");
    let pj = |args: &[&str]| {
        run_as(HOST, bin)
            .args(args)
            .env("HOME", format!("/home/{HOST}"))
            .env("PAIRJAIL_AUDIT_LOG", &audit)
            .env_remove("PAIRJAIL_CONFIG")
            .current_dir("/")
            .output()
            .unwrap()
    };
    let added = ok(&pj(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        key,
        "--session",
        "js",
        "--via",
        "pair-user",
        "--runtime-dir",
        &rt,
        "--json",
    ]));
    validates(bin, "invite-add", &added);
    ok(&pj(&[
        "start",
        "--detach",
        "--session",
        "js",
        "--runtime-dir",
        &rt,
        "--",
        "sh",
    ]));
    let outputs: Vec<(&str, Vec<&str>)> = vec![
        ("status", vec!["status", "--json", "--runtime-dir", &rt]),
        (
            "invite-list",
            vec!["invite", "list", "--json", "--runtime-dir", &rt],
        ),
        ("doctor", vec!["doctor", "--json", "--runtime-dir", &rt]),
        ("audit-verify", vec!["audit", "verify", &audit, "--json"]),
        ("audit-line", vec!["audit", "show", &audit, "--json"]),
        (
            "profile",
            vec!["profile", "show", "guest-relay", "--resolved", "--json"],
        ),
        ("profile-list", vec!["profile", "list", "--json"]),
        (
            "profile-check",
            vec!["profile", "check", "guest-relay", "workspace", "--json"],
        ),
        (
            "probe",
            vec![
                "probe",
                "--profile",
                "guest-relay",
                "--only",
                "tiocsti",
                "--json",
            ],
        ),
    ];
    for (output, args) in &outputs {
        let out = pj(args);
        // doctor exits 1 when a check fails; its JSON is still the output.
        let said = text(&out.stdout);
        assert!(!said.trim().is_empty(), "{args:?}: {}", text(&out.stderr));
        validates(bin, output, &said);
    }
    // A failure with --json is JSON on stdout, with the exit status.
    let out = pj(&["status", "--json", "--runtime-dir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout);
    assert!(said.contains("no such directory"), "{said}");
    validates(bin, "error", &said);
    // Times are RFC 3339 everywhere a script reads them.
    let status: serde_json::Value =
        serde_json::from_slice(&pj(&["status", "--json", "--runtime-dir", &rt]).stdout).unwrap();
    assert!(
        status[0]["since"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    ok(&pj(&["stop", "--session", "js", "--runtime-dir", &rt]));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn start_from_inside_tmux_opens_a_window_instead_of_nesting() {
    let _turn = host_turn();
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    let bin = shared_binary();
    let d = scratch("ob-tmux");
    let rt = d.join("run").display().to_string();
    let server = format!("obtmux-{}", std::process::id());
    // The host's own tmux, with `pairjail start` typed in its pane.
    let tmux = |args: &[&str]| {
        run_as(HOST, "tmux")
            .args(["-L", &server])
            .args(args)
            .env("HOME", format!("/home/{HOST}"))
            .env_remove("TMUX")
            .output()
            .unwrap()
    };
    let cmd = format!(
        "PAIRJAIL_AUDIT_LOG={d}/audit.jsonl {bin} start --session obtm --runtime-dir {rt} -- sh -c 'echo {MARKER}; exec sh' > {d}/said 2>&1; sleep 600",
        d = d.display(),
        bin = bin.display()
    );
    ok(&tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "mine",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]));
    let window = eventually(20, || {
        let w = text(&tmux(&["list-windows", "-a", "-F", "#{window_name}"]).stdout);
        if w.contains("pairjail-obtm") {
            Ok(w)
        } else {
            Err(format!(
                "no pairjail window in the host's tmux: {w} {:?}",
                fs::read_to_string(d.join("said"))
            ))
        }
    });
    assert!(window.contains("pairjail-obtm"));
    eventually(20, || {
        let screen = text(&tmux(&["capture-pane", "-p", "-t", "mine:pairjail-obtm"]).stdout);
        if screen.contains(MARKER) {
            Ok(())
        } else {
            Err(format!("the window does not show the share: {screen}"))
        }
    });
    let said = fs::read_to_string(d.join("said")).unwrap();
    assert!(said.contains("you are inside tmux"), "{said}");
    let _ = run_as(HOST, bin)
        .args(["stop", "--session", "obtm", "--runtime-dir", &rt])
        .output();
    let _ = tmux(&["kill-server"]);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn status_never_believes_a_share_another_user_planted() {
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    let bin = SafeBinary::new("ob-plant");
    let tmp = scratch("ob-plant");
    // Another user (nobody) makes the host's private /tmp directory first,
    // with a "share" whose control socket answers like a broker, naming a
    // session that would drive the host's terminal.
    let dir = tmp.join(format!("pairjail-{}", uid_of(HOST)));
    let session = dir.join(HOST).join("evil");
    fs::create_dir_all(&session).unwrap();
    for d in [&dir, &dir.join(HOST), &session] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
        nix::unistd::chown(d.as_path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    }
    let sock = session.join("control.sock");
    let listener = r#"
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)
open(sys.argv[1] + ".up", "w").close()
reply = json.dumps({"type": "status_reply", "session": {
    "session": "\u001b]0;PWNED\u0007evil", "host": "pjhost", "since": 0,
    "allowed_modes": ["mirror"], "default_mode": "mirror", "guests": []}}).encode()
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(bytes([0]) + struct.pack(">I", len(reply)) + reply)
    c.close()
"#;
    let mut fake = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args(["/usr/bin/python3", "-c", listener])
        .arg(&sock)
        .spawn()
        .unwrap();
    eventually(10, || {
        sock.with_extension("sock.up")
            .exists()
            .then_some(())
            .ok_or("the fake broker did not start".to_string())
    });
    // The host's default is elsewhere (XDG_RUNTIME_DIR); status looks into
    // the other places a share of theirs could be.
    let out = as_login_host(
        &bin.path,
        &["status"],
        &[
            ("TMPDIR", &tmp.display().to_string()),
            ("XDG_RUNTIME_DIR", "/nonexistent-xdg"),
        ],
    );
    let _ = fake.kill();
    let _ = fake.wait();
    let said = text(&out.stdout);
    assert!(
        !said.contains("PWNED") && !said.contains("evil") && !said.contains("also shared"),
        "status believed a planted share: {said}"
    );
    let _ = fs::remove_dir_all(&tmp);
}

/// A PATH whose `ssh` plays the tunnel's relay: it answers `ssh -G`, says
/// `script` on its stderr, then hangs as a connection would.
fn fake_ssh(w: &World, script: &str) -> String {
    let fake = w.dir.join("fakessh");
    fs::create_dir_all(&fake).unwrap();
    fs::set_permissions(&w.dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        fake.join("ssh"),
        format!(
            "#!/bin/sh\n\
             case \"$1\" in -G) echo 'hostname 127.0.0.1'; exit 0;; esac\n\
             {script}exec sleep 600\n"
        ),
    )
    .unwrap();
    fs::set_permissions(fake.join("ssh"), fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/local/bin:/usr/bin:/bin", fake.display())
}

/// The relay of `start --tunnel` is someone else's machine, and ssh shows
/// what its sshd sends before login (banners, as many and as long as it
/// likes) on the stderr the broker reads. A hostile relay's 100 MB line
/// without an end and 20000 "remote forward success" lines must not grow
/// the broker's memory or the share's log, nor reach the host's terminal
/// as control characters. Here `ssh` on the host's PATH plays that relay.
#[test]
fn a_hostile_relay_cannot_grow_the_broker_or_its_log() {
    let _turn = host_turn();
    let Some(mut w) = World::bare("ob-hostile", "", ".ssh/authorized_keys") else {
        return;
    };
    w.start_sshd();
    let bin = shared_binary();
    let path = fake_ssh(
        &w,
        "echo 'debug1: remote forward success for: listen 1' >&2\n\
         head -c 100000000 /dev/zero | tr '\\0' A >&2\n\
         printf '\\n' >&2\n\
         i=0; while [ $i -lt 20000 ]; do echo 'debug1: remote forward success for: listen 1' >&2; i=$((i+1)); done\n\
         printf 'FAKE-SSH-\\rDONE\\n' >&2\n",
    );
    let env = [("PATH", path.as_str())];
    // The test's own runtime directory: its share and broker are found
    // there, never another test's.
    let rt = w.runtime.display().to_string();
    let host = |args: &[&str]| {
        let mut all = vec![args[0], "--runtime-dir", &rt];
        all.extend_from_slice(&args[1..]);
        as_login_host(bin, &all, &env)
    };
    let out = host(&[
        "start",
        "--detach",
        "--session",
        "obhost",
        "--ssh-port",
        &w.port.to_string(),
        "--tunnel",
        "pjrelay",
        "--tunnel-port",
        "127.0.0.1:2",
        "--",
        "sh",
        "-c",
        "exec sh",
    ]);
    // Stopped however the test ends.
    let _stop = OnDrop(|| {
        let _ = host(&["stop", "--session", "obhost"]);
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Everything the fake relay said has been read once its last line is
    // the tunnel's last complaint.
    let status = eventually(120, || {
        let st = host(&["status", "--json", "--session", "obhost"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
        let t = v[0]["tunnel"].clone();
        let last = t["last_error"].as_str().unwrap_or("").to_string();
        last.contains("DONE").then_some(t).ok_or(format!("{v}"))
    });
    let last = status["last_error"].as_str().unwrap().to_string();
    // The broker and its log.
    let broker = w.broker_pid("obhost");
    let peak_kib: u64 = fs::read_to_string(format!("/proc/{broker}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let log = w.runtime.join(HOST).join("obhost.log");
    let logged = fs::metadata(&log).unwrap().len();
    let said = fs::read_to_string(&log).unwrap_or_default();
    let ups = said.matches("tunnel: up").count();
    assert!(
        peak_kib < 64 * 1024,
        "a 100 MB line from the relay took the broker to {peak_kib} KiB"
    );
    assert!(logged < 64 * 1024, "the share's log grew to {logged} bytes");
    assert_eq!(ups, 1, "the tunnel came up {ups} times in the log");
    // Its carriage return shown, not obeyed.
    assert!(!last.contains('\r'), "{last:?}");
}

/// A Ctrl-C on `start` after its broker is ready, while `start` still adds
/// the invites or waits for the tunnel, must not leave a share running
/// that the host was never told of (and with none of its invites). Here
/// the tunnel's relay never answers (`ssh` on the host's PATH says
/// nothing), so `start` waits for it; then it is killed as Ctrl-C would.
#[test]
fn a_start_stopped_while_it_sets_up_the_share_leaves_no_share_behind() {
    let _turn = host_turn();
    let Some(mut w) = World::bare("ob-ctrlc", "", ".ssh/authorized_keys") else {
        return;
    };
    w.start_sshd();
    let bin = shared_binary();
    let path = fake_ssh(&w, "");
    let env = [("PATH", path.as_str())];
    let rt = w.runtime.display().to_string();
    let host = |args: &[&str]| {
        let mut all = vec![args[0], "--runtime-dir", &rt];
        all.extend_from_slice(&args[1..]);
        as_login_host(bin, &all, &env)
    };
    let _stop = OnDrop(|| {
        let _ = host(&["stop", "--session", "obctrlc"]);
    });
    let mut start = run_as(HOST, bin)
        .args([
            "start",
            "--runtime-dir",
            &rt,
            "--detach",
            "--session",
            "obctrlc",
        ])
        .args(["--ssh-port", &w.port.to_string(), "--tunnel", "pjrelay"])
        .args(["--tunnel-port", "127.0.0.1:2", "--", "sh", "-c", "exec sh"])
        .env("HOME", format!("/home/{HOST}"))
        .env("PATH", &path)
        .env("TERM", "xterm")
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The broker is ready (the share is listed); `start` waits for the
    // tunnel, which never comes up.
    eventually(30, || {
        let st = host(&["status", "--json", "--session", "obctrlc"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
        (v[0]["session"] == "obctrlc")
            .then_some(())
            .ok_or(format!("not listed yet: {v}"))
    });
    // Killed outright: the broker sees what a Ctrl-C leaves, `start`'s
    // end of their line closed (a SIGINT the test's own parent ignores
    // would be ignored by `start` too).
    start.kill().unwrap();
    let _ = start.wait();
    let dir = w.session_paths("obctrlc");
    eventually(30, || {
        (!dir.exists()).then_some(()).ok_or(format!(
            "the share runs on after its `start` was stopped: {}",
            dir.display()
        ))
    });
    // Its log says why it ended.
    let said = fs::read_to_string(w.runtime.join(HOST).join("obctrlc.log")).unwrap_or_default();
    assert!(said.contains("`start` ended before"), "{said}");
}
