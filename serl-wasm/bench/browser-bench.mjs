// Times libserl's WASM build in headless Chromium on the benchmark workload
// (the reference vectors: 333 vote groups of 16, 2,000 candidate
// instructions against 500 MATH seeds) and prints the figures.
//   node bench/browser-bench.mjs   (after ./build.sh; needs cargo for the workload)
import { execFileSync } from "node:child_process";
import { launchChromium, serve } from "../tests/server.mjs";

const repo = new URL("../../", import.meta.url).pathname;
const dump = "/tmp/serl-wasm-workload.json";
execFileSync("cargo", ["run", "-q", "--release", "-p", "serl-core", "--example", "bench_timings", "--", "--dump", dump], {
  cwd: repo,
  stdio: ["ignore", "ignore", "inherit"],
});
const { readFileSync } = await import("node:fs");
const server = await serve(new URL("../www/", import.meta.url).pathname, { "/workload.json": readFileSync(dump) });
const browser = await launchChromium();
const page = await browser.context.newPage();
await page.goto(`http://127.0.0.1:${server.address().port}/`);
await page.waitForSelector("body[data-ready=true]");
const result = await page.evaluate(async () => {
  const serl = await import("./pkg/serl_wasm.js");
  const w = await (await fetch("/workload.json")).json();
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const out = {};
  for (const mode of ["string", "equiv"]) {
    serl.vote(w.groups[0], { mode });
    const times = w.groups.map((g) => {
      const t = performance.now();
      serl.vote(g, { mode });
      return performance.now() - t;
    });
    out[`vote_${mode}_median_ms`] = median(times);
  }
  const runs = [];
  let kept = 0;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    const f = new serl.DiversityFilter(w.seeds, 0.7);
    kept = 0;
    for (const c of w.candidates) kept += f.offer(c).kept ? 1 : 0;
    f.free();
    runs.push(performance.now() - t);
  }
  out.filter_ms = median(runs);
  out.filter_kept = kept;
  out.candidates = w.candidates.length;
  out.seeds = w.seeds.length;
  out.groups = w.groups.length;
  return out;
});
await browser.close();
server.close();
console.log(`headless Chromium (${result.groups} groups of 16, median per group):`);
console.log(`  vote, string mode       ${result.vote_string_median_ms.toFixed(3)} ms   (target <= 1 ms)`);
console.log(`  vote, equivalence mode  ${result.vote_equiv_median_ms.toFixed(3)} ms`);
console.log(`  diversity filter, ${result.candidates} candidates vs ${result.seeds} seeds + kept batch: ${(result.filter_ms / 1000).toFixed(2)} s (target <= 2 s), ${result.filter_kept} kept`);
