// The demo page: everything runs locally in the WASM build of libserl.
import init, { vote, extractAnswer, parseItems, DiversityFilter, difficultyKeep } from "./pkg/serl_wasm.js";
import { EXAMPLES, SEEDS, GENERATED } from "./examples.js";

const $ = (sel) => document.querySelector(sel);
const COLORS = ["var(--c0)", "var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)", "var(--c5)"];
let responses = [];

const RULES = {
  tooShort: "3 words or fewer", tooLong: "over 150 words", blacklisted: "banned word (image, graph, draw, …)",
  program: "“Write a program”", punctuation: "starts with punctuation", nonAscii: "starts with a non-ASCII character",
};

function renderResponses() {
  const box = $("#responses");
  box.replaceChildren();
  responses.forEach((text, i) => {
    const card = document.createElement("div");
    card.className = "card response-card";
    card.dataset.index = i;
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("aria-label", `response ${i + 1}`);
    area.addEventListener("input", () => { responses[i] = area.value; update(); });
    const foot = document.createElement("div");
    foot.className = "card-foot";
    foot.innerHTML = `<span>#${i + 1} → <span class="answer"></span></span><span><span class="reward"></span>
      <button class="remove" title="Remove this response" aria-label="remove response ${i + 1}">×</button></span>`;
    foot.querySelector(".remove").addEventListener("click", () => { responses.splice(i, 1); renderResponses(); update(); });
    card.append(area, foot);
    box.append(card);
  });
  $("#count").textContent = responses.length;
}

function update() {
  const mode = document.querySelector("input[name=mode]:checked").value;
  const lo = Number($("#lo").value), hi = Number($("#hi").value);
  if (responses.length === 0) {
    $("#majority").textContent = "—"; $("#agreement").textContent = "—"; $("#difficulty").textContent = "—";
    $("#clusters").replaceChildren();
    return;
  }
  try {
    const r = vote(responses, { mode });
    // Clusters: responses grouped by the reward row of each distinct answer.
    const clusters = new Map();
    r.answers.forEach((a, i) => {
      const key = r.rewards[i] === 1 ? "__majority__" : a;
      if (!clusters.has(key)) clusters.set(key, { answer: a, members: [] });
      clusters.get(key).members.push(i);
    });
    const ordered = [...clusters.values()].sort((x, y) => y.members.length - x.members.length);
    const color = new Map();
    ordered.forEach((c, k) => c.members.forEach((i) => color.set(i, COLORS[k % COLORS.length])));
    document.querySelectorAll(".response-card").forEach((card) => {
      const i = Number(card.dataset.index);
      card.querySelector(".answer").textContent = r.answers[i] === "" ? "(none)" : r.answers[i];
      const badge = card.querySelector(".reward");
      badge.textContent = r.rewards[i].toFixed(1);
      badge.className = `reward r${r.rewards[i]}`;
      card.classList.toggle("rewarded", r.rewards[i] === 1);
      card.style.setProperty("--cluster", color.get(i));
    });
    $("#majority").textContent = r.majority === "" ? "(none)" : r.majority;
    $("#agreement").textContent = `${(r.agreement * 100).toFixed(1)}%  (${r.rewards.filter((x) => x === 1).length}/${r.rewards.length})`;
    $("#agreement-bar").style.width = `${r.agreement * 100}%`;
    const keep = difficultyKeep(r.rewards, lo, hi);
    const d = $("#difficulty");
    d.textContent = keep ? "kept for training" : r.agreement > hi ? "dropped: too easy" : "dropped: too hard";
    d.className = `big ${keep ? "kept" : "dropped"}`;
    $("#clusters").replaceChildren(...ordered.map((c, k) => {
      const li = document.createElement("li");
      li.className = "chip";
      li.style.background = COLORS[k % COLORS.length];
      li.textContent = `${c.answer === "" ? "(none)" : c.answer} ×${c.members.length}`;
      return li;
    }));
  } catch (e) {
    $("#difficulty").textContent = e.message;
    $("#difficulty").className = "big dropped";
  }
}

function loadExample(id) {
  const ex = EXAMPLES.find((e) => e.id === id) ?? EXAMPLES[0];
  $("#problem").textContent = ex.problem;
  $("#source").textContent = `${ex.source} · reference answer ${ex.reference} (the voter never sees it)`;
  responses = [...ex.responses];
  renderResponses();
  update();
}

function checkList() {
  const body = $("#filter-results tbody");
  body.replaceChildren();
  const threshold = Number($("#threshold").value);
  let filter;
  try {
    filter = new DiversityFilter(SEEDS, threshold);
  } catch (e) {
    $("#check-summary").textContent = e.message;
    return;
  }
  const items = parseItems($("#generated").value, { keepCase: $("#keep-case").checked });
  let kept = 0;
  items.forEach((item, k) => {
    const tr = document.createElement("tr");
    let rules = "passes", score = "", closest = "", verdict = "drop";
    if (item.kept) {
      const v = filter.offer(item.text);
      score = v.maxRougeL.toFixed(3);
      closest = v.closest ?? "";
      if (v.kept) { verdict = "keep"; kept++; }
    } else {
      rules = RULES[item.rejection] ?? item.rejection;
    }
    tr.innerHTML = `<td>${k + 1}</td><td class="item"></td><td class="${item.kept ? "" : "rule-fail"}"></td>
      <td class="score">${score}</td><td class="closest"></td><td class="verdict ${verdict}">${verdict}</td>`;
    tr.querySelector(".item").textContent = item.text;
    tr.children[2].textContent = rules;
    tr.querySelector(".closest").textContent = closest;
    body.append(tr);
  });
  filter.free();
  $("#check-summary").textContent = `${kept} of ${items.length} questions kept`;
}

async function main() {
  try {
    await init();
  } catch (e) {
    $("#status").textContent = `Could not load the WASM module: ${e}`;
    $("#status").className = "status error";
    return;
  }
  $("#status").textContent = "Evaluator loaded (WebAssembly). Edit anything: results update as you type.";
  $("#status").className = "status ready";
  const sel = $("#example");
  for (const ex of EXAMPLES) sel.append(new Option(ex.source, ex.id));
  sel.addEventListener("change", () => loadExample(sel.value));
  document.querySelectorAll("input[name=mode], #lo, #hi").forEach((el) => el.addEventListener("input", update));
  $("#add-response").addEventListener("click", () => {
    responses.push("My working... so the answer is $\\boxed{}$.");
    renderResponses();
    update();
  });
  $("#seed-count").textContent = SEEDS.length;
  $("#generated").value = GENERATED;
  $("#check").addEventListener("click", checkList);
  loadExample(EXAMPLES[0].id);
  checkList();
  document.body.dataset.ready = "true";
}

main();
