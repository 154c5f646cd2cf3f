//! The workspace jail, attacked: a pair guest on a real sshd types into a
//! jailed session and tries to reach the host's secrets, agent, other tmux
//! servers, home, privileges, and — through tmux itself — the tmux
//! clients that run outside. The same attacks succeed in a session the
//! host shared with `--unconfined-session`, so each check can fail.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::{HOST, World};
use common::{run_as, shared_binary, text};

const HOST_PROGRAM: &str = "echo HOST-MARKER-4242; exec sh";

/// Secrets planted in the host's home: (path under home, content).
const SECRETS: &[(&str, &str)] = &[
    (".ssh/id_ed25519", "PJ-SECRET-SSH-KEY"),
    (".bash_history", "PJ-SECRET-HISTORY"),
    (".aws/credentials", "PJ-SECRET-AWS"),
    (".netrc", "PJ-SECRET-NETRC"),
    (".git-credentials", "PJ-SECRET-GITCRED"),
    (".cargo/credentials.toml", "PJ-SECRET-CARGO"),
    (".config/gh/hosts.yml", "PJ-SECRET-GH"),
    (".vault-token", "PJ-SECRET-VAULT"),
    (".docker/config.json", "PJ-SECRET-DOCKER"),
    // Earlier shares' recordings hold what other guests typed.
    (
        ".local/state/pairjail/recordings/planted.cast",
        "PJ-SECRET-RECORDING",
    ),
];

/// A setuid-root copy of `id` (nosuid and no_new_privs must defeat it).
const SUID_ID: &str = "/usr/local/bin/pj-suid-id";

fn home() -> PathBuf {
    PathBuf::from(format!("/home/{HOST}"))
}

fn host_uid() -> u32 {
    std::fs::metadata(home().join(SECRETS[0].0))
        .map(|m| m.uid())
        .unwrap()
}

fn plant_secrets() {
    // The home must be the host's for "cannot write into the home" to mean
    // anything (a reused uid can leave it someone else's).
    let out = Command::new("chown")
        .arg(format!("{HOST}:{HOST}"))
        .arg(home())
        .output()
        .unwrap();
    assert!(out.status.success(), "chown home: {}", text(&out.stderr));
    // Tests of this file run two at a time and each plants the secrets:
    // a plain write (truncate, then fill) could be read half-way by the
    // other test's check. Unchanged files are left alone; changed ones are
    // replaced whole (rename).
    for (rel, content) in SECRETS {
        let p = home().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let want = format!("{content}\n");
        if std::fs::read_to_string(&p).ok().as_deref() != Some(want.as_str()) {
            let tmp = p.with_extension("pj-planting");
            std::fs::write(&tmp, &want).unwrap();
            std::fs::rename(&tmp, &p).unwrap();
        }
    }
    std::fs::write(
        home().join(".gitconfig"),
        "[user]\n\tname = Host Person\n\temail = host@example.org\n",
    )
    .unwrap();
    let out = Command::new("chown")
        .args(["-R", &format!("{HOST}:{HOST}")])
        .args(
            SECRETS
                .iter()
                .map(|(rel, _)| home().join(rel.split('/').next().unwrap())),
        )
        .arg(home().join(".gitconfig"))
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {}", text(&out.stderr));
    if !Path::new(SUID_ID).exists() {
        std::fs::copy("/usr/bin/id", format!("{SUID_ID}.tmp")).unwrap();
        let out = Command::new("chmod")
            .args(["4755", &format!("{SUID_ID}.tmp")])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::rename(format!("{SUID_ID}.tmp"), SUID_ID).unwrap();
    }
}

fn secrets_unchanged() {
    for (rel, content) in SECRETS {
        let now = std::fs::read_to_string(home().join(rel)).unwrap();
        assert_eq!(now, format!("{content}\n"), "{rel} was changed");
    }
}

/// An ssh-agent of the host's, at its usual place under /tmp: (socket, pid).
fn start_agent() -> (String, String) {
    let out = run_as(HOST, "ssh-agent").arg("-s").output().unwrap();
    let s = text(&out.stdout);
    let field = |name: &str| {
        s.split(';')
            .find_map(|part| part.trim().strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {s}"))
            .to_string()
    };
    (field("SSH_AUTH_SOCK"), field("SSH_AGENT_PID"))
}

/// Everything the session's first pane has printed, history included.
fn pane(w: &World, session: &str) -> String {
    w.host_tmux(
        session,
        &[
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-2000",
            "-t",
            &format!("={session}:0"),
        ],
    )
}

fn wait_pane(w: &World, session: &str, needle: &str) -> String {
    common::eventually(30, || {
        let p = pane(w, session);
        if p.contains(needle) {
            Ok(p)
        } else {
            Err(format!("'{needle}' never appeared in {session}:\n{p}"))
        }
    })
}

fn type_line(w: &World, target: &str, line: &str) {
    w.drv(&["send-keys", "-t", target, "-l", line]);
    w.drv(&["send-keys", "-t", target, "Enter"]);
}

/// The host's own terminal: a driver window `window` running `pairjail
/// SUBCOMMAND REST` as the host, from the workspace, with `env` (`NAME=value
/// …`) added; it shows `EXIT=<status>` when pairjail ends. `gated`: it
/// waits for an Enter first (time to set up `pipe-pane`). Returns the
/// window's target.
fn host_terminal(w: &World, window: &str, env: &str, command: &str, gated: bool) -> String {
    let (sub, rest) = command.split_once(' ').unwrap_or((command, ""));
    let cmd = format!(
        "{gate}cd {ws} && setpriv --reuid {HOST} --regid {HOST} --init-groups -- env -u TMUX HOME=/home/{HOST} {env} {bin} {sub} --runtime-dir {rt} {rest}; echo EXIT=$?; sleep 600",
        gate = if gated { "read _; " } else { "" },
        ws = w.workspace().display(),
        bin = common::shared_binary().display(),
        rt = w.runtime.display(),
    );
    w.drv(&["new-window", "-d", "-n", window, &cmd]);
    format!("drv:{window}")
}

/// What a pair guest types to reach the host's things; every probe ends
/// with a marker line.
fn attack_lines(agent: &str, tag: &str) -> Vec<String> {
    let files: Vec<&str> = SECRETS.iter().map(|(rel, _)| *rel).collect();
    vec![
        format!(
            "for f in {}; do cat \"$HOME/$f\"; done; echo READ-DONE",
            files.join(" ")
        ),
        format!("echo SOCK=[$SSH_AUTH_SOCK]; SSH_AUTH_SOCK={agent} ssh-add -l; echo AGENT-DONE"),
        "tmux -S /tmp/tmux-$(id -u)/default list-sessions; echo TMUX-DONE".into(),
        format!("echo x > $HOME/outside-{tag}; echo WRITE-DONE"),
        format!("echo EUID=$({SUID_ID} -u); sudo -n true; echo SUDO=$?"),
        "cat /proc/keys /proc/key-users; echo KEYS-DONE".into(),
        format!("echo inside > inside-{tag}; echo INSIDE-$((40+2))"),
    ]
}

#[test]
fn a_pair_guest_cannot_reach_the_hosts_secrets_agent_other_sessions_or_privileges() {
    let Some((w, guests)) = World::new("wsattack", &[("mallory", "sjail", Some("pair"))]) else {
        return;
    };
    plant_secrets();
    let (agent, agent_pid) = start_agent();
    // The host's own default tmux server, with a session of its own (a
    // failed earlier run may have left one).
    let _ = run_as(HOST, "tmux")
        .args(["kill-session", "-t", "hostprivate"])
        .output();
    let out = run_as(HOST, "tmux")
        .args(["new-session", "-d", "-s", "hostprivate"])
        .env("HOME", home())
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "host tmux: {}", text(&out.stderr));
    // Outside the jail the host's agent and setuid programs work: the
    // checks below can fail.
    let outside = run_as(HOST, "ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &agent)
        .output()
        .unwrap();
    assert!(
        text(&outside.stdout).contains("no identities"),
        "{outside:?}"
    );
    let euid = run_as(HOST, SUID_ID).arg("-u").output().unwrap();
    assert_eq!(text(&euid.stdout).trim(), "0");
    // A key in the host's user keyring (kept while its tmux server runs),
    // whose name the kernel lists in /proc/keys to every reader whose
    // namespace maps the host's uid.
    // (add_key and keyctl by number: no keyutils needed.)
    let keys = "import ctypes, platform, sys; l = ctypes.CDLL(None); \
                add, ctl = {'x86_64': (248, 250), 'aarch64': (217, 219)}[platform.machine()]";
    let key = run_as(HOST, "/usr/bin/python3")
        .args([
            "-c",
            &format!(
                "{keys}; k = l.syscall(add, b'user', b'PJ-SECRET-KEY', b'x', 1, -4); \
                 assert k > 0; print(k); print(open('/proc/keys').read())"
            ),
        ])
        .output()
        .unwrap();
    assert!(text(&key.stdout).contains("PJ-SECRET-KEY"), "{key:?}");
    let id = text(&key.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    // Revoked when the test ends: the user keyring outlives its processes.
    let _revoke = common::OnDrop(|| {
        let _ = run_as(HOST, "/usr/bin/python3")
            .args(["-c", &format!("{keys}; l.syscall(ctl, 3, {id})")])
            .output();
    });

    let out = w.try_start_session(
        "sjail",
        "mirror,pair",
        HOST_PROGRAM,
        &[],
        &[("SSH_AUTH_SOCK", &agent), ("DISPLAY", ":0")],
    );
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("jailed: profile workspace"),
        "{}",
        text(&out.stdout)
    );
    let host = w.attach_host("sjail");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);

    for line in attack_lines(&agent, "wsattack") {
        type_line(&w, &guest, &line);
    }
    let p = wait_pane(&w, "sjail", "INSIDE-42");
    assert!(!p.contains("PJ-SECRET"), "a secret was read:\n{p}");
    assert!(
        p.contains("SOCK=[]"),
        "the agent variable reached the session:\n{p}"
    );
    assert!(!p.contains("no identities"), "the agent answered:\n{p}");
    assert!(
        !p.contains("hostprivate"),
        "the host's tmux server answered:\n{p}"
    );
    assert!(
        !home().join("outside-wsattack").exists(),
        "wrote into the home"
    );
    assert!(
        p.contains(&format!("EUID={}", host_uid())) && !p.contains("EUID=0"),
        "the setuid program ran as root:\n{p}"
    );
    assert!(!p.contains("SUDO=0"), "sudo succeeded:\n{p}");
    // The workspace is writable, and what is made there is the host's.
    let made = w.workspace().join("inside-wsattack");
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), host_uid());

    // tmux runs commands for the guest too: run-shell lives in the jail.
    w.drv(&["send-keys", "-t", &guest, "C-b", ":"]);
    // Typed before tmux's prompt is open, the line would go to the shell.
    common::eventually(20, || {
        let screen = w.screen(&guest);
        let last = screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if last.trim_end() == ":" {
            Ok(())
        } else {
            Err(format!("tmux's prompt did not open:\n{screen}"))
        }
    });
    type_line(
        &w,
        &guest,
        &format!(
            "run-shell 'cat $HOME/.ssh/id_ed25519 > $HOME/runshell-leak; touch {}/runshell-ran'",
            w.workspace().display()
        ),
    );
    common::eventually(20, || {
        if w.workspace().join("runshell-ran").exists() {
            Ok(())
        } else {
            Err("run-shell never ran".to_string())
        }
    });
    assert!(
        !home().join("runshell-leak").exists(),
        "run-shell wrote into the home"
    );

    // Last, tmux's own way out: clients run what the server tells them
    // (lock-command, detach-client -E). Every client of this session —
    // the host's, the broker's — is jailed and cannot start a program.
    let escape = home().join("escape-wsattack");
    type_line(
        &w,
        &guest,
        &format!(
            "tmux set -g lock-command 'touch {e}-lock'; tmux lock-server; for c in $(tmux list-clients -F '#{{client_name}}'); do tmux detach-client -t $c -E 'touch {e}-exec'; done",
            e = escape.display()
        ),
    );
    let h = w.wait_screen(&host, "ATTACH-EXIT=", 30);
    assert!(h.contains("client jail stopped it"), "{h}");
    for suffix in ["-lock", "-exec"] {
        let e = PathBuf::from(format!("{}{suffix}", escape.display()));
        assert!(
            !e.exists(),
            "a tmux client ran a command outside: {}",
            e.display()
        );
    }
    secrets_unchanged();

    let _ = w.host_pairjail(&["stop", "--session", "sjail"]);
    let _ = run_as(HOST, "tmux")
        .args(["kill-session", "-t", "hostprivate"])
        .output();
    let _ = Command::new("kill").arg(agent_pid).output();
}

#[test]
fn the_opt_out_is_explicit_and_then_a_pair_guest_acts_as_the_host() {
    let Some((w, guests)) = World::new("wsoptout", &[("oscar", "sopen", Some("pair"))]) else {
        return;
    };
    plant_secrets();
    let out = w.try_start_session(
        "sopen",
        "mirror,pair",
        HOST_PROGRAM,
        &["--unconfined-session"],
        &[],
    );
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: --unconfined-session: pair and rogue guests can do everything your account can"),
        "{err}"
    );
    let status = text(&w.host_pairjail(&["status"]).stdout);
    assert!(
        status.contains("unconfined: what runs in the session runs as you"),
        "{status}"
    );
    let host = w.attach_host("sopen");
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The marker is computed: the typed line itself must not satisfy the
    // wait before the output is there.
    type_line(&w, &guest, "cat $HOME/.ssh/id_ed25519; echo READ-$((40+2))");
    let p = wait_pane(&w, "sopen", "READ-42");
    assert!(p.contains("PJ-SECRET-SSH-KEY"), "{p}");
    // The host's plain tmux client runs what the session tells it.
    let escape = home().join("escape-wsoptout");
    let _ = std::fs::remove_file(&escape);
    type_line(
        &w,
        &guest,
        &format!(
            "tmux set -g lock-command 'touch {}'; tmux lock-server",
            escape.display()
        ),
    );
    common::eventually(20, || {
        if escape.exists() {
            Ok(())
        } else {
            Err(format!(
                "lock-command never ran in the host's client:\n{}\n{}",
                pane(&w, "sopen"),
                w.screen(&host)
            ))
        }
    });
    let _ = std::fs::remove_file(&escape);
    let _ = w.host_pairjail(&["stop", "--session", "sopen"]);
}

#[test]
fn a_developer_can_work_in_the_jailed_session() {
    let Some((w, guests)) = World::new("wsdev", &[("pat", "sdev", Some("pair"))]) else {
        return;
    };
    plant_secrets();
    w.start_session("sdev", "mirror,pair", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    for line in [
        "git init -q g && cd g && git commit -q --allow-empty -m one && git log -1 --format=AUTHOR=%an; cd ..",
        "printf 'int main(void){return 42;}\\n' > m.c; printf 'm: m.c\\n\\tcc -o m m.c\\n' > Makefile; make -s; ./m; echo MAKE=$?",
        "mkdir -p pkg && echo 'X = 6*7' > pkg/__init__.py && python3 -m compileall -q pkg && python3 -c 'import pkg; print(\"PY=%d\" % pkg.X)'",
        "vi -es -c 'q' && echo VI-OK-$((1+1))",
    ] {
        type_line(&w, &guest, line);
    }
    let p = wait_pane(&w, "sdev", "PY=42");
    let p = if p.contains("VI-OK-2") {
        p
    } else {
        wait_pane(&w, "sdev", "VI-OK-2")
    };
    for want in ["AUTHOR=Host Person", "MAKE=42", "PY=42", "VI-OK-2"] {
        assert!(p.contains(want), "{want} missing:\n{p}");
    }
    let binary = std::fs::metadata(w.workspace().join("m")).unwrap();
    assert_eq!(binary.uid(), host_uid());
    let _ = w.host_pairjail(&["stop", "--session", "sdev"]);
}

#[test]
fn a_rogue_guests_own_window_is_jailed_too() {
    let Some((w, guests)) = World::new("wsrogue", &[("rita", "srjail", Some("rogue"))]) else {
        return;
    };
    plant_secrets();
    w.start_session("srjail", "rogue", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // Their own window, then the attack in it.
    w.drv(&["send-keys", "-t", &guest, "C-b", "c"]);
    common::eventually(20, || {
        let s = w.host_tmux("srjail", &["list-windows", "-a", "-F", "#{window_index}"]);
        if s.lines().any(|l| l.trim() == "1") {
            Ok(())
        } else {
            Err(format!("no second window: {s}"))
        }
    });
    type_line(
        &w,
        &guest,
        "cat $HOME/.ssh/id_ed25519; echo x > $HOME/outside-wsrogue; echo ROGUE-$((1+1))",
    );
    let s = w.wait_screen(&guest, "ROGUE-2", 20);
    assert!(!s.contains("PJ-SECRET"), "{s}");
    assert!(!home().join("outside-wsrogue").exists());
    let _ = w.host_pairjail(&["stop", "--session", "srjail"]);
}

#[test]
fn jailed_sessions_refuse_the_direct_transport_and_a_bad_workspace() {
    let Some((w, _)) = World::new("wsrefuse", &[]) else {
        return;
    };
    let out = w.try_start_session("sref", "mirror,pair", HOST_PROGRAM, &["--direct"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--direct cannot be used with a jailed session"),
        "{}",
        text(&out.stderr)
    );
    let out = w.try_start_session(
        "sref",
        "mirror,pair",
        HOST_PROGRAM,
        &["--workspace", &format!("/home/{HOST}")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("your home directory or one above it"),
        "{}",
        text(&out.stderr)
    );
    // Where the host's own tools, outside the jail, read what to run: a
    // hidden directory of the home (~/.ssh, ~/.config).
    let hidden = format!("/home/{HOST}/.config/pj-proj-{}", std::process::id());
    let _gone = common::OnDrop(|| {
        let _ = std::fs::remove_dir_all(&hidden);
    });
    let made = run_as(HOST, "mkdir")
        .args(["-p", &hidden])
        .status()
        .unwrap();
    assert!(made.success());
    let out = w.try_start_session(
        "sref",
        "mirror,pair",
        HOST_PROGRAM,
        &["--workspace", &hidden],
        &[],
    );
    let _ = w.host_pairjail(&["stop", "--session", "sref"]);
    assert!(
        out.status.code() == Some(2)
            && text(&out.stderr).contains("a hidden directory of your home"),
        "--workspace {hidden}: {}",
        text(&out.stderr)
    );
    let out = w.try_start_session(
        "sref",
        "mirror,pair",
        HOST_PROGRAM,
        &["--workspace", "/", "--unconfined-session"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("exclude each other"));
    // pairjail's own binary in the workspace, where guests could rewrite
    // it before the broker or a jail runs it again.
    let inside = w.workspace().join("pj-bin");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::copy(common::shared_binary(), inside.join("pairjail")).unwrap();
    common::wait_executable(&inside.join("pairjail"));
    let out = run_as(HOST, inside.join("pairjail"))
        .args([
            "start",
            "--detach",
            "--session",
            "sref",
            "--allow",
            "mirror,pair",
        ])
        .args(["--default-mode", "pair", "--runtime-dir"])
        .arg(&w.runtime)
        .args(["--", "sh", "-c", HOST_PROGRAM])
        .env("HOME", format!("/home/{HOST}"))
        .env("TERM", "xterm")
        .current_dir(w.workspace())
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out.stderr).contains("is inside the workspace"),
        "start ran a binary in the workspace: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&inside).unwrap();
    // A session profile in the workspace (which guests write), or one whose
    // `extends` would be looked up there first, is refused.
    let team = w.workspace().join("team");
    std::fs::create_dir_all(&team).unwrap();
    std::fs::write(
        team.join("strict.toml"),
        "extends = [\"workspace\"]\ndescription = \"the team's\"\n",
    )
    .unwrap();
    std::fs::write(
        team.join("workspace.toml"),
        PLANTED_PROFILE.replace("[params]\n", "[params]\nworkspace = \"/\"\nhome = \"/\"\n"),
    )
    .unwrap();
    let out = w.try_start_session(
        "sref",
        "mirror,pair",
        HOST_PROGRAM,
        &["--session-profile", "team/strict.toml"],
        &[],
    );
    let _ = w.host_pairjail(&["stop", "--session", "sref"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    // Refused as in this share's workspace, or (once a jailed share of it
    // ran) as in a workspace guests wrote before.
    assert!(
        text(&out.stderr).contains("inside the workspace")
            || text(&out.stderr).contains("the workspace of an earlier jailed share"),
        "{}",
        text(&out.stderr)
    );
    // A session profile without a pid namespace: what guests start would
    // outlive the share, which ends the jail through its pid 1.
    let nopid = World::dir_for("wsrefuse").join("nopid.toml");
    std::fs::write(
        &nopid,
        "extends = [\"workspace\"]\n[namespaces]\npid = false\n",
    )
    .unwrap();
    let out = w.try_start_session(
        "sref",
        "mirror,pair",
        HOST_PROGRAM,
        &["--session-profile", nopid.to_str().unwrap()],
        &[],
    );
    let _ = w.host_pairjail(&["stop", "--session", "sref"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("pid = true"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The record where guests could rewrite it (the workspace) or read it
    // (the home, off the hide list) is refused.
    let elsewhere = format!("/home/{HOST}/pj-audit-elsewhere.jsonl");
    for (args, why) in [
        (vec!["--record", "rec"], "inside the workspace"),
        (vec!["--audit-log", "audit.jsonl"], "inside the workspace"),
        (
            vec!["--audit-log", elsewhere.as_str()],
            "pair guests could read it",
        ),
    ] {
        let out = w.try_start_session("sref", "mirror,pair", HOST_PROGRAM, &args, &[]);
        let _ = w.host_pairjail(&["stop", "--session", "sref"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(why),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&elsewhere);
}

/// A profile a pair guest can write, which confines nothing.
const PLANTED_PROFILE: &str = "description = \"planted\"\n[params]\nsocket_dir = \"/\"\n[namespaces]\nmount = false\npid = false\n[ids]\nuid = \"caller\"\ngid = \"caller\"\n[landlock]\nenabled = false\n[seccomp]\nenabled = false\n[env]\nkeep = [\"TERM\"]\n";

#[test]
fn a_profile_a_guest_plants_in_the_workspace_never_replaces_the_jails_own() {
    let Some((w, guests)) = World::new(
        "wsplant",
        &[
            ("pia", "splant", Some("pair")),
            ("quinn", "splant", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("splant", "mirror,pair", HOST_PROGRAM);
    let pair = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&pair, "HOST-MARKER-4242", 20);
    // The broker (and the host's `pairjail attach`) start the session's
    // tmux clients from the workspace, which the guest can write.
    let planted = PLANTED_PROFILE.replace('\n', "\\n").replace('"', "\\\"");
    type_line(
        &w,
        &pair,
        &format!(
            "mkdir -p profiles && printf \"{planted}\" > profiles/session-client.toml && echo PLANTED-$((40+2))"
        ),
    );
    wait_pane(&w, "splant", "PLANTED-42");
    assert!(w.workspace().join("profiles/session-client.toml").exists());
    // A new client: the mirror guest's.
    let mirror = w.join_in_window(&guests[1], 100, 30);
    w.wait_screen(&mirror, "HOST-MARKER-4242", 20);
    let escape = home().join("escape-wsplant");
    let _ = std::fs::remove_file(&escape);
    type_line(
        &w,
        &pair,
        &format!(
            "for c in $(tmux list-clients -F '#{{client_name}}'); do tmux detach-client -t $c -E 'touch {}'; done",
            escape.display()
        ),
    );
    w.wait_screen(&mirror, "SSH-EXIT=", 30);
    assert!(
        !escape.exists(),
        "a client started after the guest planted a profile ran a command outside the jail"
    );
    let _ = w.host_pairjail(&["stop", "--session", "splant"]);
}

#[test]
fn the_jailed_session_never_holds_the_hosts_terminal() {
    let Some((w, guests)) = World::new("wstty", &[("rita", "stty", Some("pair"))]) else {
        return;
    };
    // The host shares from its own terminal (a driver window), as people do.
    let host = host_terminal(
        &w,
        "hostterm",
        "",
        &format!(
            "start --detach --session stty --allow mirror,pair --default-mode pair --guest-user {} -- sh -c '{HOST_PROGRAM}'",
            common::sshd::GUEST_USER
        ),
        false,
    );
    w.wait_screen(&host, "EXIT=0", 30);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // A job tmux runs for the guest (run-shell, #(), hooks) is a child of
    // the server: were the host's terminal the server's controlling
    // terminal, the job could open it and read what the host types there.
    let probe = w.workspace().join("ttyprobe");
    type_line(
        &w,
        &guest,
        &format!(
            "tmux run-shell -b 'python3 -c \"open(\\\"/dev/tty\\\", \\\"rb\\\")\" 2>/dev/null && echo TTY-OPEN > {p} || echo NO-TTY > {p}'",
            p = probe.display()
        ),
    );
    let seen = common::eventually(20, || match std::fs::read_to_string(&probe) {
        Ok(s) if s.ends_with('\n') => Ok(s),
        other => Err(format!("{}: {other:?}", probe.display())),
    });
    assert_eq!(
        seen.trim(),
        "NO-TTY",
        "a job of the session opened the host's terminal"
    );
    let _ = w.host_pairjail(&["stop", "--session", "stty"]);
}

#[test]
fn a_secret_replaced_or_made_after_the_start_stays_hidden() {
    let Some((w, guests)) = World::new("wslate", &[("sven", "slate", Some("pair"))]) else {
        return;
    };
    plant_secrets();
    // Two listed secrets no other test touches: one there at the start,
    // one whose directory is not.
    let pypirc = home().join(".pypirc");
    let kube = home().join(".kube");
    let _ = std::fs::remove_dir_all(&kube);
    std::fs::write(&pypirc, "PJ-OLD-PYPI\n").unwrap();
    let chown = |p: &Path| {
        let out = Command::new("chown")
            .args(["-R", &format!("{HOST}:{HOST}")])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "chown: {}", text(&out.stderr));
    };
    chown(&pypirc);
    w.start_session("slate", "mirror,pair", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // Meanwhile, outside, the host's tools save a listed secret the usual
    // way (a new file renamed over the old one) and make a new one.
    let fresh = home().join(".pypirc.pj-new");
    std::fs::write(&fresh, "PJ-LATE-PYPI\n").unwrap();
    chown(&fresh);
    std::fs::rename(&fresh, &pypirc).unwrap();
    std::fs::create_dir_all(&kube).unwrap();
    std::fs::write(kube.join("config"), "PJ-LATE-KUBE\n").unwrap();
    chown(&kube);
    type_line(
        &w,
        &guest,
        "cat ~/.pypirc ~/.kube/config; ls ~/.kube; echo LATE-$((40+2))",
    );
    let p = wait_pane(&w, "slate", "LATE-42");
    assert!(
        !p.contains("PJ-LATE"),
        "a secret saved after the start was read:\n{p}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "slate"]);
    let _ = std::fs::remove_dir_all(&kube);
    let _ = std::fs::remove_file(&pypirc);
}

#[test]
fn a_pair_guest_never_reaches_the_hosts_clipboard_or_terminal() {
    let Some((w, guests)) = World::new("wsclip", &[("cleo", "clip", Some("pair"))]) else {
        return;
    };
    w.start_session("clip", "mirror,pair", HOST_PROGRAM);
    // The host attaches from an xterm, as tmux sees it (its clipboard
    // feature is on by default); every byte its terminal gets is kept.
    let raw = World::dir_for("wsclip").join("host-terminal.raw");
    host_terminal(
        &w,
        "host-clip",
        "TERM=xterm-256color",
        "attach --session clip",
        true,
    );
    w.drv(&[
        "pipe-pane",
        "-O",
        "-t",
        "drv:host-clip",
        &format!("cat > {}", raw.display()),
    ]);
    w.drv(&["send-keys", "-t", "drv:host-clip", "Enter"]);
    w.wait_screen("drv:host-clip", "HOST-MARKER-4242", 30);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The guest makes tmux pass a clipboard write and a terminal string
    // to every client, and asks each client's terminal for its clipboard
    // (whatever the host copied: a password, a token).
    type_line(
        &w,
        &guest,
        "tmux set -g set-clipboard on; tmux set -g allow-passthrough on; echo SET-$((40+2))",
    );
    w.wait_screen("drv:host-clip", "SET-42", 20);
    type_line(
        &w,
        &guest,
        r"printf '\033]52;c;UEotQ0xJUA==\007'; printf '\033Ptmux;\033\033]1337;PJ-PASS\007\033\\'; for c in $(tmux list-clients -F '#{client_name}'); do tmux refresh-client -l -t $c; done; echo CLIP-$((40+2))",
    );
    w.wait_screen("drv:host-clip", "CLIP-42", 20);
    let got = common::eventually(20, || {
        let b = std::fs::read(&raw).map_err(|e| e.to_string())?;
        if b.windows(7).any(|x| x == b"CLIP-42") {
            Ok(b)
        } else {
            Err(format!("CLIP-42 not yet in {}", raw.display()))
        }
    });
    for (what, needle) in [
        ("a clipboard write or query", &b"\x1b]52;"[..]),
        ("a passthrough string", b"\x1b]1337"),
    ] {
        assert!(
            !got.windows(needle.len()).any(|x| x == needle),
            "the host's terminal got {what} from a pair guest:\n{}",
            String::from_utf8_lossy(&got).escape_debug()
        );
    }
    // The host's own terminal still works as one: the alternate screen,
    // its keys, its size.
    assert!(
        got.windows(8).any(|x| x == b"\x1b[?1049h"),
        "the host's client never entered the alternate screen"
    );
    type_line(&w, "drv:host-clip", "echo HOST-KEYS-$((40+2))");
    w.wait_screen("drv:host-clip", "HOST-KEYS-42", 20);
    w.drv(&[
        "resize-window",
        "-t",
        "drv:host-clip",
        "-x",
        "111",
        "-y",
        "33",
    ]);
    common::eventually(20, || {
        let sizes = w.host_tmux(
            "clip",
            &["list-clients", "-F", "#{client_width}x#{client_height}"],
        );
        if sizes.lines().any(|l| l.trim() == "111x33") {
            Ok(())
        } else {
            Err(format!("the host's client never got 111x33: {sizes:?}"))
        }
    });
    let _ = w.host_pairjail(&["stop", "--session", "clip"]);
    let _ = std::fs::remove_file(&raw);
}

/// Processes of `uid` whose command line is exactly `argv`.
fn processes(uid: u32, argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let owner = std::fs::metadata(e.path()).map(|m| m.uid());
        let cmdline = std::fs::read(e.path().join("cmdline"));
        if let (Ok(o), Ok(c)) = (owner, cmdline)
            && o == uid
            && c == want
        {
            found.push(pid);
        }
    }
    found
}

/// The jailed session's tmux socket is in a directory the jail can write:
/// a pair guest can put a link in its place. After a broker crash, `stop`
/// refused that link as "not yours" and left the session stuck (`start`
/// then refused it as a leftover) until someone removed it by hand.
#[test]
fn stop_after_a_broker_crash_ends_a_share_whose_socket_a_guest_replaced() {
    let Some((w, _guests)) = World::new("wslink", &[]) else {
        return;
    };
    w.start_session("slink", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "slink", "HOST-MARKER-4242");
    let sock = w.session_paths("slink").join("tmux/server/tmux.sock");
    // The broker first: a live one ends the share once its tmux server
    // stops answering on the socket's path, and takes the link with it.
    w.crash_broker("slink");
    let target = "=slink:";
    let line = "S=${TMUX%%,*}; rm \"$S\" && ln -s /nonexistent \"$S\"";
    w.host_tmux("slink", &["send-keys", "-t", target, "-l", line]);
    w.host_tmux("slink", &["send-keys", "-t", target, "Enter"]);
    common::eventually(20, || match std::fs::symlink_metadata(&sock) {
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        other => Err(format!("{}: {other:?}", sock.display())),
    });
    let stopped = w.host_pairjail(&["stop", "--session", "slink"]);
    assert!(
        stopped.status.success(),
        "stop after the crash: {}{}",
        text(&stopped.stdout),
        text(&stopped.stderr)
    );
    assert!(
        !w.session_paths("slink").exists(),
        "the session's directory outlived stop"
    );
}

#[test]
fn nothing_a_pair_guest_starts_outlives_the_share() {
    let Some((w, guests)) = World::new("wslinger", &[("lina", "linger", Some("pair"))]) else {
        return;
    };
    let uid = std::fs::metadata(home()).unwrap().uid();
    w.start_session("linger", "mirror,pair", HOST_PROGRAM);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The guest makes tmux's kill-server a no-op, leaves a directory it
    // made unreadable where the socket is, and a job behind in a session
    // of its own: were the jail ended by asking tmux, the
    // server and the job would run on after the share, as the host, with
    // the workspace writable (and a later `start` would take that server).
    // It also leaves a tree deeper than PATH_MAX there (25 levels of
    // 200-character names, built from the top down, as no shell can `cd`
    // that deep), unreadable at the bottom: what removes the socket's
    // directory must not need the paths inside it.
    type_line(
        &w,
        &guest,
        "tmux set -s 'command-alias[99]' 'kill-server=display-message ok'; D=$(dirname ${TMUX%%,*}); mkdir -p $D/keep/x; chmod 000 $D/keep; (cd $D && L=$(printf '%0200d' 0) && mkdir -p t/y/x && chmod 000 t/y && for i in $(seq 25); do mkdir n && mv t n/$L && mv n t || exit; done && echo TREE-$((40+2))); setsid sleep 31337 </dev/null >/dev/null 2>&1 & echo LINGER-$((40+2))",
    );
    wait_pane(&w, "linger", "LINGER-42");
    wait_pane(&w, "linger", "TREE-42");
    // The server's pid as the host sees it, which `start` recorded.
    let dir = w.session_paths("linger");
    let server = w.server_pid("linger");
    assert!(Path::new(&format!("/proc/{server}")).exists());
    common::eventually(20, || match processes(uid, &["sleep", "31337"]).len() {
        1 => Ok(()),
        n => Err(format!("{n} lingering jobs, not 1")),
    });
    let out = w.host_pairjail(&["stop", "--session", "linger"]);
    assert!(out.status.success(), "stop: {}", text(&out.stderr));
    // Gone once stop returns: no wait.
    let left = processes(uid, &["sleep", "31337"]);
    assert!(
        left.is_empty(),
        "the guest's job outlived the share: {left:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{server}")).exists(),
        "the session's tmux server outlived the share"
    );
    assert!(!dir.exists(), "the session's directory outlived the share");

    // The same after a crash: `stop` ends the dead broker's jail.
    w.start_session("linger", "mirror,pair", HOST_PROGRAM);
    let server = w.server_pid("linger");
    w.crash_broker("linger");
    assert!(Path::new(&format!("/proc/{server}")).exists());
    // `status` does not call that "no shared sessions" (found by a
    // read-only attack hunt), and says what ends it.
    let out = w.host_pairjail(&["status"]);
    assert!(
        text(&out.stderr).contains("session linger left its tmux server running")
            && text(&out.stderr).contains("pairjail stop --session linger"),
        "status after the crash: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = w.host_pairjail(&["stop", "--session", "linger"]);
    assert!(out.status.success(), "stop: {}", text(&out.stderr));
    assert!(
        !Path::new(&format!("/proc/{server}")).exists(),
        "the dead broker's tmux server outlived stop"
    );
    assert!(!dir.exists(), "the session's directory outlived stop");
}

#[test]
fn a_tmux_a_guest_plants_on_the_hosts_path_is_never_run() {
    let Some((w, guests)) = World::new("wspath", &[("pat", "spath", Some("pair"))]) else {
        return;
    };
    // The host's PATH starts in the workspace (an activated venv, direnv's
    // PATH_add), where a guest of an earlier share left a `tmux`.
    let bin = w.workspace().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = w.workspace().join("planted-tmux-ran");
    let planted = bin.join("tmux");
    std::fs::write(
        &planted,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec /usr/bin/tmux \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", &format!("{HOST}:{HOST}")])
        .arg(&bin)
        .output()
        .unwrap();
    assert!(chown.status.success());
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let out = w.try_start_session(
        "spath",
        "mirror,pair",
        HOST_PROGRAM,
        &[],
        &[("PATH", &path)],
    );
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    // The host attaches with that PATH; a guest joins (the broker's
    // client for it).
    host_terminal(
        &w,
        "host-spath",
        &format!("PATH={path}"),
        "attach --session spath",
        false,
    );
    w.wait_screen("drv:host-spath", "HOST-MARKER-4242", 30);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The broker keeps PATH's other directories (it looks up its tunnel's
    // ssh there).
    let broker = w.broker_pid("spath");
    let environ = std::fs::read(format!("/proc/{broker}/environ")).unwrap();
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = w.host_pairjail(&["stop", "--session", "spath"]);
    assert!(ran.is_empty(), "the planted tmux ran, for: {ran}");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"PATH=/usr/local/bin:/usr/bin:/bin"),
        "the broker's PATH: {:?}",
        String::from_utf8_lossy(&environ)
    );
}

#[test]
fn a_pair_guest_cannot_have_the_host_told_the_share_is_over() {
    let Some((w, guests)) = World::new("wsover", &[("otto", "sover", Some("pair"))]) else {
        return;
    };
    // The host shares from its own terminal, attached.
    host_terminal(
        &w,
        "hostover",
        "TERM=xterm",
        &format!(
            "start --session sover --allow mirror,pair --default-mode pair --guest-user {} -- sh -c '{HOST_PROGRAM}'",
            common::sshd::GUEST_USER
        ),
        false,
    );
    w.wait_screen("drv:hostover", "HOST-MARKER-4242", 30);
    let guest = w.join_in_window(&guests[0], 120, 40);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    // The guest makes has-session fail, as for a session that is gone.
    type_line(
        &w,
        &guest,
        "tmux set -s 'command-alias[97]' 'has-session=run-shell false'; echo OVER-$((40+2))",
    );
    wait_pane(&w, "sover", "OVER-42");
    // The host detaches (C-b d).
    w.drv(&["send-keys", "-t", "drv:hostover", "C-b", "d"]);
    let said = w.wait_screen("drv:hostover", "EXIT=", 20);
    assert!(
        said.contains("is still shared") && !said.contains("ended"),
        "the host was told something else than that the share goes on:\n{said}"
    );
    // And the host gets back in.
    let back = w.attach_host("sover");
    let screen = w.wait_screen(&back, "HOST-MARKER-4242", 20);
    assert!(!screen.contains("ATTACH-EXIT"), "{screen}");
    // The guest has tmux drop every client's keys (the host's too), which
    // leaves the host no tmux key to get out with: Enter ~ . still does.
    type_line(
        &w,
        &guest,
        "tmux list-clients -F '#{client_name} #{client_control_mode}' | while read c m; do [ $m = 0 ] && tmux suspend-client -t $c; done",
    );
    common::eventually(20, || {
        let flags = w.host_tmux("sover", &["list-clients", "-F", "#{client_flags}"]);
        if flags.lines().filter(|f| f.contains("suspended")).count() >= 2 {
            Ok(())
        } else {
            Err(format!("not every client is suspended yet: {flags}"))
        }
    });
    w.drv(&["send-keys", "-t", &back, "Enter", "~", "."]);
    let left = w.wait_screen(&back, "ATTACH-EXIT=", 20);
    assert!(left.contains("ATTACH-EXIT=0"), "{left}");
    // Leaving is not stopping: the share goes on.
    let status = w.host_pairjail(&["status", "--json"]);
    assert!(
        text(&status.stdout).contains("\"sover\""),
        "the share ended when the host left: {}",
        text(&status.stdout)
    );
    let _ = w.host_pairjail(&["stop", "--session", "sover"]);
}

/// A runtime directory of the host's under its home (which the workspace
/// profile shows read-only in the jail).
/// `pairjail ARGS` as the host, from the world's workspace.
fn host_in_workspace(w: &World, args: &[&str]) -> std::process::Output {
    run_as(HOST, shared_binary())
        .args(args)
        .env("HOME", format!("/home/{HOST}"))
        .env("TERM", "xterm")
        .current_dir(w.workspace())
        .output()
        .unwrap()
}

/// `line` typed into the jailed session's shell (what a pair guest
/// types), then its screen once `marker` shows.
fn typed_in(w: &World, session: &str, line: &str, marker: &str) -> String {
    let target = format!("={session}:");
    w.host_tmux(session, &["send-keys", "-t", &target, "-l", line]);
    w.host_tmux(session, &["send-keys", "-t", &target, "Enter"]);
    wait_pane(w, session, marker)
}

fn runtime_dir_in_home(name: &str) -> PathBuf {
    runtime_dir_at(PathBuf::from(format!(
        "/home/{HOST}/{name}-{}",
        std::process::id()
    )))
}

/// A runtime directory of the host's at `rt` (0700).
fn runtime_dir_at(rt: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&rt).unwrap();
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let owned = std::process::Command::new("chown")
        .arg(format!("{HOST}:{HOST}"))
        .arg(&rt)
        .status()
        .unwrap();
    assert!(owned.success());
    rt
}

/// The share's control socket obeys any process of the host's uid, and
/// everything in a jailed session runs as the host's uid: a runtime
/// directory the jail shows (under the home, which the workspace profile
/// shows read-only; a read-only mount does not stop a connect) would hand
/// a pair guest the host's orders. `start` refuses one. Were it accepted,
/// this test makes the attack (a `stop` order from inside the jail) and
/// says whether it worked.
#[test]
fn a_runtime_directory_the_jail_shows_is_refused() {
    let Some((w, _guests)) = World::new("wsrt", &[]) else {
        return;
    };
    let rt = runtime_dir_in_home("pj-rt");
    let start = |session: &str| {
        run_as(HOST, shared_binary())
            .args(["start", "--detach", "--session", session])
            .args(["--allow", "mirror,pair", "--default-mode", "pair"])
            .args(["--guest-user", common::sshd::GUEST_USER, "--runtime-dir"])
            .arg(&rt)
            .args(["--", "sh", "-c", HOST_PROGRAM])
            .env("HOME", format!("/home/{HOST}"))
            .env("TERM", "xterm")
            .current_dir(w.workspace())
            .output()
            .unwrap()
    };
    let out = start("swsrt");
    if out.status.success() {
        let listed = || {
            let status = run_as(HOST, shared_binary())
                .args(["status", "--json", "--runtime-dir"])
                .arg(&rt)
                .env("HOME", format!("/home/{HOST}"))
                .output()
                .unwrap();
            assert!(status.status.success(), "{}", text(&status.stderr));
            text(&status.stdout).contains("\"swsrt\"")
        };
        assert!(listed(), "the share is not listed before the attack");
        // The attack, from the jailed session's own shell (what a pair
        // guest types in): a `stop` order on the control socket.
        let sock = rt.join(HOST).join("swsrt").join("control.sock");
        let tmux_sock = rt
            .join(HOST)
            .join("swsrt")
            .join("tmux")
            .join("server")
            .join("tmux.sock");
        let script = format!(
            "python3 -c 'import socket,struct;s=socket.socket(socket.AF_UNIX);s.connect(\"{}\");j=b\"{{\\\"type\\\":\\\"stop\\\"}}\";s.sendall(b\"\\0\"+struct.pack(\">I\",len(j))+j);print(\"SENT\",s.recv(99))'",
            sock.display()
        );
        let sent = run_as(HOST, "tmux")
            .arg("-S")
            .arg(&tmux_sock)
            .args(["send-keys", "-t", "=swsrt:", "-l", &script])
            .output()
            .unwrap();
        let _ = run_as(HOST, "tmux")
            .arg("-S")
            .arg(&tmux_sock)
            .args(["send-keys", "-t", "=swsrt:", "Enter"])
            .output();
        // Up to 10 s for the order to land (a wait on the share's state).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut running = listed();
        while running && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            running = listed();
        }
        let _ = run_as(HOST, shared_binary())
            .args(["stop", "--session", "swsrt", "--runtime-dir"])
            .arg(&rt)
            .env("HOME", format!("/home/{HOST}"))
            .output();
        let _ = std::fs::remove_dir_all(&rt);
        panic!(
            "start accepted a runtime directory the jail shows; a stop order sent from inside the jail ({}) left the share {}",
            text(&sent.stderr),
            if running {
                "running"
            } else {
                "STOPPED: a pair guest gave the host's order"
            }
        );
    }
    let _ = std::fs::remove_dir_all(&rt);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("the runtime directory") && said.contains("give the host's orders"),
        "{said}"
    );
}

/// The same order from a jailed session to another share of the host's:
/// an unconfined one whose control socket the jailed session reaches
/// (a link to it made in the workspace after both started; a runtime
/// directory under the home, or inside the workspace as either starts,
/// is refused, see
/// `a_pair_guest_in_one_share_cannot_drive_another_through_its_tmux`).
/// The control socket takes orders only from the host's own user
/// namespace, never from a jail's.
#[test]
fn a_pair_guest_in_one_share_cannot_order_another() {
    let Some((w, _guests)) = World::new("wsother", &[]) else {
        return;
    };
    let rt = runtime_dir_at(w.dir.join("rt-other"));
    let rt_arg = rt.display().to_string();
    let as_host = |args: &[&str]| {
        // Before the arguments: after start's `--` it would be the
        // program's.
        let mut all = vec![args[0], "--runtime-dir", &rt_arg];
        all.extend_from_slice(&args[1..]);
        host_in_workspace(&w, &all)
    };
    let listed = || {
        let st = as_host(&["status", "--json"]);
        assert!(st.status.success(), "{}", text(&st.stderr));
        text(&st.stdout).contains("\"sother\"")
    };
    let out = as_host(&[
        "start",
        "--detach",
        "--session",
        "sother",
        "--unconfined-session",
        "--allow",
        "mirror",
        "--guest-user",
        common::sshd::GUEST_USER,
        "--",
        "sh",
        "-c",
        HOST_PROGRAM,
    ]);
    // Stopped, and its directory gone, however the test ends.
    let _gone = common::OnDrop(|| {
        let _ = as_host(&["stop", "--session", "sother"]);
        let _ = std::fs::remove_dir_all(&rt);
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(listed());
    // A jailed share (in the tests' runtime directory, which the jail does
    // not show), and from its shell, the order.
    w.start_session("sjail", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "sjail", "HOST-MARKER-4242");
    // A socket reached by another name is the same socket.
    let sock = w.workspace().join("other-control.sock");
    std::fs::hard_link(rt.join(HOST).join("sother").join("control.sock"), &sock).unwrap();
    // In the workspace, which the jailed session sees.
    std::fs::write(
        w.workspace().join("order.py"),
        format!(
            "import socket, struct\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.connect({:?})\n\
             j = b'{{\"type\":\"stop\"}}'\n\
             try:\n    s.sendall(b'\\0' + struct.pack('>I', len(j)) + j)\n    n = len(s.recv(99))\n\
             except OSError as e:\n    n = 0\n\
             print('ORDER' + '-SENT', n)\n",
            sock.display().to_string()
        ),
    )
    .unwrap();
    let script = "python3 order.py";
    let shown = typed_in(&w, "sjail", script, "ORDER-SENT");
    let still = listed();
    let _ = w.host_pairjail(&["stop", "--session", "sjail"]);
    assert!(
        still,
        "a stop order from the jailed session stopped another share:\n{shown}"
    );
    assert!(
        shown.contains("ORDER-SENT 0"),
        "the jail got an answer:\n{shown}"
    );
}

/// In no-root mode a guest's `join` runs as the host, so the broker's
/// guest socket takes a hello from any process of the host's uid, and
/// everything in a jailed session runs as the host's uid. A pair guest who
/// reaches another share's guest socket (here a link to it made in the
/// jailed share's workspace after both started) could join that share as
/// one of its invitees, with no jail, typing into the host's unconfined
/// session. The attack, from the jailed shell.
#[test]
fn a_pair_guest_in_one_share_cannot_join_another_as_its_invitee() {
    let Some((w, _guests)) = World::new("wsjoin", &[]) else {
        return;
    };
    let rt = runtime_dir_at(w.dir.join("rt-join"));
    let rt_arg = rt.display().to_string();
    let as_host = |args: &[&str]| host_in_workspace(&w, args);
    let out = as_host(&[
        "start",
        "--runtime-dir",
        &rt_arg,
        "--detach",
        "--session",
        "sother",
        "--unconfined-session",
        "--allow",
        "mirror,pair",
        "--",
        "sh",
        "-c",
        HOST_PROGRAM,
    ]);
    let _gone = common::OnDrop(|| {
        let _ = as_host(&["stop", "--runtime-dir", &rt_arg, "--session", "sother"]);
        let _ = std::fs::remove_dir_all(&rt);
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bob = w.keygen("bob").with_extension("pub").display().to_string();
    let invited = as_host(&[
        "invite",
        "add",
        "bob",
        "--runtime-dir",
        &rt_arg,
        "--key-file",
        &bob,
        "--session",
        "sother",
        "--mode",
        "pair",
        "--via",
        "authorized-keys",
    ]);
    assert!(invited.status.success(), "{}", text(&invited.stderr));
    w.start_session("sjail", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "sjail", "HOST-MARKER-4242");
    let sock = w.workspace().join("other-broker.sock");
    std::fs::hard_link(rt.join(HOST).join("sother").join("broker.sock"), &sock).unwrap();
    // A hello as `join` would send it, naming the other share's invitee;
    // then whatever the broker answers (a refusal may come before the
    // hello is taken).
    std::fs::write(
        w.workspace().join("hello.py"),
        format!(
            "import json, socket, struct\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.connect({sock:?})\n\
             j = json.dumps(dict(type='hello', version=1, guest='bob', mode=None, term='xterm', cols=80, rows=24, source=None)).encode()\n\
             said = 'closed'\n\
             try:\n    s.sendall(b'\\0' + struct.pack('>I', len(j)) + j)\n\
             except OSError:\n    pass\n\
             try:\n    f = s.makefile('rb')\n    while True:\n        h = f.read(5)\n        if len(h) < 5: break\n        p = f.read(struct.unpack('>I', h[1:])[0])\n        if h[0] == 0:\n            said = json.loads(p)['type']\n            if said != 'waiting': break\n\
             except OSError as e:\n    said = 'error'\n\
             print('JOIN' + '-ANSWER', said)\n",
            sock = sock.display().to_string()
        ),
    )
    .unwrap();
    let shown = typed_in(&w, "sjail", "python3 hello.py", "JOIN-ANSWER");
    let _ = w.host_pairjail(&["stop", "--session", "sjail"]);
    assert!(
        !shown.contains("JOIN-ANSWER welcome"),
        "the jail was welcomed into the other share:\n{shown}"
    );
    assert!(
        shown.contains("JOIN-ANSWER refused") || shown.contains("JOIN-ANSWER closed"),
        "the hello got no refusal:\n{shown}"
    );
}

/// What `accepted` let through, attacked and shown: from the jailed
/// `session`'s shell, tmux on the share `sother` (in runtime directory
/// `rt`) types a command into it. Ends the test.
fn drive_the_other_share(w: &World, session: &str, rt: &Path, accepted: &str) -> ! {
    wait_pane(w, session, "HOST-MARKER-4242");
    let sock = rt.join(HOST).join("sother/tmux/server/tmux.sock");
    let attack = format!(
        "tmux -S {} send-keys -t =sother: 'echo DROVE-$((40+2))' Enter; echo TMUX-$((1+1))-TRIED",
        sock.display()
    );
    let shown = typed_in(w, session, &attack, "TMUX-2-TRIED");
    let _ = w.host_pairjail(&["stop", "--session", session]);
    let theirs = run_as(HOST, "tmux")
        .arg("-S")
        .arg(&sock)
        .args(["capture-pane", "-p", "-t", "=sother:"])
        .output()
        .unwrap();
    panic!(
        "{accepted} was accepted; from the jail:\n{shown}\nthe other share's screen:\n{}",
        text(&theirs.stdout)
    );
}

/// Every share's tmux server obeys any process of the host's uid (tmux
/// checks nothing else), and everything in a jailed session runs as the
/// host's uid. Another share's runtime directory under the home, which
/// the workspace profile shows read-only (a read-only mount does not stop
/// a connect), would hand a pair guest that share's session, unconfined.
/// `start` refuses such a runtime directory for every share, jailed or
/// not. Were it accepted, this test makes the attack: tmux, from the
/// jailed shell, typing into the other share.
#[test]
fn a_pair_guest_in_one_share_cannot_drive_another_through_its_tmux() {
    let Some((w, _guests)) = World::new("wstmux", &[]) else {
        return;
    };
    let rt = runtime_dir_in_home("pj-rt-tmux");
    let rt_arg = rt.display().to_string();
    let as_host = |args: &[&str]| host_in_workspace(&w, args);
    // An unconfined share `sother` in runtime directory `rt`.
    let start_other = |rt: &str| {
        as_host(&[
            "start",
            "--runtime-dir",
            rt,
            "--detach",
            "--session",
            "sother",
            "--unconfined-session",
            "--",
            "sh",
            "-c",
            HOST_PROGRAM,
        ])
    };
    let out = start_other(&rt_arg);
    let _gone = common::OnDrop(|| {
        let _ = as_host(&["stop", "--runtime-dir", &rt_arg, "--session", "sother"]);
        let _ = std::fs::remove_dir_all(&rt);
    });
    if out.status.success() {
        w.start_session("sjail", "mirror,pair", HOST_PROGRAM);
        drive_the_other_share(&w, "sjail", &rt, "a runtime directory under the home");
    }
    let said = text(&out.stderr);
    assert!(
        said.contains("runtime directory") && said.contains("--runtime-dir"),
        "{said}"
    );
    // Nor inside the workspace of a jailed share that ran before (its jail
    // shows it writable).
    w.start_session("sjail", "mirror,pair", HOST_PROGRAM);
    let _ = w.host_pairjail(&["stop", "--session", "sjail"]);
    let inside = runtime_dir_at(w.workspace().join("rt-tmux"));
    let inside_arg = inside.display().to_string();
    let out = start_other(&inside_arg);
    let _ = as_host(&["stop", "--runtime-dir", &inside_arg, "--session", "sother"]);
    let said = text(&out.stderr);
    assert!(
        !out.status.success() && said.contains("the workspace of a jailed share"),
        "a runtime directory inside a shared workspace was accepted: {said}"
    );
    // Nor a jailed share whose workspace holds the runtime directory of a
    // share already running there (a directory never shared jailed before).
    let later = runtime_dir_at(w.dir.join("ws-later"));
    let later_rt = runtime_dir_at(later.join("rt"));
    let later_rt_arg = later_rt.display().to_string();
    let out = start_other(&later_rt_arg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _gone_later = common::OnDrop(|| {
        let _ = as_host(&[
            "stop",
            "--runtime-dir",
            &later_rt_arg,
            "--session",
            "sother",
        ]);
    });
    let later_arg = later.display().to_string();
    let out = w.try_start_session(
        "sjail2",
        "mirror,pair",
        HOST_PROGRAM,
        &["--workspace", &later_arg],
        &[],
    );
    if out.status.success() {
        drive_the_other_share(
            &w,
            "sjail2",
            &later_rt,
            "a workspace holding a running share's runtime directory",
        );
    }
    let said = text(&out.stderr);
    assert!(
        said.contains("Unix socket") && said.contains(&format!("{later_rt_arg}/{HOST}/sother/")),
        "{said}"
    );
}

/// A pair guest writes the workspace as the host. A program left there
/// setuid (or setgid) would run as the host for any local user who can
/// reach it, outside every jail, long after the share: nosuid and
/// no_new_privs hold only inside the jail, the mode bit stays on the
/// host's file. The attack: `chmod u+s`, `chmod g+s`, and a file created
/// with the bits in its mode.
#[test]
fn a_pair_guest_cannot_leave_a_setuid_program_in_the_workspace() {
    let Some((w, _guests)) = World::new("wssuid", &[]) else {
        return;
    };
    w.start_session("ssuid", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "ssuid", "HOST-MARKER-4242");
    let attack =
        "cp /bin/true pj-suid; chmod u+s pj-suid; echo U=$?; chmod g+s pj-suid; echo G=$?; \
        python3 -c \"import os
try: os.open('pj-made', os.O_CREAT | os.O_WRONLY, 0o6755)
except OSError as e: print('MADE-REFUSED', e.errno)\"; \
        echo SUID-$((40+2))-TRIED";
    let shown = typed_in(&w, "ssuid", attack, "SUID-42-TRIED");
    let _ = w.host_pairjail(&["stop", "--session", "ssuid"]);
    let mode = |name: &str| {
        std::fs::metadata(w.workspace().join(name))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
    };
    // The copy is made; only its mode stays as it was.
    let copied = mode("pj-suid").unwrap_or_else(|e| panic!("pj-suid: {e}\n{shown}"));
    assert_eq!(copied & 0o6000, 0, "pj-suid is {copied:o}:\n{shown}");
    // A file created with the bits is not made at all.
    if let Ok(made) = mode("pj-made") {
        panic!("pj-made is {made:o} on the host's disk:\n{shown}");
    }
    // Each refused as the kernel refuses what a user may not do.
    for said in ["U=1", "G=1", "MADE-REFUSED 1"] {
        assert!(shown.contains(said), "no {said}:\n{shown}");
    }
}

/// The jailed session's tmux server obeys whom its access list names, and
/// its socket's directory is bound into the jail, writable: a pair guest
/// could open both (`chmod`, `server-access -a`) to another local user,
/// who would then type in the session uninvited, unlisted and unrecorded.
/// The attack: from the jailed shell, then as the pair user (a local user
/// here).
#[test]
fn a_pair_guest_cannot_open_the_sessions_tmux_to_another_local_user() {
    let Some((w, _guests)) = World::new("wsopen", &[]) else {
        return;
    };
    w.start_session("sopen", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "sopen", "HOST-MARKER-4242");
    let attack = "S=${TMUX%%,*}; chmod 711 \"$(dirname \"$S\")\" && chmod 666 \"$S\" \
        && tmux server-access -a nobody && echo OPEN-$((40+2))-DONE; echo OPEN-$((40+2))-TRIED";
    let shown = typed_in(&w, "sopen", attack, "OPEN-42-TRIED");
    let sock = w.session_paths("sopen").join("tmux/server/tmux.sock");
    // The attack landed: the socket and its directory are open.
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert!(shown.contains("OPEN-42-DONE"), "{shown}");
    // (tmux itself sets the socket's execute bits as clients come and go:
    // only what the attack opened is compared.)
    let (dir_mode, sock_mode) = (mode(sock.parent().unwrap()), mode(&sock));
    assert!(
        dir_mode & 0o011 == 0o011 && sock_mode & 0o066 == 0o066,
        "directory {dir_mode:o}, socket {sock_mode:o}: {shown}"
    );
    let theirs = run_as(common::sshd::GUEST_USER, "tmux")
        .arg("-S")
        .arg(&sock)
        .args([
            "send-keys",
            "-t",
            "=sopen:",
            "echo OUTSIDER-$((40+2))",
            "Enter",
        ])
        .output()
        .unwrap();
    if theirs.status.success() {
        let screen = wait_pane(&w, "sopen", "OUTSIDER-42");
        let _ = w.host_pairjail(&["stop", "--session", "sopen"]);
        panic!("another local user typed in the jailed session:\n{screen}");
    }
    let _ = w.host_pairjail(&["stop", "--session", "sopen"]);
    // Kept out by the directory above, which no jail sees.
    assert!(
        text(&theirs.stderr).contains("Permission denied"),
        "{}",
        text(&theirs.stderr)
    );
}

/// Landlock cannot stop a `connect`, and a read-only bind does not: every
/// Unix socket under the home (an ssh-agent such as 1Password's, an ssh
/// master connection, Docker Desktop's, the host's own tmux with
/// TMUX_TMPDIR in the home) would answer the jailed session, which runs as
/// the host's uid. The workspace profile shows the home through a
/// read-only overlay, through which no socket takes a connection. The
/// attack, from the jailed shell: the host's tmux (run a command outside)
/// and an ssh-agent.
#[test]
fn sockets_under_the_home_refuse_the_jailed_session() {
    let Some((w, _guests)) = World::new("wssock", &[]) else {
        return;
    };
    let dir = runtime_dir_in_home("pj-sock");
    let tmux_sock = dir.join("tmux.sock");
    let agent_sock = dir.join("agent.sock");
    let pwned = dir.join("PWNED");
    let started = run_as(HOST, "tmux")
        .arg("-S")
        .arg(&tmux_sock)
        .args(["new-session", "-d", "sleep 600"])
        .env("HOME", format!("/home/{HOST}"))
        .status()
        .unwrap();
    assert!(started.success());
    let mut agent = run_as(HOST, "ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _gone = common::OnDrop(|| {
        let _ = run_as(HOST, "tmux")
            .arg("-S")
            .arg(&tmux_sock)
            .arg("kill-server")
            .status();
        let _ = agent.kill();
        let _ = agent.wait();
        let _ = std::fs::remove_dir_all(&dir);
    });
    common::eventually(10, || {
        agent_sock
            .exists()
            .then_some(())
            .ok_or("no agent socket yet".to_string())
    });
    w.start_session("ssock", "mirror,pair", HOST_PROGRAM);
    wait_pane(&w, "ssock", "HOST-MARKER-4242");
    let attack = format!(
        "tmux -S {} run-shell 'touch {}'; SSH_AUTH_SOCK={} ssh-add -l; echo SOCK-$((1+1))-TRIED",
        tmux_sock.display(),
        pwned.display(),
        agent_sock.display()
    );
    let shown = typed_in(&w, "ssock", &attack, "SOCK-2-TRIED");
    let _ = w.host_pairjail(&["stop", "--session", "ssock"]);
    assert!(
        !pwned.exists(),
        "the jailed session ran a command through the host's tmux under the home:\n{shown}"
    );
    assert!(
        !shown.contains("no identities"),
        "the jailed session reached the host's ssh-agent under the home:\n{shown}"
    );
    assert!(
        shown.contains("refused") || shown.contains("Could not open"),
        "neither socket said why:\n{shown}"
    );
}

/// A pair guest writes, as the host's uid, anywhere in a jailed share's
/// workspace. Linked from the host's configuration (a dotfiles repository
/// shared once, stowed later), a profile or a guest book written there
/// would decide a later share's jail, or invite the guest's own key as a
/// partner. `start` remembers every jailed share's workspace and reads
/// neither from one. The attack: a guest of the first share plants both;
/// the host's next share, of another directory, would read them.
#[test]
fn what_a_pair_guest_wrote_in_a_shared_workspace_is_never_trusted_later() {
    let Some((w, _guests)) = World::new("wstaint", &[]) else {
        return;
    };
    let home = runtime_dir_at(w.dir.join("home"));
    let dotfiles = runtime_dir_at(w.dir.join("dotfiles"));
    let project = runtime_dir_at(w.dir.join("project"));
    let config = home.join(".config/pairjail");
    std::fs::create_dir_all(&config).unwrap();
    let owned = Command::new("chown")
        .args(["-R", "-h", &format!("{HOST}:{HOST}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(owned.success());
    let home_env = home.display().to_string();
    let start = |session: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["--workspace", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut all = vec![("HOME", home_env.as_str())];
        all.extend_from_slice(env);
        w.try_start_session(session, "mirror,pair", HOST_PROGRAM, &args, &all)
    };
    let _stop = common::OnDrop(|| {
        for s in ["staint1", "staint2"] {
            let _ = w.host_pairjail(&["stop", "--session", s]);
        }
    });
    let first = start("staint1", &dotfiles, &[], &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    wait_pane(&w, "staint1", "HOST-MARKER-4242");
    // What a pair guest types: its own key as alice's, a profile of its own.
    let key = std::fs::read_to_string(w.keygen("mallory").with_extension("pub")).unwrap();
    let plant = format!(
        "printf 'alice = {{ key = \"{}\", mode = \"pair\" }}\\n' > {}/guests.toml; mkdir -p {d}/profiles; printf 'extends = [\"workspace-strict\"]\\n' > {d}/profiles/workspace.toml; echo PLANTED-$((1+1))",
        key.trim(),
        dotfiles.display(),
        d = dotfiles.display()
    );
    typed_in(&w, "staint1", &plant, "PLANTED-2");
    let out = w.host_pairjail(&["stop", "--session", "staint1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The host's guest book, a link into the dotfiles shared before (made
    // now: with it in place that share is refused, see
    // a_workspace_that_dotfiles_link_into_is_refused).
    let book = config.join("guests.toml");
    std::os::unix::fs::symlink(dotfiles.join("guests.toml"), &book).unwrap();
    let owned = Command::new("chown")
        .args(["-h", &format!("{HOST}:{HOST}")])
        .arg(&book)
        .status()
        .unwrap();
    assert!(owned.success());

    // The profile, on the search path of a later share.
    let profiles = dotfiles.join("profiles").display().to_string();
    let second = start(
        "staint2",
        &project,
        &[],
        &[("PAIRJAIL_PROFILE_PATH", &profiles)],
    );
    let said = text(&second.stderr);
    assert!(
        !second.status.success(),
        "a later share's jail was built from the profile a guest planted"
    );
    assert!(
        said.contains("the workspace of an earlier jailed share"),
        "{said}"
    );
    // The same profile, named by its path.
    let named = dotfiles
        .join("profiles/workspace.toml")
        .display()
        .to_string();
    let second = start("staint2", &project, &["--session-profile", &named], &[]);
    let said = text(&second.stderr);
    assert!(
        !second.status.success(),
        "a later share's jail was built from the profile file a guest planted"
    );
    assert!(said.contains("inside the workspace"), "{said}");
    // A key file there, named from inside it as the host would.
    std::fs::write(dotfiles.join("alice.pub"), &key).unwrap();
    let added = run_as(HOST, shared_binary())
        .args([
            "invite",
            "add",
            "alice",
            "--key-file",
            "alice.pub",
            "--runtime-dir",
        ])
        .arg(&w.runtime)
        .env("HOME", &home)
        .current_dir(&dotfiles)
        .output()
        .unwrap();
    let said = text(&added.stderr);
    assert!(
        !added.status.success() && said.contains("the workspace of a jailed share"),
        "a key file a guest could have written was read: {said}"
    );
    // The guest book, for a later share's --invite.
    let second = start("staint2", &project, &["--invite", "alice"], &[]);
    let said = text(&second.stderr);
    assert!(
        !second.status.success(),
        "a later share invited the key a guest planted in the guest book"
    );
    assert!(
        said.contains("the guest book") && said.contains("earlier jailed share"),
        "{said}"
    );
}

/// The home is shown through an overlay, which the kernel refuses over a
/// directory with filesystems mounted below it (a disk, an sshfs under
/// the home) that a user namespace cannot take apart. `start` says so,
/// naming the mounts and the way out, instead of failing with EINVAL.
#[test]
fn a_home_with_mounts_below_it_is_refused_with_the_mounts_named() {
    let Some((w, _guests)) = World::new("wsmnt", &[]) else {
        return;
    };
    let home = runtime_dir_at(w.dir.join("home"));
    let disk = home.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "pjdisk"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmounted = common::OnDrop(|| {
        let _ = Command::new("umount").arg("-l").arg(&disk).status();
    });
    let home_env = home.display().to_string();
    let out = w.try_start_session(
        "smnt",
        "mirror,pair",
        HOST_PROGRAM,
        &[],
        &[("HOME", home_env.as_str())],
    );
    let _ = w.host_pairjail(&["stop", "--session", "smnt"]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "a jail was built over the mount");
    assert!(
        said.contains("filesystems mounted below it")
            && said.contains(&disk.display().to_string())
            && said.contains("overlay = true"),
        "{said}"
    );
}

/// A dotfiles repository as the workspace: the home is read-only in the
/// jail, but a dotfile that links into the workspace is written through
/// it, and the host's next shell, outside every jail, runs what a pair
/// guest appended.
#[test]
fn a_workspace_that_dotfiles_link_into_is_refused() {
    let Some((w, _)) = World::new("wsdots", &[]) else {
        return;
    };
    let home = PathBuf::from(format!("/home/{HOST}"));
    let tag = format!("pj-dots-{}", std::process::id());
    let dots = home.join(&tag);
    let rc = home.join(format!(".{tag}-rc"));
    let _gone = common::OnDrop(|| {
        let _ = std::fs::remove_file(home.join(format!(".{tag}-rc")));
        let _ = std::fs::remove_dir_all(home.join(format!("pj-dots-{}", std::process::id())));
    });
    let made = run_as(HOST, "sh")
        .arg("-c")
        .arg(format!(
            "mkdir -p {d} && echo '# mine' > {d}/rc && ln -sfn {tag}/rc {rc}",
            d = dots.display(),
            rc = rc.display()
        ))
        .status()
        .unwrap();
    assert!(made.success());
    let out = w.try_start_session(
        "sdots",
        "mirror,pair",
        HOST_PROGRAM,
        &["--workspace", &dots.display().to_string()],
        &[],
    );
    if out.status.success() {
        // The hole: what a pair guest types in the jailed shell.
        wait_pane(&w, "sdots", "HOST-MARKER-4242");
        w.host_tmux(
            "sdots",
            &[
                "send-keys",
                "-t",
                "=sdots:0",
                "-l",
                &format!("echo GUEST-WAS-HERE >> ~/.{tag}-rc"),
            ],
        );
        w.host_tmux("sdots", &["send-keys", "-t", "=sdots:0", "Enter"]);
        let wrote = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::fs::read_to_string(&rc).is_ok_and(|s| s.contains("GUEST-WAS-HERE"))
        });
        let _ = w.host_pairjail(&["stop", "--session", "sdots"]);
        panic!(
            "a jailed share of {} started; its pair guest {} the host's {}",
            dots.display(),
            if wrote { "appended to" } else { "could reach" },
            rc.display()
        );
    }
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("~/.{tag}-rc")) && err.contains("replace those links with copies"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dots.join("rc")).unwrap(),
        "# mine\n"
    );
}

/// A PATH directory in the workspace, or one that leads there (`~/bin ->
/// dotfiles/bin`): the host's own shells, outside the jail, run what pair
/// guests put there. pairjail never does (see above), and `start` says so.
#[test]
fn start_warns_of_a_path_directory_that_lies_in_the_workspace() {
    let Some((w, _)) = World::new("wspath", &[]) else {
        return;
    };
    let ws = w.workspace();
    let linked = w.dir.join("linkbin");
    std::os::unix::fs::symlink(ws.join("bin"), &linked).unwrap();
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        ws.join(".venv/bin").display(),
        linked.display()
    );
    let out = w.try_start_session(
        "spath",
        "mirror,pair",
        HOST_PROGRAM,
        &[],
        &[("PATH", &path)],
    );
    let _ = w.host_pairjail(&["stop", "--session", "spath"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    for dir in [ws.join(".venv/bin"), linked] {
        assert!(
            said.contains(&format!("warning: {} is on your PATH", dir.display())),
            "{said}"
        );
    }
    assert!(!said.contains("/usr/bin is on your PATH"), "{said}");
}
