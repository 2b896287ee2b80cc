#!/usr/bin/env bash
# Start-up cost of the release binary: `--version`, and validating the shipped
# release.yaml + 6 default runbooks. Uses hyperfine (apt-get install hyperfine).
# Run from the repository root: bench/startup.sh
# Targets: `release --version` < 5 ms; `release runbook validate` < 20 ms.
# Then prints a Markdown table of the figures against the targets.
source "$(dirname "$0")/lib.sh"
build_release
bin=target/release/release
json=$SANDBOX/startup.json
hyperfine -N --warmup 20 --runs 200 --export-json "$json" \
  "$bin --version" \
  "$bin runbook validate" \
  "/bin/true"

echo
echo "### Start-up"
echo
echo "$(machine_line)"
echo
echo "Command: \`bench/startup.sh\` (\`runbook validate\` checks the repository's release.yaml and its 6 default runbooks)."
echo
python3 "$ROOT/bench/report.py" budget "$json" 5 20 -
