#!/usr/bin/env bash
# git_revert against `git revert` (the git CLI) on the same repository, in the same run:
# 20,000 commits over 5,000 files (bench/gen_repo.py through `git fast-import`), a work
# tree of 5,000 files, a project made by `release init` and committed.
#
# Two cases: one commit changing 10 files (`bench-ten`, 100 commits below HEAD), and the
# 50-commit range `bench-range-from..bench-range-to` (the last 50 generated commits),
# each timed as
#   - `git revert --no-edit …` (the CLI, the reference),
#   - `release run` of a one-step `git_revert` runbook (real: commits, checkout, audit),
#   - the same with `--dry-run` (the in-memory preflight; writes only the audit log),
# and the fixed costs inside every release figure: `release --version` (process start) and
# `release run` of a one-step `run: ["true"]` runbook (the engine: config, lock, audit),
# and `git status --porcelain -uno`: the dirty-tree check a dry-run must make, as git makes
# it, a floor under any whole-command dry-run.
# The repository is put back with `git reset --hard` before every timing (--prepare), so
# every run reverts from the same HEAD, and the audit log is emptied: each run replays the
# whole log, so a log grown by the earlier timings would charge the later commands more
# (the engine-only figure most of all). gc.auto is 0 so that no run pays for a gc.
# Then the action alone (bench/git_revert_action.rs, linked against release's library):
# the step's preflight and real run in one process, libgit2 already started, against the
# CLI in the same loop; it tells the action's own cost from the command's fixed costs.
# Targets: real ≤ 1.0× the CLI; dry-run ≤ 0.5× the CLI.
#
# usage: bench/git_revert.sh [RUNS=10]       (from the repository root; about 2 minutes)
source "$(dirname "$0")/lib.sh"
runs=${1:-10}
need git

build_release
compile_against_release git_revert_action serde_json tokio

repo=$SANDBOX/repo
echo "bench: generating the repository (20,000 commits, 5,000 files)…" >&2
git init -q -b main "$repo"
python3 "$ROOT/bench/gen_repo.py" 20000 5000 | git -C "$repo" fast-import --quiet
git -C "$repo" reset -q --hard main
git -C "$repo" config user.name Bench
git -C "$repo" config user.email bench@example.com
git -C "$repo" config gc.auto 0
"$BIN" -C "$repo" -q init >/dev/null
cat >"$repo/revert.yaml" <<'EOF'
name: revert
description: one git_revert step
params:
  commit: { required: true }
steps:
  - id: revert
    git_revert: { commits: "{{ params.commit }}" }
EOF
cat >"$repo/noop.yaml" <<'EOF'
name: noop
description: one step that does nothing (the engine's own cost)
steps:
  - id: noop
    run: ["true"]
EOF
git -C "$repo" add -A
git -C "$repo" commit -q -m "release project"
base=$(git -C "$repo" rev-parse HEAD)
objects=$(git -C "$repo" count-objects -v | sed -n 's/^size-pack: //p')

run=("$BIN" -C "$repo" run revert.yaml --component orchestration --stage staging --reason bench --no-progress)
# Back to the same HEAD, with no revert of the CLI's left in progress, and an empty log.
reset="sh -c 'git -C $repo revert --quit 2>/dev/null; git -C $repo reset -q --hard $base; rm -f $repo/.release/audit.jsonl'"

bench_case() { # NAME COMMITS JSON
  local name=$1 commits=$2 json=$3
  hyperfine -N --style basic --warmup 2 --runs "$runs" \
    --prepare "$reset" \
    --export-json "$json" \
    --command-name "git revert --no-edit $name (CLI)" \
    "git -C $repo revert --no-edit $commits" \
    --command-name "release run: git_revert $name" \
    "${run[*]} --set commit=$commits" \
    --command-name "release run --dry-run: git_revert $name" \
    "${run[*]} --set commit=$commits --dry-run" >&2
  # Each command must have done its work: check once more, outside the timings.
  eval "$reset"
  "${run[@]}" --set "commit=$commits" >/dev/null
  local made
  made=$(git -C "$repo" rev-list --count "$base..HEAD")
  [[ $made -ge 1 && -z $(git -C "$repo" status --porcelain) ]] || {
    echo "bench: git_revert $name did not revert cleanly" >&2
    exit 1
  }
  echo "$made" >"$json.made"
  eval "$reset"
}

bench_case "bench-ten" "bench-ten" "$SANDBOX/one.json"
bench_case "bench-range-from..bench-range-to" "bench-range-from..bench-range-to" "$SANDBOX/range.json"
hyperfine -N --style basic --warmup 5 --runs 30 --export-json "$SANDBOX/version.json" \
  --prepare "rm -f $repo/.release/audit.jsonl" \
  --command-name "release --version" "$BIN --version" \
  --command-name "release run noop.yaml (one run: [true] step)" \
  "$BIN -C $repo run noop.yaml --component orchestration --stage staging --reason bench --no-progress" \
  --command-name "git status --porcelain -uno (the dirty-tree check alone)" \
  "git -C $repo status --porcelain -uno" >&2

# The action alone, in one process (bench/git_revert_action.rs), against the CLI in the
# same loop: each round times `git revert`, the preflight and the real run, from the same
# HEAD. No release process start, engine or audit log; libgit2 already started.
echo "bench: the action alone, in one process ($runs rounds)…" >&2
"$BENCH_BIN/git_revert_action" "$repo" "$base" "$runs" bench-ten bench-range-from..bench-range-to \
  >"$SANDBOX/action.txt"
eval "$reset"

echo
echo "### git_revert vs \`git revert\`: 20,000 commits, 5,000 files"
echo
echo "$(machine_line), $(git --version)"
echo
echo "Command: \`bench/git_revert.sh $runs\`; the repository's pack is $objects KiB; each real run made $(cat "$SANDBOX/one.json.made") and $(cat "$SANDBOX/range.json.made") revert commits (checked after the timings, work tree clean)."
echo
python3 - "$SANDBOX/one.json" "$SANDBOX/range.json" "$SANDBOX/version.json" "$SANDBOX/action.txt" <<'PY'
import json, sys

def load(path):
    return json.load(open(path))["results"]

def ms(r):
    return f"{r['mean'] * 1e3:.1f} ms ± {r['stddev'] * 1e3:.1f}"

version, noop, status = load(sys.argv[3])
met = lambda q, t: "met" if q <= t else f"MISSED by {(q / t - 1) * 100:.0f} %"
print("| case | `git revert` (CLI) | `release run` (real) | real / CLI | target | `release run --dry-run` | dry-run / CLI | target |")
print("|---|---|---|---|---|---|---|---|")
rows = []
for label, path in (("1 commit, 10 files", sys.argv[1]), ("50-commit range", sys.argv[2])):
    cli, real, dry = load(path)
    q_real = real["mean"] / cli["mean"]
    q_dry = dry["mean"] / cli["mean"]
    rows.append((label, cli, real, dry))
    print(f"| {label} | {ms(cli)} | {ms(real)} | {q_real:.2f}× | ≤ 1.0× {met(q_real, 1.0)} | "
          f"{ms(dry)} | {q_dry:.2f}× | ≤ 0.5× {met(q_dry, 0.5)} |")
print()
print(f"Fixed costs inside every `release run` figure: process start (`release --version`) {ms(version)}; "
      f"the engine with nothing to do (`release run` of one `run: [\"true\"]` step: config, runbook, "
      f"lock, audit records appended and fdatasynced) {ms(noop)}.")
one_cli = rows[0][1]
print()
print(f"What no dry-run can skip, as git itself does it: `git status --porcelain -uno` (one process "
      f"that reads the index and compares the 5,000 tracked files' stat data, no revert computed) "
      f"takes {ms(status)}, {status['mean'] / one_cli['mean']:.2f}× the one-commit `git revert`, "
      f"against the dry-run's 0.5× target.")
print()
print("| case, net of the engine's fixed cost | real − engine | / CLI | dry-run − engine | / CLI |")
print("|---|---|---|---|---|")
for label, cli, real, dry in rows:
    r, d = real["mean"] - noop["mean"], dry["mean"] - noop["mean"]
    print(f"| {label} | {r * 1e3:.1f} ms | {r / cli['mean']:.2f}× | {d * 1e3:.1f} ms | {d / cli['mean']:.2f}× |")

print()
print("The action alone, in one process (`bench/git_revert_action.rs`: release's own "
      "`actions::preflight` and `actions::execute` for the step, libgit2 already started, "
      "against `git revert` in the same loop, from the same HEAD each time):")
print()
print("| case | `git revert` (CLI) | action, real | real / CLI | target | action, preflight | preflight / CLI | target |")
print("|---|---|---|---|---|---|---|---|")
first = None
for line, label in zip(open(sys.argv[4]).read().split("\n"), ("1 commit, 10 files", "50-commit range")):
    f = dict(kv.split("=", 1) for kv in line.split())
    c, r, d = float(f["cli_ms"]), float(f["real_ms"]), float(f["dry_ms"])
    first = f["first_ms"]
    sd = lambda key: f"{float(f[key]):.1f}"
    print(f"| {label} | {c:.1f} ms ± {sd('cli_sd')} | {r:.1f} ms ± {sd('real_sd')} | {r / c:.2f}× | ≤ 1.0× {met(r / c, 1.0)} | "
          f"{d:.1f} ms ± {sd('dry_sd')} | {d / c:.2f}× | ≤ 0.5× {met(d / c, 0.5)} |")
print()
print(f"The process's first preflight, which starts libgit2 (OpenSSL parses the CA bundle), took {float(first):.1f} ms; "
      "it is counted in no mean above. `release run` starts libgit2 on a thread of its own as it starts, "
      "so part of that start overlaps the engine's; what does not is in the table at the top.")
PY
