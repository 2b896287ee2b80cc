#!/usr/bin/env bash
# The audit log.
#
# 1. Appends per second, each durable (fdatasync), through the real code against a floor.
#    Real: bench/audit_append.rs calls release's own `AuditLog::append` N times in one
#    process (linked against target/release/librelease.rlib; no change to the crate), so
#    the figure is the append alone: no process start-up, no /bin/true to subtract.
#    Floor: bench/floor/append_loop.rs, write + fdatasync of lines of the same length.
#    Rounds alternate real and floor (the disk's fdatasync latency drifts); the medians
#    are compared. Target: real ≥ 0.8× the floor.
#    Cross-check, end to end: a 1000-step chain of `true` with --max-parallel 1 writes
#    2002 records; (its time − the time of 1000 bare spawns of /bin/true) / 2002 bounds
#    the cost of a record from above (it also carries start-up and per-step engine work).
# 2. `release audit verify` of generated, valid logs of 100 k and 1 M records
#    (bench/gen_audit.py): time (hyperfine) and peak RSS (/usr/bin/time -v).
#    Targets: 1 M records in < 1.5 s, peak RSS < 50 MB, flat from 100 k to 1 M.
#
# usage: bench/audit.sh [ROUNDS=5] [N=5000]       (from the repository root)
source "$(dirname "$0")/lib.sh"
[[ -x /usr/bin/time ]] || { echo "bench: /usr/bin/time is needed: apt-get install -y time" >&2; exit 1; }
rounds=${1:-5}
n=${2:-5000}

build_release
compile_floor append_loop
compile_floor spawn_append

# The real-path program, linked against the library cargo just built.
compile_against_release audit_append serde_json
real_bin=$BENCH_BIN/audit_append

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# --- 1. appends -------------------------------------------------------------------------
echo "appends: a warm-up, then $rounds rounds of $n real then $n floor appends" >&2
"$real_bin" "$SANDBOX/real.jsonl" 500 >/dev/null
"$BENCH_BIN/append_loop" "$SANDBOX/floor.jsonl" 500 >/dev/null
real_rates=() floor_rates=() real_us=() floor_us=()
for ((r = 1; r <= rounds; r++)); do
  rm -f "$SANDBOX/real.jsonl" "$SANDBOX/floor.jsonl"
  out=$("$real_bin" "$SANDBOX/real.jsonl" "$n")
  echo "  round $r real:  $out" >&2
  line_bytes=$(field mean_line_bytes "$out")
  real_rates+=("$(field appends_per_s "$out")") real_us+=("$(field us_per_append "$out")")
  out=$("$BENCH_BIN/append_loop" "$SANDBOX/floor.jsonl" "$n" "$line_bytes")
  echo "  round $r floor: $out" >&2
  floor_rates+=("$(field appends_per_s "$out")") floor_us+=("$(field us_per_append "$out")")
done
# The chain the real program wrote must verify.
project=$SANDBOX/appends
new_project "$project"
mkdir -p "$project/.release" && mv "$SANDBOX/real.jsonl" "$project/.release/audit.jsonl"
"$BIN" -C "$project" -q audit verify >/dev/null

# Syscalls per append (strace -c -f over 1000 appends), if strace is here.
syscalls=""
if command -v strace >/dev/null; then
  rm -f "$SANDBOX/strace.jsonl"
  syscalls=$(strace -f -c -o "$SANDBOX/strace.txt" "$real_bin" "$SANDBOX/strace.jsonl" 1000 >/dev/null 2>&1 &&
    awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 >= 500 && $NF != "total" {
           printf "%s%s × %.0f", sep, $NF, $4 / 1000; sep = ", " }' "$SANDBOX/strace.txt")
fi

# End-to-end cross-check.
steps=1000
chain_runbook "$project/chain.yaml" "$steps"
log=$project/.release/audit.jsonl
e2e_json=$SANDBOX/e2e.json
hyperfine -N --style basic --warmup 1 --runs 5 \
  --prepare "rm -f $log $SANDBOX/spawn.jsonl" \
  --export-json "$e2e_json" \
  --command-name "release run chain.yaml ($steps steps, --max-parallel 1)" \
  "$BIN -C $project run chain.yaml --component player_experience --stage production --no-progress --max-parallel 1" \
  --command-name "spawn_append: $steps × /bin/true, no appends" \
  "$BENCH_BIN/spawn_append $SANDBOX/spawn.jsonl $steps 0" >&2

# --- 2. verify --------------------------------------------------------------------------
verify_json=$SANDBOX/verify.json
declare -A rss gen
for records in 100000 1000000; do
  p=$SANDBOX/verify-$records
  new_project "$p"
  mkdir -p "$p/.release"
  echo "generating $records records" >&2
  gen[$records]=$(python3 "$ROOT/bench/gen_audit.py" "$records" "$p/.release/audit.jsonl")
  "$BIN" -C "$p" audit verify >/dev/null   # valid, and the file is in the page cache
  if [[ $records == 100000 ]]; then
    # serde_json re-serialises every record to the very same bytes as the generator.
    "$BIN" -C "$p" audit log --json | cmp -s - "$p/.release/audit.jsonl" ||
      { echo "bench: gen_audit.py lines differ from what serde_json writes" >&2; exit 1; }
  fi
  /usr/bin/time -v -o "$SANDBOX/time-$records.txt" "$BIN" -C "$p" audit verify >/dev/null
  rss[$records]=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$SANDBOX/time-$records.txt")
done
hyperfine -N --style basic --warmup 1 --runs 10 \
  --export-json "$verify_json" \
  --command-name "release audit verify (100 k records)" "$BIN -C $SANDBOX/verify-100000 audit verify" \
  --command-name "release audit verify (1 M records)" "$BIN -C $SANDBOX/verify-1000000 audit verify" \
  --command-name "floor: wc -l of the 1 M log (reading its bytes once)" "wc -l $SANDBOX/verify-1000000/.release/audit.jsonl" >&2

# --- results ----------------------------------------------------------------------------
echo
echo "### Audit log"
echo
echo "$(machine_line)"
echo
echo "Command: \`bench/audit.sh $rounds $n\`."
echo
python3 - "$rounds" "$n" "${real_rates[*]}" "${floor_rates[*]}" "${real_us[*]}" "${floor_us[*]}" \
  "$line_bytes" "$syscalls" "$e2e_json" "$steps" "$verify_json" \
  "${rss[100000]}" "${rss[1000000]}" "${gen[100000]}" "${gen[1000000]}" <<'PY'
import json, statistics, sys
(rounds, n, real, floor, real_us, floor_us, line_bytes, syscalls, e2e, steps, verify,
 rss100k, rss1m, gen100k, gen1m) = sys.argv[1:]
f = lambda s: [float(x) for x in s.split()]
real, floor, real_us, floor_us = f(real), f(floor), f(real_us), f(floor_us)
rm, fm = statistics.median(real), statistics.median(floor)
q = rm / fm
ok = "met" if q >= 0.8 else f"MISSED by {(1 - q / 0.8) * 100:.0f} %"
print(f"#### Appends, each followed by fdatasync ({n} a round, {rounds} rounds, lines of {line_bytes} B)")
print()
print("| path | appends/s (median) | per append (median) | rounds (appends/s) | ratio to the floor | target | |")
print("|---|---|---|---|---|---|---|")
print(f"| `AuditLog::append` (bench/audit_append.rs) | {rm:,.0f} | {statistics.median(real_us):.0f} µs | "
      f"{', '.join(f'{x:,.0f}' for x in real)} | {q:.2f}× | ≥ 0.8× | {ok} |")
print(f"| floor: write + fdatasync (bench/floor/append_loop.rs) | {fm:,.0f} | {statistics.median(floor_us):.0f} µs | "
      f"{', '.join(f'{x:,.0f}' for x in floor)} | 1.00× | | |")
print()
if syscalls:
    print(f"Syscalls per `AuditLog::append` (strace -c -f, 1000 appends): {syscalls}.")
    print()
res = json.load(open(e2e))["results"]
run, spawn = res[0], res[1]
records = 2 * int(steps) + 2
per = (run["mean"] - spawn["mean"]) / records
print(f"End-to-end cross-check: `release run` of {steps} steps with --max-parallel 1 took "
      f"{run['mean']:.3f} s ± {run['stddev']:.3f}; {steps} bare spawns of /bin/true took "
      f"{spawn['mean']:.3f} s ± {spawn['stddev']:.3f}; so each of its {records} records cost at most "
      f"{per * 1e6:.0f} µs (≥ {1 / per:,.0f} records/s), start-up and per-step engine work included.")
print()
res = json.load(open(verify))["results"]
print("#### `release audit verify` (generated valid logs, file in the page cache; "
      "`release audit log --json` re-serialises the 100 k log byte for byte)")
print()
floor = res[2]
print("| log | mean ± σ | min | per record | peak RSS | floor: `wc -l` of the 1 M log (ratio) | target | |")
print("|---|---|---|---|---|---|---|---|")
for r, recs, rss, gen, tgt in ((res[0], 100_000, rss100k, gen100k, False), (res[1], 1_000_000, rss1m, gen1m, True)):
    mb = int(rss) / 1024
    size = dict(kv.split("=") for kv in gen.split())
    label = f"{recs:,} records, {int(size['bytes']) / 1e6:.0f} MB (mean line {size['mean_line_bytes']} B)"
    if tgt:
        t_ok = r["mean"] < 1.5
        m_ok = mb < 50
        target = "< 1.5 s, RSS < 50 MB"
        ok = "met" if t_ok and m_ok else "MISSED: " + ", ".join(
            ([] if t_ok else [f"time by {(r['mean'] / 1.5 - 1) * 100:.0f} %"]) +
            ([] if m_ok else [f"RSS by {(mb / 50 - 1) * 100:.0f} %"]))
    else:
        target, ok = "", ""
    ref = f"{floor['mean'] * 1000:.0f} ms ± {floor['stddev'] * 1000:.0f} ({r['mean'] / floor['mean']:.2f}×)" if tgt else ""
    print(f"| {label} | {r['mean'] * 1000:.0f} ms ± {r['stddev'] * 1000:.0f} | {r['min'] * 1000:.0f} ms | "
          f"{r['mean'] / recs * 1e9:.0f} ns | {mb:.1f} MB | {ref} | {target} | {ok} |")
print()
print(f"Peak RSS from 100 k to 1 M records: {int(rss100k) / 1024:.1f} MB → {int(rss1m) / 1024:.1f} MB "
      f"({(int(rss1m) / int(rss100k) - 1) * 100:+.1f} %).")
PY
