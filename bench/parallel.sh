#!/usr/bin/env bash
# Parallel dispatch: 40 independent steps (`needs: []`) of `run: [sleep, "0.2"]` with
# `--max-parallel 8`, a real audited run. Ideal wall time: 40 / 8 × 0.2 s = 1.0 s.
# For reference (not the target), the same 40 sleeps through `xargs -P 8`.
# Target: within 10 % of the ideal (≤ 1.10 s).
#
# usage: bench/parallel.sh [RUNS=10]       (from the repository root)
source "$(dirname "$0")/lib.sh"
runs=${1:-10}
steps=40 width=8 secs=0.2

build_release

project=$SANDBOX/project
new_project "$project"
fan_runbook "$project/fan.yaml" "$steps" "$secs"
"$BIN" -C "$project" -q runbook validate fan.yaml >/dev/null

log=$project/.release/audit.jsonl
json=$SANDBOX/parallel.json
hyperfine -N --style basic --warmup 1 --runs "$runs" \
  --prepare "rm -f $log" \
  --export-json "$json" \
  --command-name "release run fan.yaml --max-parallel $width ($steps × sleep $secs)" \
  "$BIN -C $project run fan.yaml --component player_experience --stage production --no-progress --max-parallel $width" \
  --command-name "reference: xargs -P $width ($steps × sleep $secs)" \
  "bash -c 'for i in \$(seq $steps); do echo $secs; done | xargs -P $width -n 1 sleep'" >&2

rm -f "$log"
"$BIN" -C "$project" run fan.yaml --component player_experience --stage production --no-progress --max-parallel "$width" >/dev/null 2>&1
records=$(wc -l <"$log")
"$BIN" -C "$project" -q audit verify >/dev/null

echo
echo "### Parallel dispatch: $steps independent steps of \`sleep $secs\`, --max-parallel $width"
echo
echo "$(machine_line)"
echo
echo "Command: \`bench/parallel.sh $runs\`; each run appended $records audit records (chain verified). Ideal: $steps / $width × $secs s."
echo
python3 - "$json" "$steps" "$width" "$secs" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
steps, width, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ideal = -(-steps // width) * secs
print("| command | mean ± σ | min | max | runs | ideal | over the ideal | target | |")
print("|---|---|---|---|---|---|---|---|---|")
for k, r in enumerate(results):
    over = r["mean"] / ideal - 1
    if k == 0:
        target = "≤ +10 %"
        ok = "met" if over <= 0.10 else f"MISSED by {(over - 0.10) * 100:.1f} points"
    else:
        target, ok = "(reference)", ""
    print(f"| `{r['command']}` | {r['mean']:.3f} s ± {r['stddev']:.3f} | {r['min']:.3f} s | "
          f"{r['max']:.3f} s | {len(r['times'])} | {ideal:.3f} s | {over * 100:+.1f} % | {target} | {ok} |")
PY
