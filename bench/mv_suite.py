#!/usr/bin/env python3
"""Writes the equivalence suite: math_verify 0.8.0's verdict on each pair of
`mv_cases.py`, called as SeRL's majority reward calls it (gold=ref then
gold=pred, either direction passing; an exception means "not equal").

Optional and outside CI (the suite it writes is committed as
serl-core/tests/fixtures/mv_suite.jsonl): creates bench/.venv-mv with
math-verify 0.8.0 from PyPI on first use, or uses $PYTHON.

    python3 bench/mv_suite.py            # rewrite the fixture
"""
import json
import os
import subprocess
import sys

from pyenv import python_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "bench", ".venv-mv")
PACKAGES = ["math-verify==0.8.0", "rouge-score==0.1.2"]
OUT = os.path.join(ROOT, "serl-core", "tests", "fixtures", "mv_suite.jsonl")

# Categories whose texts are whole responses: not wrapped in a boxed sentence.
WHOLE = {"boxed_twice", "many_boxed_long", "plain_text_answers"}

PY_SIDE = r'''
import json, sys, logging
logging.disable(logging.CRITICAL)
import math_verify
from math_verify import parse, verify
pairs = json.load(sys.stdin)
out = []
for pred, ref in pairs:
    try:
        g = parse(ref)
        t = parse(pred)
        eq = bool(verify(g, t) or verify(t, g))
    except Exception:
        eq = False
    out.append(eq)
print(json.dumps({"version": math_verify.__version__ if hasattr(math_verify, "__version__") else "", "equal": out}))
'''


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mv_cases import CASES

    rows = []
    for cat, pairs in CASES.items():
        for pred, ref in pairs:
            rows.append((cat, pred, ref))
            if cat not in WHOLE:
                box = "The final answer is $\\boxed{%s}$."
                rows.append((cat + "/boxed", box % pred, box % ref))
    py = python_env(VENV, PACKAGES)
    res = subprocess.run(
        [py, "-c", PY_SIDE],
        input=json.dumps([[p, r] for _, p, r in rows]),
        capture_output=True,
        text=True,
        check=True,
    )
    verdicts = json.loads(res.stdout)["equal"]
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        for (cat, pred, ref), eq in zip(rows, verdicts):
            f.write(json.dumps({"kind": cat, "pred": pred, "ref": ref, "math_verify": eq}) + "\n")
    os.replace(tmp, OUT)
    print(f"{len(rows)} pairs, {sum(verdicts)} equal -> {OUT}")


if __name__ == "__main__":
    main()
