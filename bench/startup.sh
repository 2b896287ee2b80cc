#!/usr/bin/env bash
# Start-up cost of the release binary: `--version`, and validating the shipped
# release.yaml + 6 default runbooks. Uses hyperfine (apt-get install hyperfine).
# Run from the repository root: bench/startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/release/release
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install -y hyperfine" >&2; exit 1; }
hyperfine -N --warmup 20 --runs 200 \
  "$bin --version" \
  "$bin runbook validate" \
  "/bin/true"
