// Panel 3 in headless Chromium with WebGPU (--enable-unsafe-webgpu: Dawn's
// SwiftShader adapter where there is no GPU): the demo model, loaded into
// libserl's engine (serl-webgpu), writes problems, the filters judge them,
// each kept problem is answered 16 times and voted on. The same round on
// the CPU (the engine's kernels in WebAssembly) gives the same problems,
// answers and votes. A screenshot goes to build/artifacts/selfplay.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, serve } from "./server.mjs";

const root = new URL("../www/", import.meta.url).pathname;
const artifacts = new URL("../../build/artifacts/", import.meta.url).pathname;
let server, browser;
const errors = [];

before(async () => {
  server = await serve(root);
  browser = await launchChromium({ width: 1280, height: 1800 }, ["--enable-unsafe-webgpu"]);
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function runRound(device) {
  const page = await browser.context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20000 });
  await page.selectOption("#sp-device", device);
  // Two problems keep the round within a few minutes on a software GPU.
  await page.fill("#sp-need", "2");
  await page.click("#sp-run");
  await page.waitForFunction(() => document.body.dataset.rounds === "1" || document.body.dataset.roundError,
    null, { timeout: 900000 });
  const failure = await page.evaluate(() => document.body.dataset.roundError ?? null);
  assert.equal(failure, null, `the ${device} round failed`);
  const result = await page.evaluate(() => ({
    status: document.querySelector("#sp-status").textContent,
    written: [...document.querySelectorAll("#sp-written tbody tr")].map((tr) => [tr.children[1].textContent, tr.children[2].textContent]),
    groups: [...document.querySelectorAll("#sp-groups .group")].map((g) => ({
      problem: g.querySelector(".problem").textContent,
      majority: g.querySelector(".majority").textContent,
      answers: [...g.querySelectorAll(".answers span")].map((s) => [s.textContent, s.className, s.title]),
      verdict: g.querySelector(".vote span").textContent,
    })),
  }));
  return { page, result };
}

test("a self-play round on WebGPU writes, filters, answers and votes", async () => {
  const { page, result } = await runRound("webgpu");
  assert.match(result.status, /^wgpu \(/, "the round ran on the wgpu backend");
  assert.ok(result.written.length > 0, "the model wrote problems");
  const kept = result.written.filter(([, v]) => v === "kept");
  assert.ok(kept.length >= 1 && kept.length <= 2, `kept ${kept.length}`);
  assert.equal(result.groups.length, kept.length);
  for (const g of result.groups) {
    assert.equal(g.answers.length, 16);
    const agreeing = g.answers.filter(([, cls]) => cls === "r1").length;
    assert.ok(agreeing >= 1, "somebody is in the majority");
    // Answers in the majority carry the majority answer (string equality holds within a cluster for these integers).
    assert.ok(g.answers.some(([a, cls]) => cls === "r1" && a === g.majority), g.majority);
    const keptByDifficulty = agreeing >= 4 && agreeing <= 12;
    assert.equal(g.verdict, keptByDifficulty ? "kept for the update" : "dropped by the difficulty filter");
  }
  mkdirSync(artifacts, { recursive: true });
  await page.locator("#selfplay-panel").screenshot({ path: join(artifacts, "selfplay.png") });
  globalThis.webgpuRound = result;
  await page.close();
});

test("the same round on the CPU (WebAssembly) gives the same problems, answers and votes", async () => {
  const { page, result } = await runRound("cpu");
  assert.match(result.status, /^cpu: /);
  const gpu = globalThis.webgpuRound;
  assert.ok(gpu, "the WebGPU round ran first");
  assert.deepEqual(result.written, gpu.written);
  assert.deepEqual(result.groups, gpu.groups);
  await page.close();
  assert.deepEqual(errors, []);
});
