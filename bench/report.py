#!/usr/bin/env python3
"""Markdown tables from hyperfine's --export-json, for the bench/*.sh scripts.

usage: bench/report.py ratio JSON TARGET_RATIO        first command vs the last (the floor); - for no target
       bench/report.py budget JSON LIMIT_MS...       each command's mean vs its limit (- for none), in order
"""
import json
import math
import sys


def load(path):
    with open(path) as f:
        return json.load(f)["results"]


def ms(x):
    return f"{x * 1000:.1f} ms"


def mean_sd(r):
    return f"{ms(r['mean'])} ± {r['stddev'] * 1000:.1f}"


def ratio(path, target):
    results = load(path)
    floor = results[-1]
    target = None if target in ("", "-") else float(target)
    print("| command | mean ± σ | median | min | runs | floor (mean) | ratio of means | ratio of medians | target | |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results[:-1]:
        q = r["mean"] / floor["mean"]
        # σ of the ratio, first-order propagation of both σ.
        sq = q * math.hypot(r["stddev"] / r["mean"], floor["stddev"] / floor["mean"])
        if target is None:
            ok, shown = "", "(none)"
        else:
            ok = "met" if q <= target else f"MISSED by {(q / target - 1) * 100:.0f} %"
            shown = f"≤ {target:g}×"
        print(f"| `{r['command']}` | {mean_sd(r)} | {ms(r['median'])} | {ms(r['min'])} | "
              f"{len(r['times'])} | {ms(floor['mean'])} | {q:.2f}× ± {sq:.2f} | "
              f"{r['median'] / floor['median']:.2f}× | {shown} | {ok} |")
    print(f"| `{floor['command']}` (floor) | {mean_sd(floor)} | {ms(floor['median'])} | "
          f"{ms(floor['min'])} | {len(floor['times'])} | | 1.00× | 1.00× | | |")


def budget(path, limits):
    results = load(path)
    print("| command | mean ± σ | median | max | runs | target | |")
    print("|---|---|---|---|---|---|---|")
    for r, limit in zip(results, limits):
        if limit in ("", "-"):
            target, ok = "", ""
        else:
            lim = float(limit) / 1000
            target = f"< {float(limit):g} ms"
            ok = "met" if r["mean"] < lim else f"MISSED by {(r['mean'] / lim - 1) * 100:.0f} %"
        print(f"| `{r['command']}` | {mean_sd(r)} | {ms(r['median'])} | {ms(r['max'])} | "
              f"{len(r['times'])} | {target} | {ok} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "ratio":
        ratio(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "budget":
        budget(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
