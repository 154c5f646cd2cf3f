#!/usr/bin/env bash
# The demo of what pairjail does today: the profile tooling a security team
# uses. Shared sessions join this demo when they land (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
pj=target/x86_64-unknown-linux-gnu/release/pairjail
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say pairjail profile list
$pj profile list
say pairjail profile check profiles/*.toml
$pj profile check profiles/*.toml
say pairjail profile show guest-relay --resolved '| head -20'
$pj profile show guest-relay --resolved | head -20

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/typo.toml" <<'TOML'
extends = ["guest-relay"]
[namespaces]
nett = true
[seccomp]
ioctl = ["TIOCSTI"]
TOML
say pairjail profile check typo.toml '# a misspelled field and a forbidden ioctl'
if $pj profile check "$tmp/typo.toml"; then echo "demo: expected the check to fail" >&2; exit 1; fi
echo "(exit status 2, as expected)"
