//! Session benchmarks (run by `just bench`, never as tests): join latency
//! against the blog-post recipe `command="tmux -S sock attach -r"`, host
//! keystroke → guest screen latency with 1, 10 and 50 mirror guests, and
//! memory per guest. Needs root (users, sshd). Writes README's table.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::sshd::{GUEST_USER, Guest, HOST, World};

const MARKER: &str = "HOST-MARKER-4242";

fn as_host(args: &[&str]) {
    let out = common::run_as(HOST, args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Time from opening an ssh client to the marker on its screen.
fn join_ms(w: &World, g: &Guest) -> f64 {
    let start = Instant::now();
    let target = w.join_in_window(g, 80, 24);
    w.wait_screen(&target, MARKER, 30);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    w.drv(&["kill-window", "-t", &target]);
    std::thread::sleep(Duration::from_millis(200));
    ms
}

/// Proportional set size: shared pages (the binary, libc) are split among
/// the processes that share them instead of counted once per process.
fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        out.push((pid, ppid, cmd));
    }
    out
}

/// RSS of the broker and its tmux clients, and of every `pairjail join`
/// with its jail (pid 1 and the relay).
fn pairjail_rss() -> u64 {
    let procs = processes();
    let mut roots: Vec<u32> = procs
        .iter()
        .filter(|(_, _, c)| {
            (c.contains(" __broker ") || c.ends_with(" __broker")) || c.contains(" join --host ")
        })
        .map(|(p, _, _)| *p)
        .collect();
    let mut i = 0;
    while i < roots.len() {
        let parent = roots[i];
        for (p, pp, _) in &procs {
            if *pp == parent && !roots.contains(p) {
                roots.push(*p);
            }
        }
        i += 1;
    }
    roots.iter().map(|p| rss_kib(*p)).sum()
}

/// Runs the guest's ssh on a pty and reports every chunk it prints with the
/// time it arrived (the text accumulated since the last report, so a token
/// split across reads is still found).
fn watched_guest(
    w: &World,
    g: &Guest,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<(String, Instant)>,
) {
    let mut cmd = w.ssh_command(&g.key);
    cmd.args(["-tt", &format!("{GUEST_USER}@127.0.0.1")]);
    let (child, master) = pairjail::terminal::spawn_on_pty_blocking(cmd, 80, 24).expect("pty");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 65536];
        let mut tail: Vec<u8> = Vec::new();
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            let at = Instant::now();
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 4096 {
                tail.drain(..tail.len() - 256);
            }
            if tx
                .send((String::from_utf8_lossy(&tail).into_owned(), at))
                .is_err()
            {
                break;
            }
        }
    });
    // Wait until the session is on its screen.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (t, _) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the watched guest saw nothing");
        if t.contains(MARKER) || Instant::now() > deadline {
            break;
        }
    }
    (child, rx)
}

fn main() {
    let mut spec: Vec<(String, &str, Option<&str>)> = (0..50)
        .map(|i| (format!("g{i}"), "sbench", Some("mirror")))
        .collect();
    spec.push(("recipe".into(), "unused", None));
    let spec_ref: Vec<(&str, &str, Option<&str>)> =
        spec.iter().map(|(n, s, m)| (n.as_str(), *s, *m)).collect();
    let Some((w, guests)) = World::new("bench", &spec_ref) else {
        eprintln!("session benchmarks need root");
        std::process::exit(1);
    };
    // The recipe: a plain tmux server the pair user may attach to read-only,
    // and a forced command with no jail.
    let rdir = w.dir.join("recipe");
    fs::create_dir_all(&rdir).unwrap();
    fs::set_permissions(&rdir, fs::Permissions::from_mode(0o777)).unwrap();
    let rsock = rdir.join("tmux.sock");
    let rs = rsock.to_str().unwrap();
    as_host(&[
        "tmux",
        "-S",
        rs,
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "recipe",
        "--",
        "sh",
        "-c",
        &format!("echo {MARKER}; exec sh"),
    ]);
    as_host(&["chmod", "0777", rs]);
    as_host(&["tmux", "-S", rs, "server-access", "-a", GUEST_USER]);
    let keys = w.dir.join("keys").join(GUEST_USER);
    let text = fs::read_to_string(&keys).unwrap();
    let recipe_pub = fs::read_to_string(guests[50].key.with_extension("pub")).unwrap();
    let text = text.replace(
        &text.lines().last().unwrap().to_string(),
        &format!(
            "restrict,pty,command=\"tmux -S {rs} attach -r -t =recipe\" {}",
            recipe_pub.trim()
        ),
    );
    fs::write(&keys, text).unwrap();

    w.start_session("sbench", "mirror", &format!("echo {MARKER}; exec sh"));
    let host = w.attach_host("sbench");
    w.wait_screen(&host, MARKER, 20);

    // Join latency, interleaved.
    let (mut pj, mut recipe) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        pj.push(join_ms(&w, &guests[0]));
        recipe.push(join_ms(&w, &guests[50]));
    }
    let (pj_med, recipe_med) = (percentile(&mut pj, 0.5), percentile(&mut recipe, 0.5));

    // Keystroke latency with 1, 10, 50 mirror guests. The watched guest's
    // ssh runs on a pty of its own that a thread reads directly, so the
    // measurement does not include screen polling; the others run in the
    // driver tmux.
    let broker_alone = pairjail_rss();
    let (watch, arrivals) = watched_guest(&w, &guests[0]);
    let mut joined: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut per_guest_kib = 0.0;
    for n in [1usize, 10, 50] {
        while joined.len() + 1 < n {
            let t = w.join_in_window(&guests[joined.len() + 1], 80, 24);
            w.wait_screen(&t, MARKER, 30);
            joined.push(t);
        }
        let mut lat = Vec::new();
        for i in 0..100 {
            let token = format!("K{n}X{i}Z");
            let start = Instant::now();
            w.host_tmux("sbench", &["send-keys", "-t", "=sbench:", "-l", &token]);
            loop {
                let seen = arrivals
                    .recv_timeout(Duration::from_secs(10))
                    .expect("keystroke never arrived");
                if seen.0.contains(&token) {
                    lat.push(seen.1.duration_since(start).as_secs_f64() * 1000.0);
                    break;
                }
            }
            w.host_tmux("sbench", &["send-keys", "-t", "=sbench:", "C-u"]);
            std::thread::sleep(Duration::from_millis(20));
        }
        let p50 = percentile(&mut lat, 0.5);
        let p99 = percentile(&mut lat, 0.99);
        rows.push((n, p50, p99));
        if n == 50 {
            per_guest_kib = (pairjail_rss().saturating_sub(broker_alone)) as f64 / 50.0;
        }
    }
    let mut watch = watch;
    let _ = watch.kill();
    let _ = watch.wait();
    // Ending the session: time until every one of the 50 guests has been
    // told and disconnected.
    let start = Instant::now();
    let _ = w.host_pairjail(&["stop", "--session", "sbench"]);
    for t in &joined {
        w.wait_screen(t, "SSH-EXIT=", 30);
    }
    let end_ms = start.elapsed().as_secs_f64() * 1000.0;

    let p99_1 = rows[0].2;
    let p99_50 = rows[2].2;
    let mut t = String::new();
    t.push_str("| measure | pairjail | peer | ratio | goal |\n|---|---|---|---|---|\n");
    t.push_str(&format!(
        "| join latency, ssh start → host content on screen (median of 10, interleaved) | {pj_med:.0} ms | {recipe_med:.0} ms (`command=\"tmux -S sock attach -r\"`, no jail) | {:.2}× | ≤ 1.10× |\n",
        pj_med / recipe_med
    ));
    for (n, p50, p99) in &rows {
        t.push_str(&format!("| host keystroke → guest screen, {n} mirror guest(s) | p50 {p50:.1} ms, p99 {p99:.1} ms | | | |\n"));
    }
    t.push_str(&format!(
        "| p99 with 50 guests ÷ p99 with 1 | | | {:.2}× | ≤ 2× |\n",
        p99_50 / p99_1
    ));
    t.push_str(&format!(
        "| memory per guest (PSS of broker share + tmux client + join + jail pid 1 + relay), 50 guests | {:.0} KiB ({:.2} MiB) | | | ≤ 4 MiB |\n",
        per_guest_kib,
        per_guest_kib / 1024.0
    ));
    t.push_str(&format!(
        "| session end → all {} guests in the driver disconnected (ssh exited) | {end_ms:.0} ms | | | ≤ 1 s |\n",
        joined.len()
    ));
    t.push_str("\nKeystroke latency: 100 keystrokes per row, from `tmux send-keys` on the host's server to the bytes arriving on the watched guest's own terminal (its `ssh -tt` on a pty the benchmark reads); join latency includes polling the guest's screen with `tmux capture-pane` (a few ms per poll), the same for both.\n");
    println!("{t}");
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let text = fs::read_to_string(readme).unwrap();
    let (start, end) = ("<!-- bench-session:start -->", "<!-- bench-session:end -->");
    if let (Some(a), Some(b)) = (text.find(start), text.find(end)) {
        let new = format!("{}{start}\n{t}{}", &text[..a], &text[b..]);
        fs::write(readme, new).unwrap();
        println!("README.md updated.");
    }
}
