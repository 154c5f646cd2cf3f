# pairjail tasks. `just demo` and `just test` do all set-up themselves.

set shell := ["bash", "-euo", "pipefail", "-c"]

packages := "libseccomp-dev tmux openssh-server openssh-client bubblewrap hyperfine strace busybox-static util-linux e2fsprogs mount passwd python3 runc git make gcc vim-tiny asciinema python3-jsonschema python3-fusepy"

# List the recipes.
default:
    @just --list

# Install the Debian packages the demo, tests and benchmarks use (idempotent).
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in {{packages}}; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}"

# Build the release binary.
build:
    cargo build --release --locked

# Run the main job (see README for what it shows today).
demo: deps build
    bash scripts/demo.sh

# Formatting, lints and every test.
test: deps lint
    cargo test --locked -- --test-threads=2

# cargo fmt --check and clippy with warnings as errors.
lint:
    cargo fmt --check
    cargo clippy --locked --all-targets -- -D warnings
    python3 scripts/import_cycles.py

# Benchmarks (never tests): jail entry vs bwrap and unshare; writes README's table.
bench: deps build
    python3 scripts/bench.py
    cargo bench --locked --bench session
    bash scripts/bench_workspace.sh

# Fuzz the authorized_keys block reader/writer and the protocol decoder
# (cargo-fuzz; the stable toolchain is told to accept its -Z flags).
fuzz seconds="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    RUSTC_BOOTSTRAP=1 cargo fuzz run authorized_keys_block -- -max_total_time={{seconds}}
    RUSTC_BOOTSTRAP=1 cargo fuzz run protocol_frames -- -max_total_time={{seconds}}
    RUSTC_BOOTSTRAP=1 cargo fuzz run authorized_keys_invites -- -max_total_time={{seconds}}
