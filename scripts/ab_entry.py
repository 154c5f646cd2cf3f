#!/usr/bin/env python3
"""A/B of pairjail builds: jail entry (`exec --profile guest-relay` of a
static no-op) and the relay's start (`__relay` up to its first check of the
descriptor it is given), each build beside bubblewrap in the same rounds.

    python3 scripts/ab_entry.py NAME=PATH/TO/pairjail NAME=... [--rounds 3 --runs 200]

Runs are interleaved one by one (every command once, in a shuffled order,
then again), so drift of the machine and the kernel's deferred cleanup of
namespaces fall on every command alike; hyperfine's blocks of one command
made differences of 0.4 ms vanish in the noise. Each run is timed from
posix_spawn to its exit. A figure is the median of the round medians, the
spread the range of the rounds' ratios.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a pairjail binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    for tool in ("bwrap", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"ab_entry: {tool} is not installed (run `just deps`)")
    tmp = tempfile.mkdtemp(prefix="pairjail-ab-")
    src = os.path.join(tmp, "true.c")
    with open(src, "w") as f:
        f.write("int main(void) { return 0; }\n")
    true = os.path.join(tmp, "true")
    subprocess.run(["gcc", "-O2", "-static", "-o", true, src], check=True)
    os.chmod(tmp, 0o755)
    cmds = {"bwrap": [shutil.which("bwrap"), "--unshare-all", "--new-session", "--die-with-parent",
                      "--cap-drop", "ALL", "--tmpfs", "/", "--ro-bind", true, "/true", "/true"]}
    for b in a.builds:
        name, _, path = b.partition("=")
        if not os.access(path, os.X_OK):
            sys.exit(f"ab_entry: {path}: not an executable")
        cmds[f"{name} entry"] = [path, "exec", "--profile", "guest-relay", "--", true]
        # Descriptor 1000 is not open: the relay parses, checks it and stops.
        cmds[f"{name} relay start"] = [path, "__relay", "--fd", "1000"]
    # Each build's own built-in profiles, not ./profiles of this checkout.
    os.chdir(tmp)
    names = list(cmds)
    medians = {n: [] for n in names}
    devnull = os.open(os.devnull, os.O_RDWR)
    fa = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    for r in range(a.rounds):
        times = {n: [] for n in names}
        for i in range(a.runs + 10):
            order = names[:]
            random.shuffle(order)
            for n in order:
                t0 = time.perf_counter_ns()
                pid = os.posix_spawn(cmds[n][0], cmds[n], os.environ, file_actions=fa)
                os.waitpid(pid, 0)
                if i >= 10:  # the first ten are warm-up
                    times[n].append((time.perf_counter_ns() - t0) / 1e6)
        for n in names:
            medians[n].append(statistics.median(times[n]))
    bw = statistics.median(medians["bwrap"])
    print(f"| command | median | ÷ bubblewrap (rounds' range) |\n|---|---|---|")
    for n in names:
        m = medians[n]
        ratios = [x / y for x, y in zip(m, medians["bwrap"])]
        print(f"| {n} | {statistics.median(m):.2f} ms | {statistics.median(m) / bw:.2f}× "
              f"({min(ratios):.2f}–{max(ratios):.2f}) |")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
