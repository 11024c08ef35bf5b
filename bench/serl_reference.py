"""SeRL's math_verify majority reward (reward_utils/math_verify_maj_reward.py),
shared by the bench scripts that run math_verify: for each pair i<j,
verify(gold=i, pred=j) then (gold=j, pred=i); an exception makes the pair
unequal; the representative is the first row with the highest count and the
rewards are that row (a group with nothing extracted rewards index 0)."""
from math_verify import parse, verify


def mv_majority(responses):
    parsed = [parse(r) for r in responses]
    m = len(responses)
    eq = [[False] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1, m):
            try:
                same = verify(parsed[i], parsed[j]) or verify(parsed[j], parsed[i])
            except Exception:
                same = False
            eq[i][j] = eq[j][i] = same
    counts = [sum(row) for row in eq]
    rep = counts.index(max(counts))
    return [1.0 if (x or k == rep) else 0.0 for k, x in enumerate(eq[rep])]
