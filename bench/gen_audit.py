#!/usr/bin/env python3
"""Writes a valid hash-chained audit log of N records, like `release run` writes.

usage: bench/gen_audit.py N OUT

Each line is a JSON object with the fields in the order `release` writes them
(v, seq, ts, run, kind, actor, component, stage, data, prev), serialised with
json.dumps(separators=(",", ":")) and ASCII-only content, so its bytes are what
serde_json writes; `data` keys are sorted, as serde_json's default map sorts them.
`prev` is the lowercase hex SHA-256 of the previous line's bytes (without the
newline), 64 zeros for the first. Records come in runs of 100 steps: run.started,
then step.started/step.finished pairs, then run.finished (~250-300 bytes a line).
Prints the record count and the mean line length.
"""
import datetime
import hashlib
import json
import sys


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n = int(sys.argv[1])
    out = sys.argv[2]
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
    sha = hashlib.sha256
    prev = "0" * 64
    start = datetime.datetime(2026, 1, 5, 9, 0, 0, tzinfo=datetime.timezone.utc)
    components = ("player_experience", "orchestration")
    total = 0
    seq = 0
    run_no = 0
    steps_per_run = 100
    # One run = 1 + 2*steps + 1 records.
    with open(out, "wb", buffering=1 << 20) as f:
        while seq < n:
            run_no += 1
            t0 = start + datetime.timedelta(minutes=run_no)
            run_id = t0.strftime("r%Y%m%dT%H%M%SZ-") + format(run_no * 2654435761 % 0xFFFFFF, "06x")
            component = components[run_no % 2]
            kinds = [("run.started", None)]
            for s in range(steps_per_run):
                kinds.append(("step.started", s))
                kinds.append(("step.finished", s))
            kinds.append(("run.finished", None))
            for i, (kind, step) in enumerate(kinds):
                if seq >= n:
                    break
                seq += 1
                ts = (t0 + datetime.timedelta(milliseconds=3 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                if kind == "run.started":
                    data = {"dry_run": False, "params": {}, "purpose": "run", "reason": None,
                            "runbook": "runbooks/production/chain.yaml",
                            "runbook_sha256": sha(run_id.encode()).hexdigest()}
                elif kind == "step.started":
                    data = {"step": f"step-{step:03d}"}
                elif kind == "step.finished":
                    data = {"attempts": 1, "duration_ms": 3 + step % 7, "error": None,
                            "outcome": "succeeded", "step": f"step-{step:03d}"}
                else:
                    data = {"error": None, "outcome": "succeeded"}
                record = {"v": 1, "seq": seq, "ts": ts, "run": run_id, "kind": kind,
                          "actor": "alice@example.com", "component": component,
                          "stage": "production", "data": data, "prev": prev}
                line = dumps(record).encode()
                prev = sha(line).hexdigest()
                f.write(line)
                f.write(b"\n")
                total += len(line) + 1
    print(f"records={seq} bytes={total} mean_line_bytes={total / max(seq, 1):.0f}")


if __name__ == "__main__":
    main()
