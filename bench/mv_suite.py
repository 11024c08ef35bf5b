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
FIXTURES = os.path.join(ROOT, "serl-core", "tests", "fixtures")
OUT = os.path.join(FIXTURES, "mv_suite.jsonl")
# SeRL's vote groups (vote.jsonl, math_verify 0.7.0) with 0.8.0's rewards.
VOTE_IN = os.path.join(FIXTURES, "vote.jsonl")
VOTE_OUT = os.path.join(FIXTURES, "vote_mv08.jsonl")

# Categories whose texts are whole responses: not wrapped in a boxed sentence.
WHOLE = {"boxed_twice", "many_boxed_long", "plain_text_answers", "held_out_responses"}

PY_SIDE = r'''
import json, sys, logging
logging.disable(logging.CRITICAL)
from math_verify import parse, verify
job = json.load(sys.stdin)
out = []
for pred, ref in job["pairs"]:
    try:
        g = parse(ref)
        t = parse(pred)
        eq = bool(verify(g, t) or verify(t, g))
    except Exception:
        eq = False
    out.append(eq)

sys.path.insert(0, sys.argv[1])
from serl_reference import mv_majority
print(json.dumps({"equal": out, "votes": [mv_majority(g) for g in job["groups"]]}))
'''


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mv_cases import CASES, CASES_HELD_OUT

    rows = []
    for cat, pairs in list(CASES.items()) + list(CASES_HELD_OUT.items()):
        for pred, ref in pairs:
            rows.append((cat, pred, ref))
            if cat not in WHOLE:
                box = "The final answer is $\\boxed{%s}$."
                rows.append((cat + "/boxed", box % pred, box % ref))
    groups = [json.loads(line)["responses"] for line in open(VOTE_IN)]
    py = python_env(VENV, PACKAGES)
    res = subprocess.run(
        [py, "-c", PY_SIDE, os.path.dirname(os.path.abspath(__file__))],
        input=json.dumps({"pairs": [[p, r] for _, p, r in rows], "groups": groups}),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(res.stdout)
    verdicts = result["equal"]
    write(OUT, [
        {"kind": cat, "pred": pred, "ref": ref, "math_verify": eq}
        for (cat, pred, ref), eq in zip(rows, verdicts)
    ])
    print(f"{len(rows)} pairs, {sum(verdicts)} equal -> {OUT}")
    write(VOTE_OUT, [
        {"responses": g, "rewards_math_verify_maj": r} for g, r in zip(groups, result["votes"])
    ])
    print(f"{len(groups)} vote groups -> {VOTE_OUT}")


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
