// Panel 3: self-play rounds of the demo model on libserl's engine in the
// page (WebGPU, or the CPU through WebAssembly), from the engine's own WASM
// build (pkg-engine/, built by serl-webgpu/build.sh with the model files in
// model/). Loaded on the first round: the engine is several MB.
const $ = (sel) => document.querySelector(sel);
let engine = null;
let engineDevice = null;

async function text(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.text();
}

async function load(device) {
  const mod = await import("./pkg-engine/serl_webgpu.js");
  await mod.default();
  const weights = new Uint8Array(await (await fetch("model/model.safetensors")).arrayBuffer());
  const [config, tokenizer, tokenizerConfig, template, toml, seeds] = await Promise.all([
    text("model/config.json"), text("model/tokenizer.json"), text("model/tokenizer_config.json"),
    text("model/chat_template.jinja"), text("model/serl-demo.toml"), text("model/seeds.jsonl"),
  ]);
  return mod.SelfPlay.load(config, weights, tokenizer, tokenizerConfig, template, toml, seeds, device);
}

function status(msg, cls = "status") {
  const s = $("#sp-status");
  s.textContent = msg;
  s.className = cls;
}

function showWritten(written) {
  $("#sp-written-box").hidden = false;
  const body = $("#sp-written tbody");
  body.replaceChildren();
  written.forEach((w, k) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${k + 1}</td><td class="item"></td><td></td>`;
    tr.querySelector(".item").textContent = w.text;
    const verdict = w.status === "kept" ? "kept"
      : w.status === "rule_filtered" ? `dropped by a rule (${w.reason})`
        : `dropped: ROUGE-L ${w.rouge_l.toFixed(2)} against a seed or a kept problem`;
    tr.children[2].textContent = verdict;
    tr.children[2].className = w.status === "kept" ? "status-kept" : "status-drop";
    body.append(tr);
  });
}

function showGroups(groups) {
  const box = $("#sp-groups");
  box.replaceChildren(...groups.map((g) => {
    const div = document.createElement("div");
    div.className = "group";
    const agree = `${g.rewards.filter((r) => r === 1).length}/${g.rewards.length}`;
    div.innerHTML = `<div class="group-head"><span class="problem"></span>
      <span class="vote">majority <b class="majority"></b> · agreement ${agree} ·
      <span class="${g.kept ? "kept" : "dropped"}">${g.kept ? "kept for the update" : "dropped by the difficulty filter"}</span></span></div>
      <div class="answers"></div>`;
    div.querySelector(".problem").textContent = g.problem;
    div.querySelector(".majority").textContent = g.majority === "" ? "(none)" : g.majority;
    div.querySelector(".answers").replaceChildren(...g.extracted.map((a, i) => {
      const s = document.createElement("span");
      s.className = `r${g.rewards[i]}`;
      s.textContent = a === "" ? "(none)" : a;
      s.title = g.answers[i];
      return s;
    }));
    return div;
  }));
}

async function round() {
  const button = $("#sp-run");
  button.disabled = true;
  try {
    const device = $("#sp-device").value;
    if (!engine || engineDevice !== device) {
      status(`Loading the engine and the demo model onto ${device}…`);
      engine?.free();
      engine = null;
      engine = await load(device);
      engineDevice = device;
    }
    const need = Number($("#sp-need").value), n = Number($("#sp-n").value);
    let count = 0;
    const tick = () => { count++; if (count % 64 === 0) status(`${engine.device}: ${count} tokens…`); };
    const t0 = performance.now();
    status(`${engine.device}: writing problems…`);
    const w = await engine.writeProblems(need, tick);
    showWritten(w.written);
    const problems = w.written.filter((x) => x.status === "kept").map((x) => x.text);
    status(`${engine.device}: answering ${problems.length} problems ${n} times each…`);
    const a = await engine.answer(problems, n, tick);
    showGroups(a.groups);
    const secs = (performance.now() - t0) / 1000;
    const tokens = w.tokens + a.tokens;
    const kept = a.groups.filter((g) => g.kept).length;
    status(`${engine.device}: ${problems.length} problems written and kept by the filters, ${kept} kept by the ` +
      `difficulty filter; ${tokens} tokens in ${secs.toFixed(1)} s (${(tokens / secs).toFixed(0)} tokens/s).`,
    "status ready");
    document.body.dataset.rounds = String(Number(document.body.dataset.rounds ?? 0) + 1);
  } catch (e) {
    status(`Self-play failed: ${e.message ?? e}`, "status error");
    document.body.dataset.roundError = String(e.message ?? e);
  } finally {
    button.disabled = false;
  }
}

$("#sp-run").addEventListener("click", round);
if (!("gpu" in navigator)) {
  $("#sp-device").value = "cpu";
  $("#sp-device").querySelector("option[value=webgpu]").disabled = true;
  status("This browser has no WebGPU (navigator.gpu): the round runs on the CPU through WebAssembly.");
}
