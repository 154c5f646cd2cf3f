#!/usr/bin/env python3
"""Jail entry benchmark: pairjail vs bubblewrap vs plain unshare vs bare exec.

Runs hyperfine (-N, no shell) over all four commands in several rounds,
rotating their order so that none always runs first, and takes the median
of the per-round medians. Peak RSS is the largest ru_maxrss of any process
in each command's tree. Writes the table into README.md between the
bench markers, with the command that produced it.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

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


def main():
    for tool in ("hyperfine", "bwrap", "unshare", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (run `just deps`)")
    tmp = tempfile.mkdtemp(prefix="pairjail-bench-")
    true = static_program(tmp, "true", "int main(void) { return 0; }\n")
    # Sleeps with nanosleep only, which every profile allows.
    sleeper = static_program(tmp, "sleep", "#include <time.h>\nint main(void) { struct timespec t = {0, 400000000}; nanosleep(&t, 0); return 0; }\n")
    cmds = commands(true)
    names = list(cmds)
    medians = {n: [] for n in names}
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        out = os.path.join(tmp, f"round{r}.json")
        args = ["hyperfine", "-N", "--warmup", "10", "--runs", str(RUNS), "--export-json", out, "--style", "none"]
        for n in order:
            args += ["-n", n, " ".join(cmds[n])]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        for res in json.load(open(out))["results"]:
            medians[res["command"]].append(res["median"])
    med = {n: statistics.median(v) * 1000 for n, v in medians.items()}
    rss = {}
    for n in names:
        c = [sleeper if a == true else a for a in cmds[n]]
        if n == "bwrap":
            c = c[:-4] + ["--ro-bind", sleeper, "/sleep", "/sleep"]
        rss[n] = tree_rss_kib(c, sleeper)
    pj = med["pairjail exec (guest-relay)"]
    lines = [
        "| command | median (ms) | pairjail ÷ it | RSS of its process tree (KiB, processes) |",
        "|---|---|---|---|",
    ]
    for n in names:
        ratio = f"{pj / med[n]:.2f}×" if n != "pairjail exec (guest-relay)" else "—"
        lines.append(f"| `{n}` | {med[n]:.2f} | {ratio} | {rss[n][0]} ({rss[n][1]}) |")
    goal_b = pj / med["bwrap"]
    goal_u = pj / med["unshare -Urmpf --net --ipc --uts"]
    lines.append("")
    lines.append(f"Goals: pairjail ≤ 0.6× bwrap → {goal_b:.2f}× ({'met' if goal_b <= 0.6 else 'NOT met'}); "
                 f"≤ 1.0× unshare → {goal_u:.2f}× ({'met' if goal_u <= 1.0 else 'NOT met'}). "
                 f"{ROUNDS} rounds × {RUNS} runs, rotating order; as uid {os.geteuid()}; "
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
