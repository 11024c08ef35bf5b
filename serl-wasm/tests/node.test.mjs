// The Node.js build against the reference vectors: the same cases as the
// Rust tests, so the browser build is known to agree with them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const serl = require("../pkg-node/serl_wasm.js");
const fixtures = new URL("../../serl-core/tests/fixtures/", import.meta.url);
const lines = (name) =>
  readFileSync(new URL(name, fixtures), "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));

test("extractAnswer matches every extract.jsonl case", () => {
  for (const [i, c] of lines("extract.jsonl").entries()) {
    const got = serl.extractAnswer(c.input);
    assert.deepEqual(got, { answer: c.extracted, normalized: c.stripped }, `line ${i + 1}`);
  }
});

test("vote matches vote.jsonl (string) and vote_mv08.jsonl (equiv, math_verify 0.8.0)", () => {
  const equiv = lines("vote_mv08.jsonl");
  for (const [i, c] of lines("vote.jsonl").entries()) {
    const s = serl.vote(c.responses, { mode: "string" });
    assert.deepEqual(s.rewards, c.rewards_string_maj, `line ${i + 1} string`);
    const e = serl.vote(equiv[i].responses, { mode: "equiv" });
    assert.deepEqual(e.rewards, equiv[i].rewards_math_verify_maj, `line ${i + 1} equiv`);
    assert.equal(s.answers.length, c.responses.length);
    assert.equal(s.agreement, s.rewards.reduce((a, b) => a + b, 0) / s.rewards.length);
  }
  assert.deepEqual(serl.vote(["\\boxed{1}", "\\boxed{2}", "\\boxed{1}"]).rewards, [1, 0, 1], "string is the default mode");
});

test("answersEqual agrees with math_verify on at least 97% of equal.jsonl", () => {
  const cases = lines("equal.jsonl").filter((c) => typeof c.math_verify === "boolean");
  const same = cases.filter((c) => serl.answersEqual(c.pred, c.ref) === c.math_verify).length;
  assert.ok(same >= 0.97 * cases.length, `${same}/${cases.length}`);
});

test("rougeL is bit-identical on rouge.jsonl", () => {
  for (const [i, c] of lines("rouge.jsonl").entries()) {
    assert.deepEqual(serl.rougeL(c.a, c.b), { f: c.rougeL_f, p: c.rougeL_p, r: c.rougeL_r }, `line ${i + 1}`);
  }
});

test("parseInstructions matches postprocess.jsonl; keepCase keeps case", () => {
  for (const [i, c] of lines("postprocess.jsonl").entries()) {
    assert.deepEqual(serl.parseInstructions(c.response), c.instructions, `line ${i + 1}`);
  }
  assert.deepEqual(serl.parseInstructions("1. What is \\Delta X here?", { keepCase: true }), ["What is \\Delta X here?"]);
  const items = serl.parseItems("1. What is 2 + 2 today?\n2. Draw a map of it now\n3. Hi");
  assert.deepEqual(items.map((i) => i.rejection), [null, "blacklisted", "tooShort"]);
});

test("DiversityFilter matches filter.jsonl and names the closest pool entry", () => {
  for (const c of lines("filter.jsonl")) {
    const f = new serl.DiversityFilter(c.seed, c.threshold);
    c.candidates.forEach((cand, k) => {
      const v = f.offer(cand);
      assert.equal(v.kept, c.kept[k]);
      assert.equal(v.maxRougeL, c.max_rougeL[k]);
      assert.equal(v.argmax, c.argmax[k]);
      assert.equal(v.closest, c.argmax[k] < c.seed.length ? c.seed[c.argmax[k]] : v.closest);
    });
    assert.equal(f.poolSize, c.seed.length + c.kept_instructions.length);
    f.free();
  }
});

test("difficultyKeep and buildGenerationPrompt", () => {
  assert.equal(serl.difficultyKeep([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.2, 0.8), true);
  assert.equal(serl.difficultyKeep([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.2, 0.8), false);
  const seeds = Array.from({ length: 12 }, (_, i) => `Seed question number ${i}:`);
  const p = serl.buildGenerationPrompt(seeds, ["A kept question here"], 8, 5);
  assert.equal(p.shots.length, 8);
  assert.ok(p.user.startsWith("Come up with a series of questions:\n1. "));
  assert.ok(p.user.endsWith("\n9."));
  assert.ok(p.shots.includes("A kept question here"));
  assert.deepEqual(serl.buildGenerationPrompt(seeds, [], 8, 5), serl.buildGenerationPrompt(seeds, [], 8, 5));
});

test("bad input throws an Error with the Rust message, never a crash", () => {
  assert.throws(() => serl.vote([]), /responses is empty/);
  assert.throws(() => serl.vote("not an array"), /responses must be an array of strings/);
  assert.throws(() => serl.vote([1, 2]), /array of strings/);
  assert.throws(() => serl.vote(["a"], { mode: "plurality" }), /unknown vote mode "plurality"/);
  assert.throws(() => serl.difficultyKeep([0.5], 0.9, 0.1), /bounds/);
  assert.throws(() => new serl.DiversityFilter(["a"], 3), /threshold 3 is outside/);
  assert.throws(() => serl.buildGenerationPrompt([], []), /seeds is empty/);
  // The module still works after errors.
  assert.equal(serl.answersEqual("\\frac{1}{2}", "0.5"), true);
});
