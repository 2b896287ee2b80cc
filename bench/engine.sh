#!/usr/bin/env bash
# Engine overhead: a real, audited `release run` of a 100-step chain of `run: ["true"]`
# (each step needs the one above) against its floor, bench/floor/spawn_append.rs: spawn
# /bin/true 100 times one after the other and append 200 lines of 300 bytes, with the audit
# log's durability: an fdatasync before each spawn and one at the end (101 in all).
# Both in one hyperfine run; the audit log and the floor's file are deleted before every
# timing (--prepare), so every run starts from the same, empty log.
# Target: release ≤ 1.5× the floor.
# To tell fixed from per-step cost, the same pair is also timed with 1 step: fixed
# overhead = release(1) − floor(1); per step = (t(100) − t(1)) / 99 for each.
#
# usage: bench/engine.sh [RUNS=30] [STEPS=100]       (from the repository root)
# (the target is for 100 steps; other lengths show how the overhead scales)
source "$(dirname "$0")/lib.sh"
runs=${1:-30}
steps=${2:-100}
[[ $steps =~ ^[0-9]+$ && $steps -ge 2 ]] || { echo "bench: STEPS must be 2 or more" >&2; exit 2; }

build_release
compile_floor spawn_append

project=$SANDBOX/project
new_project "$project"
chain_runbook "$project/chain.yaml" "$steps"
chain_runbook "$project/one.yaml" 1
"$BIN" -C "$project" -q runbook validate chain.yaml one.yaml >/dev/null

log=$project/.release/audit.jsonl
floor_file=$SANDBOX/floor.jsonl
json=$SANDBOX/engine.json
hyperfine -N --style basic --warmup 3 --runs "$runs" \
  --prepare "rm -f $log $floor_file" \
  --export-json "$json" \
  --command-name "release run chain.yaml ($steps steps)" \
  "$BIN -C $project run chain.yaml --component player_experience --stage production --no-progress" \
  --command-name "floor: spawn_append ($steps × /bin/true, $((2 * steps)) × 300 B, $((steps + 1)) × fdatasync)" \
  "$BENCH_BIN/spawn_append $floor_file $steps 300" >&2

json1=$SANDBOX/engine-1.json
hyperfine -N --style basic --warmup 3 --runs "$runs" \
  --prepare "rm -f $log $floor_file" \
  --export-json "$json1" \
  --command-name "release run one.yaml (1 step)" \
  "$BIN -C $project run one.yaml --component player_experience --stage production --no-progress" \
  --command-name "floor: spawn_append (1 step)" \
  "$BENCH_BIN/spawn_append $floor_file 1 300" >&2

# hyperfine's --prepare also ran before the floor's runs: one more run, then check its
# log holds what a run of $steps steps writes, and verifies.
rm -f "$log"
"$BIN" -C "$project" run chain.yaml --component player_experience --stage production --no-progress >/dev/null 2>&1
records=$(wc -l <"$log")
"$BIN" -C "$project" -q audit verify >/dev/null
bytes=$(wc -c <"$log")

echo
echo "### Engine overhead: $steps-step chain of \`true\`"
echo
echo "$(machine_line)"
echo
echo "Command: \`bench/engine.sh $runs $steps\`; each run appended $records audit records (mean $((bytes / records)) B, chain verified)."
echo
# The target is set for 100 steps.
python3 "$ROOT/bench/report.py" ratio "$json" "$([[ $steps == 100 ]] && echo 1.5 || echo -)"
echo
python3 - "$json" "$json1" "$steps" <<'PY'
import json, sys
big = json.load(open(sys.argv[1]))["results"]
one = json.load(open(sys.argv[2]))["results"]
n = int(sys.argv[3])
fixed = one[0]["mean"] - one[1]["mean"]
rel = (big[0]["mean"] - one[0]["mean"]) / (n - 1)
flo = (big[1]["mean"] - one[1]["mean"]) / (n - 1)
print(f"| split (from the 1-step and the {n}-step runs) | release | floor | release − floor |")
print("|---|---|---|---|")
print(f"| 1 step, whole process | {one[0]['mean'] * 1e3:.1f} ms ± {one[0]['stddev'] * 1e3:.1f} | "
      f"{one[1]['mean'] * 1e3:.1f} ms ± {one[1]['stddev'] * 1e3:.1f} | {fixed * 1e3:+.1f} ms |")
print(f"| each further step | {rel * 1e3:.2f} ms | {flo * 1e3:.2f} ms | {(rel - flo) * 1e3:+.2f} ms ({rel / flo:.2f}×) |")
PY
