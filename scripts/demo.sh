#!/usr/bin/env bash
# The main job, end to end on this machine: `pairjail setup` configures a
# throwaway sshd on 127.0.0.1 for a guest user; a host shares a tmux
# session and invites bob's generated key; bob joins with a real ssh client
# and lands, jailed, in the session as a mirror guest. We show what he sees,
# that his typing goes nowhere, then end the session and show that his key
# no longer gets in. Everything this script starts or creates is removed
# when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH "$0" "$@"
fi

HOST_USER=pjdemohost
GUEST_USER=pjdemopair
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

D=$(mktemp -d /tmp/pairjail-demo.XXXXXX)
chmod 755 "$D"
# sshd only runs an AuthorizedKeysCommand whose path is root-owned all the way up.
B=$(mktemp -d /usr/local/lib/pairjail-demo.XXXXXX)
chmod 755 "$B"
created_users=()
SSHD_PID=""
cleanup() {
  set +e
  tmux -L pjdemo kill-server 2>/dev/null
  [ -S "$D/run/$HOST_USER/demo/tmux/server/tmux.sock" ] && setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- tmux -S "$D/run/$HOST_USER/demo/tmux/server/tmux.sock" kill-server 2>/dev/null
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  for u in "${created_users[@]}"; do userdel -r "$u" 2>/dev/null; done
  rm -rf "$D" "$B"
}
trap cleanup EXIT

say "the host user $HOST_USER"
if ! id -u "$HOST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh --user-group "$HOST_USER"
  created_users+=("$HOST_USER")
fi
id -u "$GUEST_USER" >/dev/null 2>&1 || created_users+=("$GUEST_USER")

install -m 0755 target/x86_64-unknown-linux-gnu/release/pairjail "$B/pairjail"
PJ="$B/pairjail"
mkdir -p "$D/sshd.d"
ssh-keygen -q -t ed25519 -N "" -f "$D/hostkey"
ssh-keygen -q -t ed25519 -N "" -C bob -f "$D/bob"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "a throwaway sshd on 127.0.0.1:$PORT"
mkdir -p /run/sshd
cat > "$D/sshd_config" <<CFG
Include $D/sshd.d/*.conf
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/hostkey
PidFile $D/sshd.pid
AuthorizedKeysFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PrintMotd no
LogLevel ERROR
CFG
say "root, once: pairjail setup --pair-user $GUEST_USER --host $HOST_USER (its files pointed into $D)"
# PAIRJAIL_CONFIG: the config setup writes, here in $D instead of /etc/pairjail;
# every later command reads it (pair user, runtime directory, sshd's port).
export PAIRJAIL_CONFIG="$D/etc/config.toml"
"$PJ" setup --pair-user "$GUEST_USER" --host "$HOST_USER" --public-host 127.0.0.1 --runtime-dir "$D/run" \
  --sshd-config-dir "$D/sshd.d" --sshd-config "$D/sshd_config" --tmpfiles-dir "$D/tmpfiles" \
  --shell "$B/pair-shell" | sed 's/^/  /'
/usr/sbin/sshd -D -e -f "$D/sshd_config" 2>"$D/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

say "$HOST_USER: pairjail start --detach --session demo --allow mirror -- <a clock>"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- env HOME="/home/$HOST_USER" TERM=xterm \
  "$PJ" start --detach --session demo --allow mirror -- \
  sh -c 'i=0; while :; do clear; echo "host $(whoami) is sharing this pane"; echo "tick $i"; i=$((i+1)); sleep 1; done'

as_host() { setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- env HOME="/home/$HOST_USER" "$PJ" "$@"; }
say "$HOST_USER: pairjail invite add bob --key-file bob.pub --session demo --mode mirror"
as_host invite add bob --key-file "$D/bob.pub" --session demo --mode mirror | tee "$D/invite.out" | sed 's/^/  /'
LINE=$(sed -n 's/^guests join with: //p' "$D/invite.out")
as_host invite list

say "guest bob runs the printed line: $LINE (a real ssh client in a real terminal)"
tmux -L pjdemo -f /dev/null new-session -d -s guest -x 80 -y 12 \
  "${LINE/ssh -t/ssh -tt -i $D/bob -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR}; echo; echo ssh exited with \$?; sleep 60"
for _ in $(seq 200); do tmux -L pjdemo capture-pane -p -t guest | grep -q "is sharing" && break; sleep 0.05; done

say "what bob sees (tmux capture-pane of his terminal)"
tmux -L pjdemo capture-pane -p -t guest | sed 's/^/  | /'

say "bob is a mirror guest: he types 'echo pwned' and Ctrl-b d; nothing reaches the session"
tmux -L pjdemo send-keys -t guest "echo pwned" Enter C-b d
sleep 1.5
tmux -L pjdemo capture-pane -p -t guest | sed 's/^/  | /'

say "$HOST_USER: pairjail status"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- "$PJ" status

say "$HOST_USER: pairjail stop --session demo (every guest is disconnected)"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- "$PJ" stop --session demo
for _ in $(seq 100); do tmux -L pjdemo capture-pane -p -t guest | grep -q "ssh exited" && break; sleep 0.05; done
tmux -L pjdemo capture-pane -p -t guest | grep -v '^$' | tail -3 | sed 's/^/  | /'

say "bob's key after the session ended: sshd refuses it"
ssh -i "$D/bob" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
  -o BatchMode=yes "$GUEST_USER@127.0.0.1" true 2>&1 | sed 's/^/  /' || true

say "root: pairjail setup --undo --remove-user (removes what setup wrote, and its users)"
"$PJ" setup --undo --remove-user | sed 's/^/  /'

say "done; cleaning up the sshd, the session, the users and $D"
