#!/usr/bin/env bash
# Benchmarks of the workspace jail (issue: a session), side by side in one
# run: `start --detach` with and without the jail, and a build inside the
# jail against the same build outside. Needs root (it runs as a test user).
set -euo pipefail
cd "$(dirname "$0")/.."
U=pjbench
id -u "$U" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --user-group "$U"
D=$(mktemp -d /tmp/pj-bench-ws.XXXXXX)
trap 'rm -rf "$D"' EXIT
chmod 755 "$D"
cp target/release/pairjail "$D/pairjail" 2>/dev/null || cp target/x86_64-unknown-linux-gnu/release/pairjail "$D/pairjail"
mkdir -p "$D/run" "$D/ws"
chmod 1777 "$D/run"
chown "$U:$U" "$D/ws"
printf 'int main(void){return 0;}\n' > "$D/ws/m.c"
chown "$U:$U" "$D/ws/m.c"
as_u() { setpriv --reuid "$U" --regid "$U" --init-groups -- env HOME="/home/$U" TERM=xterm PATH=/usr/bin:/bin "$@"; }
export -f as_u; export U D
PJ="$D/pairjail"
cd "$D/ws"
echo "## pairjail start --detach, with and without the workspace jail"
hyperfine -N --warmup 3 --runs 30 --export-json "$D/start.json" --style basic \
  --prepare "sh -c 'setpriv --reuid $U --regid $U --init-groups -- $PJ stop --session bw --runtime-dir $D/run >/dev/null 2>&1 || true'" \
  --cleanup "sh -c 'setpriv --reuid $U --regid $U --init-groups -- $PJ stop --session bw --runtime-dir $D/run >/dev/null 2>&1 || true'" \
  "setpriv --reuid $U --regid $U --init-groups -- env HOME=/home/$U TERM=xterm PATH=/usr/bin:/bin $PJ start --detach --session bw --allow pair --default-mode pair --runtime-dir $D/run" \
  "setpriv --reuid $U --regid $U --init-groups -- env HOME=/home/$U TERM=xterm PATH=/usr/bin:/bin $PJ start --detach --session bw --allow pair --default-mode pair --unconfined-session --runtime-dir $D/run" >/dev/null
echo "## 40 C compiles inside the workspace jail vs outside"
BUILD="cd $D/ws && for i in \$(seq 40); do cc -o m m.c; done"
hyperfine -N --warmup 2 --runs 10 --export-json "$D/build.json" --style basic \
  "setpriv --reuid $U --regid $U --init-groups -- $PJ exec --profile workspace --param workspace=$D/ws --param home=/home/$U --param socket_dir=$D/run -- /bin/sh -c '$BUILD'" \
  "setpriv --reuid $U --regid $U --init-groups -- /bin/sh -c '$BUILD'" >/dev/null
python3 - "$D/start.json" "$D/build.json" <<'PY'
import json, statistics, sys
for path, label in zip(sys.argv[1:], ["start --detach", "40 compiles"]):
    r = json.load(open(path))["results"]
    jail, plain = r[0]["times"], r[1]["times"]
    mj, mp = statistics.median(jail), statistics.median(plain)
    # Spread of the ratio: quartiles of jailed over the plain median.
    qs = statistics.quantiles([t / mp for t in jail], n=4)
    print(f"| {label} | jailed {mj*1000:.1f} ms | unconfined {mp*1000:.1f} ms | {mj/mp:.2f}x (IQR {qs[0]:.2f}-{qs[2]:.2f}) | +{(mj-mp)*1000:.1f} ms |")
PY
