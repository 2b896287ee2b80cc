# Shared by the bench/*.sh scripts (sourced, not run). Leaves the caller at the
# repository root with: $BIN (the release binary), $BENCH_BIN (target/bench/),
# $SANDBOX (a fresh temp dir, removed on exit), and the helpers below.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=$ROOT/target/release/release
BENCH_BIN=$ROOT/target/bench
mkdir -p "$BENCH_BIN"

need() {
  command -v "$1" >/dev/null || { echo "bench: $1 is needed (${2:-apt-get install -y $1})" >&2; exit 1; }
}
need hyperfine
need python3
need rustc "a Rust toolchain"

# The release binary, built as a user would (once per script; a no-op when up to date).
build_release() {
  cargo build --release --locked --quiet
}

# compile_floor NAME: bench/floor/NAME.rs -> target/bench/NAME (std only, rustc -O).
compile_floor() {
  local src=$ROOT/bench/floor/$1.rs out=$BENCH_BIN/$1
  if [[ ! -x $out || $src -nt $out ]]; then
    rustc -O --edition 2021 "$src" -o "$out"
  fi
}

# compile_against_release NAME CRATE…: bench/NAME.rs -> target/bench/NAME, linked against
# the library `cargo build --release` built (target/release/librelease.rlib) and the rlibs
# of the CRATEs it was built with (cargo says where they are), so that a bench program
# calls release's own code in one process. Rebuilt when the source or the library changed.
compile_against_release() {
  local src=$ROOT/bench/$1.rs out=$BENCH_BIN/$1
  shift
  local externs
  mapfile -t externs < <(
    cargo build --release --locked --message-format=json 2>/dev/null | python3 -c '
import json, sys
wanted = set(sys.argv[1:])
found = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "lib" in m["target"]["kind"]:
        rlibs = [f for f in m["filenames"] if f.endswith(".rlib")]
        name = m["target"]["name"]
        if rlibs and name in wanted:
            found[name] = rlibs[0]
missing = wanted - found.keys()
if missing:
    sys.exit(f"bench: cargo built no rlib for {sorted(missing)}")
for name, path in sorted(found.items()):
    print(f"--extern={name}={path}")
' release "$@"
  )
  [[ ${#externs[@]} -gt 0 ]] || { echo "bench: cannot find the rlibs to link $src against" >&2; exit 1; }
  local input stale=0
  [[ -x $out ]] || stale=1
  for input in "$src" "${externs[@]##*=}"; do
    [[ $input -nt $out ]] && stale=1
  done
  if ((stale)); then
    rustc -O --edition 2024 "$src" -o "$out" "${externs[@]}" -L dependency="$ROOT/target/release/deps"
  fi
}

# The sandbox lives in $BENCH_TMPDIR (default $TMPDIR or /tmp). fdatasync costs nothing
# on tmpfs, so say so if that is where it is.
SANDBOX=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/release-bench.XXXXXX")
cleanup() { rm -rf "$SANDBOX"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
SANDBOX_FS=$(df --output=fstype "$SANDBOX" | tail -1)
if [[ $SANDBOX_FS == tmpfs || $SANDBOX_FS == ramfs ]]; then
  echo "bench: warning: $SANDBOX is on $SANDBOX_FS, where fdatasync is free; set BENCH_TMPDIR to a disk-backed folder for figures that mean something" >&2
fi

# new_project DIR: `release init` in DIR (components player_experience and orchestration).
new_project() {
  mkdir -p "$1"
  "$BIN" -C "$1" -q init >/dev/null
}

# chain_runbook FILE N: N steps `run: ["true"]`, each needing the one above (the default).
chain_runbook() {
  python3 - "$1" "$2" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
lines = ["name: chain", "description: each step needs the one above", "steps:"]
lines += [f"  - id: s{i:04d}\n    run: [\"true\"]" for i in range(n)]
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

# fan_runbook FILE N SECONDS: N independent steps (`needs: []`) of `sleep SECONDS`.
fan_runbook() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
path, n, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = ["name: fan", "description: independent sleeps", "steps:"]
lines += [f"  - id: s{i:04d}\n    needs: []\n    run: [sleep, \"{secs}\"]" for i in range(n)]
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

# machine_line: what the figures were measured on.
machine_line() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    rev="$rev + uncommitted changes in src/Cargo"
  fi
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $rev, nproc $(nproc), ${cpu:-unknown CPU}, load $(cut -d' ' -f1-3 /proc/loadavg), sandbox on $SANDBOX_FS ($(df -P "$SANDBOX" | awk 'NR==2 {print $1}')), $("$BIN" --version), $(hyperfine --version)"
}
