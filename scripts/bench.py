#!/usr/bin/env python3
"""Jail entry benchmark: pairjail vs bubblewrap vs plain unshare vs bare exec.

Runs all four commands interleaved one run at a time, in a shuffled order,
for several rounds (no shell: posix_spawn to exit), and takes the median of
the per-round medians. RSS is the sum of VmRSS over each command's process
tree while it runs a sleeper. Writes the table into README.md between the
bench markers, with the command that produced it.
"""
import os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PJ = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/pairjail")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RUNS = int(os.environ.get("BENCH_RUNS", "100"))


def static_program(tmp, name, body):
    src = os.path.join(tmp, name + ".c")
    with open(src, "w") as f:
        f.write(body)
    out = os.path.join(tmp, name)
    subprocess.run(["gcc", "-O2", "-static", "-o", out, src], check=True)
    os.chmod(tmp, 0o755)
    return out


def commands(t):
    return {
        "bare exec": [t],
        "pairjail exec (guest-relay)": [PJ, "exec", "--profile", "guest-relay", "--", t],
        "bwrap": ["bwrap", "--unshare-all", "--new-session", "--die-with-parent", "--cap-drop", "ALL",
                  "--tmpfs", "/", "--ro-bind", t, "/true", "/true"],
        "unshare -Urmpf --net --ipc --uts": ["unshare", "-Urmpf", "--net", "--ipc", "--uts", t],
    }


def tree_rss_kib(cmd, sleeper):
    """Sum of VmRSS over the command's whole process tree while it runs a
    program that sleeps: the jail's own processes (pairjail, its pid 1 and
    the program), bwrap's, or unshare's."""
    p = subprocess.Popen(cmd)
    time.sleep(0.15)
    total, seen = 0, {p.pid}
    changed = True
    while changed:
        changed = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) in seen:
                continue
            try:
                stat = open(f"/proc/{pid}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid in seen:
                seen.add(int(pid))
                changed = True
    for pid in seen:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    p.wait()
    return total, len(seen)


def interleaved(argv, rounds, runs, may_fail=()):
    """Median seconds of each command per round. Runs are interleaved one
    at a time in a shuffled order, timed from posix_spawn to exit:
    hyperfine's blocks of one command let the kernel's deferred cleanup of
    one block's network namespaces fall on the next block's command. The
    first ten runs of a round are warm-up."""
    names = list(argv)
    medians = {n: [] for n in names}
    devnull = os.open(os.devnull, os.O_RDWR)
    fa = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    for _ in range(rounds):
        times = {n: [] for n in names}
        for i in range(runs + 10):
            order = names[:]
            random.shuffle(order)
            for n in order:
                t0 = time.perf_counter_ns()
                pid = os.posix_spawn(argv[n][0], argv[n], os.environ, file_actions=fa)
                _, status = os.waitpid(pid, 0)
                if status != 0 and n not in may_fail:
                    sys.exit(f"bench: {n} failed (wait status {status})")
                if i >= 10:
                    times[n].append((time.perf_counter_ns() - t0) / 1e9)
        for n in names:
            medians[n].append(statistics.median(times[n]))
    os.close(devnull)
    return medians


def main():
    for tool in ("bwrap", "unshare", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (run `just deps`)")
    tmp = tempfile.mkdtemp(prefix="pairjail-bench-")
    true = static_program(tmp, "true", "int main(void) { return 0; }\n")
    # Sleeps with nanosleep only, which every profile allows.
    sleeper = static_program(tmp, "sleep", "#include <time.h>\nint main(void) { struct timespec t = {0, 400000000}; nanosleep(&t, 0); return 0; }\n")
    cmds = commands(true)
    names = list(cmds)
    # Each command's built-in profiles, not ./profiles of a checkout (a
    # guest's join runs in the pair user's home).
    os.chdir(tmp)
    argv = {n: [shutil.which(c[0]) or c[0]] + c[1:] for n, c in cmds.items()}
    medians = interleaved(argv, ROUNDS, RUNS)
    med = {n: statistics.median(v) * 1000 for n, v in medians.items()}
    rss = {}
    for n in names:
        c = [sleeper if a == true else a for a in cmds[n]]
        if n == "bwrap":
            c = c[:-4] + ["--ro-bind", sleeper, "/sleep", "/sleep"]
        rss[n] = tree_rss_kib(c, sleeper)
    pj = med["pairjail exec (guest-relay)"]
    pjr = medians["pairjail exec (guest-relay)"]
    spread = {n: (min(a / b for a, b in zip(pjr, medians[n])), max(a / b for a, b in zip(pjr, medians[n])))
              for n in names}
    lines = [
        "| command | median (ms) | pairjail ÷ it (rounds' range) | RSS of its process tree (KiB, processes) |",
        "|---|---|---|---|",
    ]
    for n in names:
        ratio = (f"{pj / med[n]:.2f}× ({spread[n][0]:.2f}–{spread[n][1]:.2f})"
                 if n != "pairjail exec (guest-relay)" else "—")
        lines.append(f"| `{n}` | {med[n]:.2f} | {ratio} | {rss[n][0]} ({rss[n][1]}) |")
    goal_b = pj / med["bwrap"]
    goal_u = pj / med["unshare -Urmpf --net --ipc --uts"]
    lines.append("")
    lines.append(f"Goals: pairjail ≤ 0.6× bwrap → {goal_b:.2f}× ({'met' if goal_b <= 0.6 else 'NOT met'}); "
                 f"≤ 1.0× unshare → {goal_u:.2f}× ({'met' if goal_u <= 1.0 else 'NOT met'}). "
                 f"{ROUNDS} rounds × {RUNS} runs interleaved one by one, median of round medians, "
                 f"the rounds' range in parentheses; as uid {os.geteuid()}; "
                 f"kernel {os.uname().release}; {os.cpu_count()} CPUs.")
    table = "\n".join(lines)
    print(table)
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        open(readme, "w").write(f"{head}{start}\n{table}\n{end}{tail}")
        print("\nREADME.md updated.")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
