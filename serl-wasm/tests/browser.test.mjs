// The demo page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): both panels are filled, clicked and checked, and a
// screenshot is saved to build/artifacts/demo.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, serve } from "./server.mjs";

const root = new URL("../www/", import.meta.url).pathname;
const artifacts = new URL("../../build/artifacts/", import.meta.url).pathname;
let server, browser, page;

before(async () => {
  server = await serve(root);
  browser = await launchChromium();
  page = await browser.context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20000 });
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  server?.close();
});

test("panel 1 votes, switches mode, edits, adds and removes responses", async () => {
  assert.equal(await page.locator(".response-card").count(), 16);
  // String mode: "\frac{14}{3}" (7 exact copies) wins; 14/3 normalises to it too.
  assert.equal(await page.textContent("#majority"), "\\frac{14}{3}");
  const stringAgreement = await page.textContent("#agreement");
  // Equivalence mode also counts 4\frac{2}{3}, \dfrac{14}{3}, \frac{28}{6}.
  await page.click("label:has(#mode-equiv)");
  const equivAgreement = await page.textContent("#agreement");
  assert.notEqual(equivAgreement, stringAgreement);
  assert.match(equivAgreement, /^68\.8%/);
  assert.equal(await page.textContent("#difficulty"), "kept for training");
  // Narrow the bounds: the same group is now too easy.
  await page.fill("#hi", "0.5");
  await page.dispatchEvent("#hi", "input");
  assert.equal(await page.textContent("#difficulty"), "dropped: too easy");
  await page.fill("#hi", "0.8");
  await page.dispatchEvent("#hi", "input");
  // Edit a response: its extracted answer and reward follow.
  const first = page.locator(".response-card").first();
  await first.locator("textarea").fill("I think the answer is $\\boxed{99}$.");
  assert.equal(await first.locator(".answer").textContent(), "99");
  assert.equal(await first.locator(".reward").textContent(), "0.0");
  // Add and remove.
  await page.click("#add-response");
  assert.equal(await page.locator(".response-card").count(), 17);
  await page.locator(".response-card .remove").last().click();
  await page.locator(".response-card .remove").first().click();
  assert.equal(await page.locator(".response-card").count(), 15);
  assert.equal(await page.textContent("#count"), "15");
  // Another example loads 16 fresh responses.
  await page.selectOption("#example", "math500-38");
  assert.equal(await page.locator(".response-card").count(), 16);
  assert.equal(await page.textContent("#majority"), "2000");
});

test("panel 2 applies the rule filters and the ROUGE-L check against the seeds", async () => {
  const rows = page.locator("#filter-results tbody tr");
  assert.equal(await rows.count(), 8);
  const verdicts = await page.locator("#filter-results .verdict").allTextContents();
  // 1 new, 2 near-copy of a seed, 3 banned word, 4 too short, 5 new, 6 "Write a program", 7 new, 8 new.
  assert.deepEqual(verdicts, ["keep", "drop", "drop", "drop", "keep", "drop", "keep", "keep"]);
  const dup = rows.nth(1);
  assert.equal(await dup.locator(".closest").textContent(), "Find the product of the divisors of $50$.");
  assert.ok(Number(await dup.locator(".score").textContent()) > 0.7);
  assert.match(await rows.nth(2).textContent(), /banned word/);
  assert.match(await rows.nth(3).textContent(), /3 words or fewer/);
  // Paste a new list and check again.
  await page.fill("#generated", "1. What is the remainder when 2 to the power 100 is divided by 7?\n2. Plot it\n3.");
  await page.click("#check");
  assert.equal(await rows.count(), 2);
  assert.deepEqual(await page.locator("#filter-results .verdict").allTextContents(), ["keep", "drop"]);
  assert.equal(await page.textContent("#check-summary"), "1 of 2 questions kept");
  // A stricter threshold drops more.
  await page.fill("#generated", "1. Find the product of the divisors of $60$ and of $50$.\n2.");
  await page.fill("#threshold", "0.3");
  await page.click("#check");
  assert.deepEqual(await page.locator("#filter-results .verdict").allTextContents(), ["drop"]);
});

test("screenshot", async () => {
  await page.fill("#threshold", "0.7");
  await page.fill("#generated", (await page.evaluate(() => import("./examples.js"))).GENERATED ?? "");
  await page.click("#check");
  await page.selectOption("#example", "math500-2");
  await page.click("label:has(#mode-equiv)");
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "demo.png"), fullPage: true });
});
