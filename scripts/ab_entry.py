#!/usr/bin/env python3
"""A/B of pairjail builds: jail entry (`exec --profile guest-relay` of a
static no-op), each build beside bubblewrap in the same rounds.

    python3 scripts/ab_entry.py NAME=PATH/TO/pairjail NAME=... [--rounds 3 --runs 200]

Runs are interleaved one by one (every command once, in a shuffled order,
then again), so drift of the machine and the kernel's deferred cleanup of
namespaces fall on every command alike; hyperfine's blocks of one command
made differences of 0.4 ms vanish in the noise. Each run is timed from
posix_spawn to its exit. A figure is the median of the round medians, the
spread the range of the rounds' ratios.
"""
import argparse, os, shutil, statistics, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import interleaved, static_program  # noqa: E402


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
    true = static_program(tmp, "true", "int main(void) { return 0; }\n")
    cmds = {"bwrap": [shutil.which("bwrap"), "--unshare-all", "--new-session", "--die-with-parent",
                      "--cap-drop", "ALL", "--tmpfs", "/", "--ro-bind", true, "/true", "/true"]}
    for b in a.builds:
        name, _, path = b.partition("=")
        path = os.path.abspath(path)  # the runs happen in a temporary directory
        if not os.access(path, os.X_OK):
            sys.exit(f"ab_entry: {path}: not an executable")
        cmds[f"{name} entry"] = [path, "exec", "--profile", "guest-relay", "--", true]
    # Each build's own built-in profiles, not ./profiles of this checkout.
    os.chdir(tmp)
    names = list(cmds)
    medians = {n: [x * 1000 for x in v] for n, v in interleaved(cmds, a.rounds, a.runs).items()}
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
