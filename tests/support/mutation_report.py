"""The readable end of ``make mutation``: per core module, how many mutants mutmut made, how many
the fast tests killed, and which survived (``mutmut show NAME`` prints one's diff).

Reads mutmut's per-file results (``mutants/<path>.meta``, JSON) so it needs no mutmut import;
run from the checkout: ``python -m tests.support.mutation_report [--survivors]``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 37, 24, -24, 152, 255}  # test failure, pytest error, timeout, type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def summarise(root: Path = Path("mutants")) -> list[tuple[str, Counter[str], list[str]]]:
    rows = []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        counts: Counter[str] = Counter()
        survivors = []
        for name, code in sorted(codes.items()):
            if code is None:
                counts["not run"] += 1
            elif code in KILLED:
                counts["killed"] += 1
            elif code in SURVIVED:
                counts["survived"] += 1
                survivors.append(name)
            elif code in NO_TESTS:
                counts["no tests"] += 1
                survivors.append(name)
            else:
                counts["other"] += 1
        counts["mutants"] = len(codes)
        rows.append((str(meta.relative_to(root))[: -len(".meta")], counts, survivors))
    return rows


def main(argv: list[str]) -> int:
    rows = summarise()
    if not rows:
        print("no mutation results under mutants/: run `make mutation` first")
        return 1
    columns = ("mutants", "killed", "survived", "no tests", "not run", "score")
    header = f"{'module':42} " + " ".join(f"{name:>{max(len(name), 6)}}" for name in columns)
    print(header)
    print("-" * len(header))
    for path, c, _ in rows:
        run = c["killed"] + c["survived"] + c["no tests"]
        score = f"{100 * c['killed'] / run:.0f}%" if run else "-"
        print(
            f"{path:42} {c['mutants']:7} {c['killed']:6} {c['survived']:8} {c['no tests']:8}"
            f" {c['not run']:7} {score:>6}"
        )
    if "--survivors" in argv:
        for path, _, survivors in rows:
            for name in survivors:
                print(f"survived  {path}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
