// One self-play round of the demo model in headless Chromium on each
// device (WebGPU, then the CPU in WebAssembly): load, writing problems,
// answering 16 times each; prints seconds and tokens/s. Needs
// serl-wasm/build.sh first. Usage: node serl-wasm/bench/selfplay-bench.mjs [webgpu|cpu ...]
import { launchChromium, serve } from "../tests/server.mjs";
const server = await serve(new URL("../www/", import.meta.url).pathname);
const b = await launchChromium(undefined, ["--enable-unsafe-webgpu"]);
const page = await b.context.newPage();
page.on("pageerror", (e) => console.log("pageerror:", e.message));
await page.goto(`http://127.0.0.1:${server.address().port}/model/config.json`);
const devices = process.argv.length > 2 ? process.argv.slice(2) : ["webgpu", "cpu"];
for (const device of devices) {
const out = await page.evaluate(async (device) => {
  const t = async (p) => (await fetch(p)).text();
  const mod = await import("/pkg-engine/serl_webgpu.js");
  await mod.default();
  const w = new Uint8Array(await (await fetch("/model/model.safetensors")).arrayBuffer());
  const t0 = performance.now();
  let sp;
  try {
    sp = await mod.SelfPlay.load(await t("/model/config.json"), w, await t("/model/tokenizer.json"), await t("/model/tokenizer_config.json"), await t("/model/chat_template.jinja"), await t("/model/serl-demo.toml"), await t("/model/seeds.jsonl"), device);
  } catch (e) { return "load failed: " + (e.message ?? e); }
  const t1 = performance.now();
  let n = 0;
  try {
    const r = await sp.writeProblems(4, () => n++);
    const t2 = performance.now();
    const probs = r.written.filter((x) => x.status === "kept").map((x) => x.text);
    const a = await sp.answer(probs, 16, () => n++);
    const t3 = performance.now();
    const secs = (t3 - t1) / 1000;
    const name = sp.device;
    sp.free();
    return `${name}: load ${(t1 - t0).toFixed(0)} ms, write problems ${((t2 - t1) / 1000).toFixed(2)} s, ` +
      `answer ${probs.length} × 16 ${((t3 - t2) / 1000).toFixed(2)} s; ${n} tokens, ${(n / secs).toFixed(1)} tokens/s`;
  } catch (e) { return "round failed: " + (e.message ?? e); }
}, device);
console.log(out);
}
await b.close(); server.close();
