#!/usr/bin/env python3
"""Writes a valid hash-chained audit log of N records, like `release run` writes.

usage: bench/gen_audit.py N OUT
       bench/gen_audit.py --components C N OUT

Each line is a JSON object with the fields in the order `release` writes them
(v, seq, ts, run, kind, actor, component, stage, data, prev), serialised with
json.dumps(separators=(",", ":")) and ASCII-only content, so its bytes are what
serde_json writes; `data` keys are sorted, as serde_json's default map sorts them.
`prev` is the lowercase hex SHA-256 of the previous line's bytes (without the
newline), 64 zeros for the first. Records come in runs of 100 steps: run.started,
then step.started/step.finished pairs, then run.finished (~250-300 bytes a line).
Prints the record count and the mean line length.

With --components C: the history of C components named svc-000, svc-001, ... over
about a year, as a team's log would hold it (`release status` and `release gates`
read it; bench/status.sh). Mostly runs of 10 to 40 steps (plain runs, promote
runbooks, rollback dry-runs, a few real rollbacks), and between them gate evaluations,
attestations, approvals, promotions (always to the component's next stage: a third of
the components stay in development, a third stop at staging, the rest reach
production), refused promotions, a few forced locks and, near the end, deprecations of
one component in 50. Deterministic (seeded).
"""
import datetime
import hashlib
import json
import random
import sys


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--components":
        mixed(int(args[1]), int(args[2]), args[3])
        return
    if len(args) != 2:
        sys.exit(__doc__)
    n = int(args[0])
    out = args[1]
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


STAGES = ("development", "staging", "production")
ACTORS = tuple(f"{name}@example.com" for name in ("alice", "bob", "carol", "dave", "erin", "frank"))
CHECKS = ("code-review", "security-review", "monitoring", "runbook")


def sorted_deep(value):
    """Objects with their keys sorted, as serde_json writes a `Value`."""
    if isinstance(value, dict):
        return {k: sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_deep(v) for v in value]
    return value


def mixed(components: int, n: int, out: str) -> None:
    """The --components mode: see the module's doc."""
    rng = random.Random(20260105)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, sort_keys=False).encode
    sha = hashlib.sha256
    names = [f"svc-{i:03d}" for i in range(components)]
    stage = {c: 0 for c in names}
    deprecated = set()
    state = {"prev": "0" * 64, "seq": 0, "total": 0, "runs": 0}
    t = datetime.datetime(2025, 1, 6, 9, 0, 0, tzinfo=datetime.timezone.utc)
    # About a year: a run is 70 % of events and ~52 records, so ~37 records an event.
    gap_s = 365 * 86400 / max(n / 37, 1)
    # Where each component stops: one in three stays in development, one in three in
    # staging, the rest reach production.
    cap = {c: i % 3 for i, c in enumerate(names)}
    f = open(out, "wb", buffering=1 << 20)

    def ts(at: datetime.datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def run_id(at: datetime.datetime) -> str:
        state["runs"] += 1
        return at.strftime("r%Y%m%dT%H%M%SZ-") + format(state["runs"] * 2654435761 % 0xFFFFFF, "06x")

    def write(at, run, kind, actor, component, stg, data) -> None:
        state["seq"] += 1
        record = {"v": 1, "seq": state["seq"], "ts": ts(at), "run": run, "kind": kind,
                  "actor": actor, "component": component, "stage": stg,
                  "data": sorted_deep(data), "prev": state["prev"]}
        line = dumps(record).encode()
        state["prev"] = sha(line).hexdigest()
        f.write(line)
        f.write(b"\n")
        state["total"] += len(line) + 1

    def a_run(at, component, actor) -> None:
        roll = rng.random()
        if roll < 0.15:
            purpose, dry, stg = "rollback", True, STAGES[min(stage[component] + 1, 2)]
        elif roll < 0.18:
            purpose, dry, stg = "rollback", False, STAGES[stage[component]]
        elif roll < 0.23:
            purpose, dry, stg = "promote", False, STAGES[stage[component]]
        else:
            purpose, dry, stg = "run", rng.random() < 0.3, STAGES[stage[component]]
        book = "rollback" if purpose == "rollback" else "promote" if purpose == "promote" else "deploy"
        runbook = f"runbooks/{stg}/{book}.yaml"
        run = run_id(at)
        write(at, run, "run.started", actor, component, stg,
              {"command": ["release", purpose, component], "dry_run": dry, "params": {},
               "purpose": purpose, "reason": "5xx spike" if purpose == "rollback" and not dry else None,
               "runbook": runbook, "runbook_sha256": sha(runbook.encode()).hexdigest()})
        steps = rng.randint(10, 40)
        failed = rng.random() < 0.05
        for s in range(steps):
            if state["seq"] >= n - 1:
                break
            at += datetime.timedelta(milliseconds=rng.randint(2, 900))
            write(at, run, "step.started", actor, component, stg, {"step": f"step-{s:02d}"})
            at += datetime.timedelta(milliseconds=rng.randint(2, 2000))
            data = {"attempts": 1, "duration_ms": rng.randint(2, 2000), "error": None,
                    "outcome": "failed" if failed and s == steps - 1 else "succeeded",
                    "step": f"step-{s:02d}"}
            if dry:
                data.update({"fidelity": "checked", "preflight": "ok", "verdict": "ready"})
            write(at, run, "step.finished", actor, component, stg, data)
        if state["seq"] < n:
            write(at, run, "run.finished", actor, component, stg,
                  {"error": None, "outcome": "failed" if failed else "succeeded"})

    def gates(at, component, actor, kind="gates.evaluated") -> None:
        here = stage[component]
        target = STAGES[min(here + 1, 2)]
        rules = [{"evidence": {}, "id": rid, "kind": "rule", "passed": True, "summary": f"{rid} holds",
                  "duration_ms": 0} for rid in ("not-deprecated", "next-stage", "dependencies")]
        gate_list = []
        for gid, gkind in (("stable", "stable_for"), ("security-review", "attested"),
                           ("approvals", "approvals"), ("freeze", "freeze")):
            ok = rng.random() < 0.7
            gate_list.append({"duration_ms": 0, "evidence": {"measured": rng.randint(0, 100)},
                              "id": gid, "kind": gkind, "passed": ok,
                              "summary": "ok" if ok else "not yet"})
        passed = all(g["passed"] for g in gate_list)
        if kind == "promotion.refused":
            reasons = [f"{g['id']}: {g['summary']}" for g in gate_list if not g["passed"]] or ["freeze: frozen"]
            write(at, run_id(at), kind, actor, component, target,
                  {"from": STAGES[here], "reasons": reasons, "to": target})
            return
        write(at, run_id(at), kind, actor, component, target,
              {"dry_run": False, "from": STAGES[here], "gates": gate_list, "passed": passed,
               "rules": rules, "target": target})

    while state["seq"] < n:
        t += datetime.timedelta(seconds=rng.expovariate(1 / gap_s))
        component = rng.choice(names)
        actor = rng.choice(ACTORS)
        roll = rng.random()
        if not deprecated and state["seq"] > n * 0.95:
            # Near the end, one component in 50 is deprecated.
            for c in names[7::50]:
                deprecated.add(c)
                write(t, run_id(t), "component.deprecated", actor, c, STAGES[stage[c]],
                      {"reason": "replaced by a newer service"})
            continue
        if roll < 0.70 or component in deprecated:
            a_run(t, component, actor)
        elif roll < 0.80:
            gates(t, component, actor)
        elif roll < 0.85:
            write(t, run_id(t), "attestation.recorded", actor, component, STAGES[stage[component]],
                  {"check": rng.choice(CHECKS), "note": "looked at it"})
        elif roll < 0.91:
            target = STAGES[min(stage[component] + 1, 2)]
            write(t, run_id(t), "approval.recorded", actor, component, target,
                  {"note": None, "to": target})
        elif roll < 0.96:
            if stage[component] < cap[component]:
                stage[component] += 1
                write(t, run_id(t), "promotion.completed", actor, component, STAGES[stage[component]],
                      {"commit": sha(t.isoformat().encode()).hexdigest()[:40],
                       "from": STAGES[stage[component] - 1], "reason": None,
                       "to": STAGES[stage[component]]})
            else:
                gates(t, component, actor)
        elif roll < 0.99:
            gates(t, component, actor, "promotion.refused")
        else:
            write(t, run_id(t), "lock.forced", actor, component, STAGES[stage[component]],
                  {"holder": {"run": "r-gone", "pid": 4242, "host": "ci-7", "actor": actor,
                              "started_at": ts(t)},
                   "reason": "holder process 4242 is gone"})
    f.close()
    seq, total = state["seq"], state["total"]
    print(f"records={seq} bytes={total} mean_line_bytes={total / max(seq, 1):.0f}")


if __name__ == "__main__":
    main()
