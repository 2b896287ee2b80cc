#!/usr/bin/env python3
"""Writes a `git fast-import` stream for the git_revert benchmark: one branch `main` of
COMMITS commits over FILES files (100 folders), deterministic (seeded).

- The first commit adds every file (24 lines each).
- Every later commit changes one line in 1 to 3 files.
- At COMMITS - 100, one commit changes 10 files that no later commit touches: tagged
  `bench-ten` (reverting it alone is clean).
- The last 50 commits form the range `bench-range-from..bench-range-to` (reverting it
  newest first is clean).

usage: gen_repo.py [COMMITS=20000] [FILES=5000] | git fast-import --quiet
"""

import random
import sys

COMMITS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
FILES = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
DIRS = 100
LINES = 24
TEN_AT = COMMITS - 100
RANGE = 50

rng = random.Random(20240601)
out = sys.stdout.buffer


def path(i):
    return f"d{i % DIRS:03d}/f{i // DIRS:04d}.txt"


contents = [[f"file {i} line {n}: {rng.getrandbits(64):016x}" for n in range(LINES)] for i in range(FILES)]
ten = set(rng.sample(range(FILES), 10))
mark = 0


def blob_cmd(i):
    data = ("\n".join(contents[i]) + "\n").encode()
    return b"M 100644 inline %s\ndata %d\n%s\n" % (path(i).encode(), len(data), data)


def commit(message, files, when):
    global mark
    mark += 1
    msg = message.encode()
    parts = [
        b"commit refs/heads/main\n",
        b"mark :%d\n" % mark,
        b"author Bench <bench@example.com> %d +0000\n" % when,
        b"committer Bench <bench@example.com> %d +0000\n" % when,
        b"data %d\n%s\n" % (len(msg), msg),
    ]
    if mark > 1:
        parts.append(b"from :%d\n" % (mark - 1))
    parts.extend(blob_cmd(i) for i in files)
    parts.append(b"\n")
    out.write(b"".join(parts))
    return mark


start = 1_700_000_000
commit("initial import", range(FILES), start)
for n in range(1, COMMITS):
    if n == TEN_AT:
        files = sorted(ten)
        message = "change ten files"
    else:
        pool_size = rng.randint(1, 3)
        files = set()
        while len(files) < pool_size:
            i = rng.randrange(FILES)
            if n < TEN_AT or i not in ten:
                files.add(i)
        files = sorted(files)
        message = f"change {n}: " + ", ".join(path(i) for i in files)
    for i in files:
        contents[i][rng.randrange(LINES)] = f"edit {n}: {rng.getrandbits(64):016x}"
    m = commit(message, files, start + n * 60)
    if n == TEN_AT:
        out.write(b"reset refs/tags/bench-ten\nfrom :%d\n\n" % m)
    if n == COMMITS - 1 - RANGE:
        out.write(b"reset refs/tags/bench-range-from\nfrom :%d\n\n" % m)
out.write(b"reset refs/tags/bench-range-to\nfrom :%d\n\n" % mark)
