#!/usr/bin/env python3
"""A/B of pairjail builds: jail entry (`exec --profile guest-relay` of a
static no-op) and the relay's start (`__relay` up to its first check of the
descriptor it is given), each build beside bubblewrap in the same rounds.

    python3 scripts/ab_entry.py NAME=PATH/TO/pairjail NAME=... [--rounds 3 --runs 150]

Each round runs hyperfine -N over every command in a rotated order; a figure
is the median of the round medians, the spread the range of the rounds.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a pairjail binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=150)
    a = ap.parse_args()
    for tool in ("hyperfine", "bwrap", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"ab_entry: {tool} is not installed (run `just deps`)")
    tmp = tempfile.mkdtemp(prefix="pairjail-ab-")
    src = os.path.join(tmp, "true.c")
    with open(src, "w") as f:
        f.write("int main(void) { return 0; }\n")
    true = os.path.join(tmp, "true")
    subprocess.run(["gcc", "-O2", "-static", "-o", true, src], check=True)
    os.chmod(tmp, 0o755)
    cmds = {"bwrap": ["bwrap", "--unshare-all", "--new-session", "--die-with-parent",
                      "--cap-drop", "ALL", "--tmpfs", "/", "--ro-bind", true, "/true", "/true"]}
    for b in a.builds:
        name, _, path = b.partition("=")
        if not os.access(path, os.X_OK):
            sys.exit(f"ab_entry: {path}: not an executable")
        cmds[f"{name} entry"] = [path, "exec", "--profile", "guest-relay", "--", true]
        # Descriptor 1000 is not open: the relay parses, checks it and stops.
        cmds[f"{name} relay start"] = [path, "__relay", "--fd", "1000"]
    names = list(cmds)
    medians = {n: [] for n in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        out = os.path.join(tmp, "r.json")
        argv = ["hyperfine", "-N", "-i", "-w", "20", "-r", str(a.runs), "--export-json", out]
        argv += [" ".join(cmds[n]) for n in order]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            for n, res in zip(order, json.load(f)["results"]):
                medians[n].append(res["median"] * 1000)
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
