#!/usr/bin/env bash
# The main job, end to end on this machine: a host shares a tmux session;
# a mirror guest joins through a real sshd on 127.0.0.1 with a generated
# key whose forced command is `pairjail join`; we show what the guest sees,
# that its typing goes nowhere, then end the session. Everything this
# script starts or creates is removed when it exits.
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
created_users=()
SSHD_PID=""
cleanup() {
  set +e
  tmux -L pjdemo kill-server 2>/dev/null
  [ -S "$D/run/$HOST_USER/demo/tmux.sock" ] && setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- tmux -S "$D/run/$HOST_USER/demo/tmux.sock" kill-server 2>/dev/null
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  for u in "${created_users[@]}"; do userdel -r "$u" 2>/dev/null; done
  rm -rf "$D"
}
trap cleanup EXIT

say "users: $HOST_USER (the host) and $GUEST_USER (the guests' account)"
for u in "$HOST_USER" "$GUEST_USER"; do
  if ! id -u "$u" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh --user-group "$u"
    created_users+=("$u")
  fi
  usermod -p '*' "$u"   # no password, not locked: key logins only
done

install -m 0755 target/x86_64-unknown-linux-gnu/release/pairjail "$D/pairjail"
PJ="$D/pairjail"
mkdir -p "$D/run" "$D/keys" && chmod 1777 "$D/run"

say "a guest key, and the forced command pairjail writes for it"
ssh-keygen -q -t ed25519 -N "" -C bob -f "$D/bob"
ssh-keygen -q -t ed25519 -N "" -f "$D/hostkey"
echo "restrict,pty,command=\"$PJ join --host $HOST_USER --session demo --guest bob --mode mirror --runtime-dir $D/run\" $(cat "$D/bob.pub")" > "$D/keys/$GUEST_USER"
cut -c1-150 "$D/keys/$GUEST_USER"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "a throwaway sshd on 127.0.0.1:$PORT"
mkdir -p /run/sshd
cat > "$D/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/hostkey
PidFile $D/sshd.pid
AuthorizedKeysFile $D/keys/%u
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PrintMotd no
LogLevel ERROR
CFG
/usr/sbin/sshd -D -e -f "$D/sshd_config" 2>"$D/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

say "$HOST_USER: pairjail start --detach --session demo --allow mirror -- <a clock>"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- env HOME="/home/$HOST_USER" TERM=xterm \
  "$PJ" start --detach --session demo --allow mirror --guest-user "$GUEST_USER" --runtime-dir "$D/run" -- \
  sh -c 'i=0; while :; do clear; echo "host $(whoami) is sharing this pane"; echo "tick $i"; i=$((i+1)); sleep 1; done'

say "guest bob: ssh -t $GUEST_USER@127.0.0.1 -p $PORT (a real ssh client in a real terminal)"
tmux -L pjdemo -f /dev/null new-session -d -s guest -x 80 -y 12 \
  "ssh -tt -i $D/bob -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR $GUEST_USER@127.0.0.1; echo; echo ssh exited with \$?; sleep 60"
for _ in $(seq 200); do tmux -L pjdemo capture-pane -p -t guest | grep -q "is sharing" && break; sleep 0.05; done

say "what bob sees (tmux capture-pane of his terminal)"
tmux -L pjdemo capture-pane -p -t guest | sed 's/^/  | /'

say "bob is a mirror guest: he types 'echo pwned' and Ctrl-b d; nothing reaches the session"
tmux -L pjdemo send-keys -t guest "echo pwned" Enter C-b d
sleep 1.5
tmux -L pjdemo capture-pane -p -t guest | sed 's/^/  | /'

say "$HOST_USER: pairjail status"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- "$PJ" status --runtime-dir "$D/run"

say "$HOST_USER: pairjail stop --session demo (every guest is disconnected)"
setpriv --reuid "$HOST_USER" --regid "$HOST_USER" --init-groups -- "$PJ" stop --session demo --runtime-dir "$D/run"
for _ in $(seq 100); do tmux -L pjdemo capture-pane -p -t guest | grep -q "ssh exited" && break; sleep 0.05; done
tmux -L pjdemo capture-pane -p -t guest | grep -v '^$' | tail -3 | sed 's/^/  | /'

say "done; cleaning up the sshd, the session, the users and $D"
