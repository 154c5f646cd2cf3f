//! Session benchmarks (run by `just bench`, never as tests), side by side
//! with the blog-post recipe `command="tmux -S sock attach -r"`: join
//! latency; host keystroke → guest pty latency with 1, 10, 50, 100 and 200
//! mirror guests against as many recipe clients; output floods with 10
//! and 50; memory per guest at 100; 500 mirror guests connected at once;
//! the end of a session with 499 guests, and of the recipe with 499.
//! Needs root (users, sshd). Writes README's table. With
//! SESSION_BENCH_STOP_AT_100 set it stops after the memory figure and its
//! breakdown by process (on stderr), and writes nothing; with
//! SESSION_BENCH_END_ONLY set it measures only the session's end with 499
//! guests (on stderr), and writes nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::sshd::{GUEST_USER, Guest, HOST, World};

const MARKER: &str = "HOST-MARKER-4242";
/// The largest audience measured.
const AUDIENCE: usize = 500;

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

/// Ends the recipe's tmux server however the benchmark ends.
struct KillServer(std::path::PathBuf);

impl Drop for KillServer {
    fn drop(&mut self) {
        let _ = common::run_as(HOST, "tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("kill-server")
            .output();
    }
}

/// Where pairjail's PSS goes, by kind of process: the broker, its tmux
/// clients, each guest's `join` and its jail's relay. Printed at 100
/// guests, so a change can be aimed at the part that grew.
fn pairjail_breakdown() -> String {
    let procs = processes();
    let kind = |pid: u32, cmd: &str| -> Option<&'static str> {
        // The relay is join's clone, called in the jail: same command line.
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if cmd.contains(" __broker") {
            Some("broker")
        } else if comm.trim() == "pairjail-relay" {
            Some("relay (jail pid 1)")
        } else if cmd.contains(" join --host ") {
            Some("join")
        } else if cmd.starts_with("tmux") || cmd.contains("/tmux ") {
            let parent = procs
                .iter()
                .find(|(p, _, _)| *p == pid)
                .map(|(_, pp, _)| *pp)?;
            procs
                .iter()
                .any(|(p, _, c)| *p == parent && c.contains(" __broker"))
                .then_some("the broker's tmux clients")
        } else {
            None
        }
    };
    let mut sums: Vec<(&'static str, u64, usize)> = Vec::new();
    for (pid, _, cmd) in &procs {
        if let Some(k) = kind(*pid, cmd) {
            let pss = rss_kib(*pid);
            match sums.iter_mut().find(|(n, _, _)| *n == k) {
                Some(e) => {
                    e.1 += pss;
                    e.2 += 1;
                }
                None => sums.push((k, pss, 1)),
            }
        }
    }
    sums.iter()
        .map(|(k, kib, n)| {
            format!(
                "{k}: {n} processes, {kib} KiB PSS ({} KiB each)\n",
                kib / *n as u64
            )
        })
        .collect()
}

/// An ssh client on a pty of its own that a thread reads to the end. A
/// watched one reports every chunk with the time it arrived (the text
/// accumulated since the last report, so a token split across reads is
/// still found); the others are drained, so they never hold anyone up.
struct Viewer {
    child: std::process::Child,
    arrivals: Option<std::sync::mpsc::Receiver<(String, Instant)>>,
    on_screen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The end of what it printed, for a failure's message.
    last: std::sync::Arc<std::sync::Mutex<String>>,
}

fn viewer(w: &World, key: &std::path::Path, watched: bool) -> Viewer {
    use std::sync::atomic::Ordering;
    let mut cmd = w.ssh_command(key);
    cmd.args(["-tt", &format!("{GUEST_USER}@127.0.0.1")]);
    let (child, master) = pairjail::terminal::spawn_on_pty_blocking(cmd, 80, 24).expect("pty");
    let (tx, rx) = std::sync::mpsc::channel();
    let on_screen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = on_screen.clone();
    let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let shown = last.clone();
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
            let text = String::from_utf8_lossy(&tail).into_owned();
            if !seen.load(Ordering::Relaxed) {
                seen.store(text.contains(MARKER), Ordering::Relaxed);
                if let Ok(mut l) = shown.lock() {
                    l.clone_from(&text);
                }
            }
            if watched && tx.send((text, at)).is_err() {
                break;
            }
        }
    });
    Viewer {
        child,
        arrivals: watched.then_some(rx),
        on_screen,
        last,
    }
}

/// For work on the session's end: the audience joins, the session ends,
/// then the recipe's; the times go to stderr, nothing else is measured and
/// nothing is written.
fn end_only(w: &World, guests: &[Guest], recipe: &RecipeEnd) {
    let keys: Vec<std::path::PathBuf> = guests[..AUDIENCE - 1]
        .iter()
        .map(|g| g.key.clone())
        .collect();
    let mut audience = viewers(w, &keys);
    let (end, stopped) = ending(&mut audience, stop_command(w));
    eprintln!(
        "session end → all {} guests disconnected: {end:.0} ms (`stop` returned after {stopped:.0} ms)",
        audience.len()
    );
    drop(audience);
    let (end, _) = recipe.end(w, AUDIENCE - 1);
    eprintln!(
        "the recipe's end → all {} clients disconnected: {end:.0} ms",
        AUDIENCE - 1
    );
}

/// `pairjail stop` of the benchmark's session, as the host.
fn stop_command(w: &World) -> std::process::Command {
    let mut stop = common::run_as(HOST, common::shared_binary());
    stop.args(["stop", "--session", "sbench", "--runtime-dir"])
        .arg(&w.runtime)
        .env("HOME", format!("/home/{HOST}"))
        .current_dir("/");
    stop
}

/// Runs `end` and waits until every viewer's ssh has exited: the
/// milliseconds until the last did, and until `end` returned.
fn ending(audience: &mut [Viewer], mut end: std::process::Command) -> (f64, f64) {
    let start = Instant::now();
    let mut end = end.spawn().expect("the end command");
    for v in audience.iter_mut() {
        let _ = v.child.wait();
    }
    let last = start.elapsed().as_secs_f64() * 1000.0;
    let _ = end.wait();
    (last, start.elapsed().as_secs_f64() * 1000.0)
}

/// The recipe's server, for its end with a full audience.
struct RecipeEnd {
    socket: String,
    key: std::path::PathBuf,
}

impl RecipeEnd {
    /// `n` recipe clients join, then the host kills the recipe's tmux
    /// server, as a host ends that recipe: see [`ending`].
    fn end(&self, w: &World, n: usize) -> (f64, f64) {
        let mut audience = viewers(w, &vec![self.key.clone(); n]);
        let mut kill = common::run_as(HOST, "tmux");
        kill.args(["-S", &self.socket, "kill-server"]);
        ending(&mut audience, kill)
    }
}

/// Starts `n` viewers, a few at a time (sshd refuses bursts of
/// unauthenticated connections), each on screen before the next batch.
fn viewers(w: &World, keys: &[std::path::PathBuf]) -> Vec<Viewer> {
    let mut all = Vec::new();
    for batch in keys.chunks(8) {
        let started: Vec<Viewer> = batch.iter().map(|k| viewer(w, k, false)).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !started
            .iter()
            .all(|v| v.on_screen.load(std::sync::atomic::Ordering::Relaxed))
        {
            if Instant::now() > deadline {
                let v = started
                    .iter()
                    .find(|v| !v.on_screen.load(std::sync::atomic::Ordering::Relaxed));
                let last = v.and_then(|v| v.last.lock().ok().map(|l| l.clone()));
                panic!("a viewer never saw the session; it printed:\n{last:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        all.extend(started);
    }
    all
}

/// Sends `token` with `send` and returns the milliseconds until the
/// watched viewer shows `shown`.
fn latency(
    arrivals: &std::sync::mpsc::Receiver<(String, Instant)>,
    send: &dyn Fn(),
    shown: &str,
) -> f64 {
    while arrivals.try_recv().is_ok() {}
    let start = Instant::now();
    send();
    loop {
        let seen = arrivals
            .recv_timeout(Duration::from_secs(60))
            .expect("the output never arrived");
        if seen.0.contains(shown) {
            return seen.1.duration_since(start).as_secs_f64() * 1000.0;
        }
    }
}

fn recipe_pss_kib() -> u64 {
    processes()
        .iter()
        .filter(|(_, _, c)| c.contains("attach -r -t =recipe"))
        .map(|(p, _, _)| rss_kib(*p))
        .sum()
}

/// The median of `v`, and its range (of three runs, quartiles would be
/// the median itself).
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    (percentile(v, 0.5), percentile(v, 0.0), percentile(v, 1.0))
}

fn main() {
    let mut spec: Vec<(String, &str, Option<&str>)> = (0..AUDIENCE)
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
    let _recipe_server = KillServer(rsock.clone());
    as_host(&["tmux", "-S", rs, "server-access", "-a", GUEST_USER]);
    let keys = w.dir.join("keys").join(GUEST_USER);
    let text = fs::read_to_string(&keys).unwrap();
    let recipe_pub = fs::read_to_string(guests[AUDIENCE].key.with_extension("pub")).unwrap();
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
    let recipe_end = RecipeEnd {
        socket: rs.to_string(),
        key: guests[AUDIENCE].key.clone(),
    };
    if std::env::var_os("SESSION_BENCH_END_ONLY").is_some() {
        end_only(&w, &guests, &recipe_end);
        return;
    }

    // Join latency, interleaved.
    let (mut pj, mut recipe) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        pj.push(join_ms(&w, &guests[0]));
        recipe.push(join_ms(&w, &guests[AUDIENCE]));
    }
    let (pj_med, recipe_med) = (percentile(&mut pj, 0.5), percentile(&mut recipe, 0.5));

    // The audience, side by side: N mirror guests of pairjail and N clients
    // of the recipe, both connected at once; keystrokes and floods go to
    // one then the other, interleaved. Each side has one watched viewer.
    let broker_alone = pairjail_rss();
    let pj_keys: Vec<std::path::PathBuf> =
        guests[..AUDIENCE].iter().map(|g| g.key.clone()).collect();
    let recipe_key = guests[AUDIENCE].key.clone();
    let mut pj_watch = viewer(&w, &pj_keys[0], true);
    let recipe_watch = viewer(&w, &recipe_key, true);
    let pj_rx = pj_watch.arrivals.as_ref().expect("watched");
    let recipe_rx = recipe_watch.arrivals.as_ref().expect("watched");
    for rx in [pj_rx, recipe_rx] {
        loop {
            let (t, _) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the watched viewer saw nothing");
            if t.contains(MARKER) {
                break;
            }
        }
    }
    let pj_send = |cmd: &str| w.host_tmux("sbench", &["send-keys", "-t", "=sbench:", "-l", cmd]);
    let recipe_send =
        |cmd: &str| as_host(&["tmux", "-S", rs, "send-keys", "-t", "=recipe:", "-l", cmd]);
    let pj_enter = || w.host_tmux("sbench", &["send-keys", "-t", "=sbench:", "Enter"]);
    let recipe_enter = || as_host(&["tmux", "-S", rs, "send-keys", "-t", "=recipe:", "Enter"]);
    let (mut pj_audience, mut recipe_audience) = (Vec::new(), Vec::new());
    let mut rows = Vec::new();
    let mut floods = Vec::new();
    let (mut pj_kib_100, mut recipe_kib_100) = (0.0, 0.0);
    for n in [1usize, 10, 50, 100, 200] {
        // Floods scroll the marker away: it goes back on both screens,
        // where each new viewer waits for it.
        let again = format!("clear; echo {MARKER}");
        pj_send(&again);
        pj_enter();
        recipe_send(&again);
        recipe_enter();
        pj_audience.extend(viewers(&w, &pj_keys[1 + pj_audience.len()..n]));
        let more = vec![recipe_key.clone(); n - 1 - recipe_audience.len()];
        recipe_audience.extend(viewers(&w, &more));
        let (mut pj_lat, mut recipe_lat) = (Vec::new(), Vec::new());
        for i in 0..100 {
            let token = format!("K{n}X{i}Z");
            pj_lat.push(latency(
                pj_rx,
                &|| {
                    pj_send(&token);
                },
                &token,
            ));
            recipe_lat.push(latency(recipe_rx, &|| recipe_send(&token), &token));
            pj_send("\u{15}");
            recipe_send("\u{15}");
            std::thread::sleep(Duration::from_millis(10));
        }
        rows.push((n, pj_lat, recipe_lat));
        if n == 10 || n == 50 {
            let (mut pj_f, mut recipe_f) = (Vec::new(), Vec::new());
            for k in 0..3 {
                let cmd = format!("seq 1 200000; printf 'FLOOD%dEND\\n' {n}{k}");
                let end = format!("FLOOD{n}{k}END");
                pj_f.push(latency(
                    pj_rx,
                    &|| {
                        pj_send(&cmd);
                        pj_enter();
                    },
                    &end,
                ));
                recipe_f.push(latency(
                    recipe_rx,
                    &|| {
                        recipe_send(&cmd);
                        recipe_enter();
                    },
                    &end,
                ));
            }
            floods.push((n, pj_f, recipe_f));
        }
        if n == 100 {
            pj_kib_100 = (pairjail_rss().saturating_sub(broker_alone)) as f64 / 100.0;
            eprint!(
                "at 100 guests (the broker alone: {broker_alone} KiB):\n{}",
                pairjail_breakdown()
            );
            // For work on memory: the figure and its breakdown, no more.
            if std::env::var_os("SESSION_BENCH_STOP_AT_100").is_some() {
                eprintln!("{pj_kib_100:.0} KiB per guest");
                let _ = w.host_pairjail(&["stop", "--session", "sbench"]);
                return;
            }
            recipe_kib_100 = recipe_pss_kib() as f64 / 100.0;
        }
    }
    // The recipe's clients go; pairjail's audience grows to 500.
    for mut v in recipe_audience
        .drain(..)
        .chain(std::iter::once(recipe_watch))
    {
        let _ = v.child.kill();
        let _ = v.child.wait();
    }
    let again = format!("clear; echo {MARKER}");
    pj_send(&again);
    pj_enter();
    pj_audience.extend(viewers(&w, &pj_keys[1 + pj_audience.len()..AUDIENCE]));
    let connected = common::eventually(60, || {
        let n = w.guests("sbench").len();
        (n == AUDIENCE)
            .then_some(n)
            .ok_or(format!("{n} guests listed"))
    });
    let mut lat_500 = Vec::new();
    for i in 0..100 {
        let token = format!("K500X{i}Z");
        lat_500.push(latency(
            pj_rx,
            &|| {
                pj_send(&token);
            },
            &token,
        ));
        pj_send("\u{15}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let alive = pj_audience.len() + 1;
    let still = pj_audience
        .iter_mut()
        .map(|v| v.child.try_wait())
        .filter(|s| matches!(s, Ok(None)))
        .count()
        + usize::from(matches!(pj_watch.child.try_wait(), Ok(None)));
    // Ending the session: time until every one of the guests has been
    // told and disconnected; then the recipe's, with as many clients (its
    // host kills its tmux server), alone on the machine as pairjail's was.
    let (end_ms, _) = ending(&mut pj_audience, stop_command(&w));
    let (recipe_end_ms, _) = recipe_end.end(&w, pj_audience.len());

    let mut t = String::new();
    t.push_str("| measure | pairjail | peer | ratio | goal |\n|---|---|---|---|---|\n");
    t.push_str(&format!(
        "| join latency, ssh start → host content on screen (median of 10, interleaved) | {pj_med:.0} ms | {recipe_med:.0} ms (`command=\"tmux -S sock attach -r\"`, no jail) | {:.2}× | ≤ 1.10× |\n",
        pj_med / recipe_med
    ));
    let p99_1 = percentile(&mut rows[0].1.clone(), 0.99);
    for (n, pj, recipe) in rows.iter_mut() {
        let (p50, p99) = (percentile(pj, 0.5), percentile(pj, 0.99));
        let (r50, r99) = (percentile(recipe, 0.5), percentile(recipe, 0.99));
        let goal = match n {
            1 => "≤ 1.05×",
            100 => "≤ 1.0×",
            _ => "",
        };
        t.push_str(&format!(
            "| host keystroke → guest pty, {n} mirror guest(s) vs {n} recipe client(s) | p50 {p50:.1} ms, p99 {p99:.1} ms | p50 {r50:.1} ms, p99 {r99:.1} ms | p50 {:.2}×, p99 {:.2}× | {goal} |\n",
            p50 / r50,
            p99 / r99
        ));
    }
    let p99_200 = percentile(&mut rows[4].1.clone(), 0.99);
    // The recipe's own growth from 1 client to 200, in the same run: how
    // much of it the machine (200 ssh clients and sshds on its cores) sets.
    let recipe_growth =
        percentile(&mut rows[4].2.clone(), 0.99) / percentile(&mut rows[0].2.clone(), 0.99);
    t.push_str(&format!(
        "| p99 with 200 mirror guests ÷ p99 with 1 | {0:.2}× | {recipe_growth:.2}× (the recipe's 200 clients ÷ its 1) | {0:.2}× | ≤ 1.5× |\n",
        p99_200 / p99_1
    ));
    for (n, pj, recipe) in floods.iter_mut() {
        let (p, plo, phi) = spread(pj);
        let (r, rlo, rhi) = spread(recipe);
        t.push_str(&format!(
            "| output flood (`seq 1 200000`) to the watched guest's pty, {n} mirror guests vs {n} recipe clients (median of 3, interleaved) | {p:.0} ms ({plo:.0}–{phi:.0}) | {r:.0} ms ({rlo:.0}–{rhi:.0}) | {:.2}× | ≤ 1.0× |\n",
            p / r
        ));
    }
    t.push_str(&format!(
        "| memory per mirror guest at 100 guests (PSS of the broker's growth + join + the relay, its jail's pid 1) | {:.0} KiB ({:.2} MiB) | {:.0} KiB (the recipe's `tmux attach -r` client) | {:.2}× | ≤ 0.5 MiB |\n",
        pj_kib_100,
        pj_kib_100 / 1024.0,
        recipe_kib_100,
        pj_kib_100 / recipe_kib_100
    ));
    let (p50, p99) = (
        percentile(&mut lat_500.clone(), 0.5),
        percentile(&mut lat_500, 0.99),
    );
    t.push_str(&format!(
        "| {AUDIENCE} mirror guests join one session (same terminal size) and stay connected | {still} of {alive} still connected ({connected} listed by `status`); keystroke p50 {p50:.1} ms, p99 {p99:.1} ms | | | all |\n"
    ));
    t.push_str(&format!(
        "| session end → all {} guests disconnected (ssh exited) | {end_ms:.0} ms | {recipe_end_ms:.0} ms (as many recipe clients, `tmux kill-server`) | {:.2}× | ≤ 1 s |\n",
        pj_audience.len(),
        end_ms / recipe_end_ms
    ));
    t.push_str("\nKeystroke latency: 100 keystrokes per row, from `tmux send-keys` on the host's server to the bytes arriving on the watched viewer's own terminal (its `ssh -tt` on a pty the benchmark reads), pairjail and the recipe interleaved with both audiences connected. Floods: `seq 1 200000` typed into each session, until its last line reaches the watched viewer. Every viewer is 80×24, so pairjail's mirror guests form one group. Spreads in parentheses are the range of the three floods. Join latency includes polling the guest's screen with `tmux capture-pane` (a few ms per poll), the same for both.\n");
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
