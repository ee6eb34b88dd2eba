// The two other modes: the same prompt side by side, at several temperatures or seeds (parallel
// streams of /v1/generate, which the server's batcher serves with one model step per token for
// all) or as the best beams (/v1/beams),
// and writing with the model (pick the next token from its choices, type, undo, continue).

import { fetchDistribution, forgetView, registerView } from "./inspect.js";
import { chosenSeed, generateBody, lengthAsked, samplingBody } from "./settings.js";
import {
  $, NextNoun, contextTail, doneLine, percent, plural, postJSON, shared, streamGenerate, tokenLabel,
  tokenSpan,
} from "./util.js";

// ---------------------------------------------------------------- side by side
const MAX_COLUMNS = 8;

export function parseTemperatures(text) {
  const parts = text.split(/[,\s]+/).filter((p) => p !== "");
  const temps = parts.map(Number);
  if (!temps.length || temps.some((t) => !Number.isFinite(t) || t < 0)) {
    throw new Error(`temperatures must be numbers >= 0 separated by commas, got "${text}"`);
  }
  if (temps.length > MAX_COLUMNS) throw new Error(`at most ${MAX_COLUMNS} temperatures, got ${temps.length}`);
  return temps;
}

// Show the inputs of the kind of columns chosen (temperatures, samples, beams).
export function showVary() {
  const vary = $("vary").value;
  for (const el of document.querySelectorAll("#mode-compare [data-vary]")) el.hidden = el.dataset.vary !== vary;
}

export function parseCount(id, most) {
  const text = $(id).value.trim();
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > most) throw new Error(`${id} must be a whole number from 1 to ${most}, got "${text}"`);
  return n;
}

// A column: its heading, a status line and the text; appended to #columns.
function column(title, data) {
  const col = document.createElement("article");
  col.className = "column";
  Object.assign(col.dataset, data);
  const head = document.createElement("h3");
  head.textContent = title;
  const status = document.createElement("p");
  status.className = "hint column-status";
  status.textContent = "waiting…";
  const text = document.createElement("div");
  text.className = "gen";
  col.append(head, status, text);
  $("columns").appendChild(col);
  return { col, status, text };
}

// The columns of the choice in #vary, all at once; resolves when every column has ended, with
// what the status line says.
export async function runColumns(signal, report) {
  const vary = $("vary").value;
  const prompt = $("prompt").value;
  const sampling = samplingBody();
  const holder = $("columns");
  holder.querySelectorAll(".gen").forEach(forgetView);
  holder.textContent = "";
  holder.dataset.columns = vary;
  if (vary === "beams") return runBeams(signal, prompt, sampling);
  const seed = chosenSeed();
  holder.dataset.seed = seed;
  let plan;
  if (vary === "seed") {
    const n = parseCount("samples", MAX_COLUMNS);
    const seeds = Array.from({ length: n }, (_, i) => ((BigInt(seed) + BigInt(i)) % (1n << 64n)).toString());
    plan = seeds.map((s) => ({ title: `seed ${s}`, data: { seed: s }, seed: s, sampling }));
    $("compare-seed").textContent = `seeds ${seeds[0]} to ${seeds[n - 1]}, after ${contextTail(prompt, 40)}`;
  } else {
    const temps = parseTemperatures($("temps").value);
    plan = temps.map((t) => ({
      title: `T = ${t.toFixed(2)}`, data: { temperature: String(t) }, seed, sampling: { ...sampling, temperature: t },
    }));
    $("compare-seed").textContent = `seed ${seed}, after ${contextTail(prompt, 40)}`;
  }
  const runs = plan.map((p) => {
    const { col, status, text } = column(p.title, p.data);
    text.setAttribute("aria-label", `${p.title}; arrow keys inspect each ${shared.per}`);
    const view = { prompt, pieces: [], sampling: p.sampling, base: sampling };
    registerView(text, view);
    const body = generateBody(prompt, p.sampling);
    return streamGenerate(body, p.seed, signal, (kind, data) => {
      if (kind === "token") {
        text.appendChild(tokenSpan(data, view.pieces.length));
        view.pieces.push(data.token);
        status.textContent = "generating…";
      } else if (kind === "done") {
        col.dataset.text = data.text;
        col.dataset.done = "1";
        status.textContent = data.stop_reason === "length" ? `done: ${plural(data.tokens, shared.per)}` : doneLine(data);
      } else if (kind === "error") {
        status.textContent = `error: ${data.detail}`;
      } else if (kind === "warning") {
        report(data.warning);
      }
    }).catch((err) => {
      status.textContent = err.name === "AbortError" ? "stopped" : `error: ${err.message}`;
      if (err.name !== "AbortError") throw err;
    });
  });
  const results = await Promise.allSettled(runs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return vary === "seed" ? `done: ${plural(plan.length, "sample")} from seed ${seed}` : `done: every column, seed ${seed}`;
}

// POST /v1/beams: the best beams, best first, one column each with its score.
async function runBeams(signal, prompt, sampling) {
  const beams = parseCount("beams", 16);
  const penalty = Number($("length_penalty").value.trim() || "1");
  if (!Number.isFinite(penalty)) throw new Error(`the length penalty must be a number, got "${$("length_penalty").value}"`);
  const { temperature, ...rules } = sampling; // beam search has no temperature
  $("compare-seed").textContent = `beam search, after ${contextTail(prompt, 40)}`;
  const body = { ...rules, prompt, length: lengthAsked(), beams, length_penalty: penalty };
  const found = (await postJSON("/v1/beams", body, signal)).beams;
  if (!found.length) return "no beam completed its constraint within the length asked";
  found.forEach((beam, i) => {
    const { col, status, text } = column(`beam ${i + 1}`, { score: String(beam.score), text: beam.text, done: "1" });
    text.textContent = beam.text;
    text.classList.add("plain");
    const scale = penalty === 1 ? `nats per ${shared.per}` : `Σ log p / length^${penalty}, nats`;
    status.textContent = `score ${beam.score.toFixed(3)} (${scale}), ${plural(beam.tokens, shared.per)}`;
  });
  return `done: ${plural(found.length, "beam")}, best first`;
}

// ---------------------------------------------------------------- writing with the model
const undo = [];
let typing = false;
let choicesSeq = 0;
let choicesTimer = null;

function text() { return $("write-text").value; }

function setText(value) {
  const box = $("write-text");
  box.value = value;
  box.dispatchEvent(new Event("change", { bubbles: true })); // the URL follows
  refreshChoices(0);
}

// Keep the text as it is now, for Undo.
function remember() {
  undo.push(text());
  if (undo.length > 500) undo.shift();
  $("write-undo").disabled = false;
}

export function undoWrite() {
  if (!undo.length) return false;
  typing = false;
  setText(undo.pop());
  $("write-undo").disabled = undo.length === 0;
  return true;
}

export function pick(token) {
  typing = false;
  remember();
  setText(text() + token);
}

export function refreshChoices(delay = 200) {
  clearTimeout(choicesTimer);
  choicesTimer = setTimeout(drawChoices, delay);
}

async function drawChoices() {
  const seq = ++choicesSeq;
  const context = text();
  const holder = $("choices");
  let answer;
  try {
    answer = await fetchDistribution(context, samplingBody());
  } catch (err) {
    if (seq === choicesSeq) $("choices-note").textContent = `no choices: ${err.message}`;
    return;
  }
  if (seq !== choicesSeq) return;
  const last = answer.stages[answer.stages.length - 1];
  const focused = [...holder.children].indexOf(document.activeElement);
  holder.textContent = "";
  last.tokens.slice(0, 10).forEach((token, k) => {
    const p = Math.exp(last.logprobs[k]);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.dataset.token = token;
    b.dataset.p = String(p);
    b.style.setProperty("--p", `${Math.min(100, p * 100)}%`);
    const key = (k + 1) % 10;
    b.setAttribute("aria-keyshortcuts", String(key));
    b.setAttribute("aria-label", `add ${JSON.stringify(token)}, probability ${percent(p)}`);
    const t = document.createElement("span");
    t.className = "tok";
    t.textContent = tokenLabel(token);
    const v = document.createElement("span");
    v.className = "pct";
    v.textContent = percent(p);
    const k_ = document.createElement("kbd");
    k_.textContent = String(key);
    b.append(k_, t, v);
    b.addEventListener("click", () => pick(token));
    holder.appendChild(b);
  });
  if (focused >= 0) holder.children[Math.min(focused, holder.children.length - 1)]?.focus();
  const shown = last.tokens.slice(0, 10).reduce((a, _, k) => a + Math.exp(last.logprobs[k]), 0);
  $("choices-note").textContent = `${last.kept} of ${shared.info.vocab_size} ${shared.per}s keep p > 0 ` +
    `after the rules; the ones not shown: ${percent(Math.max(0, 1 - shown))}. ` +
    `Rules that keep state (XTC, mirostat, a regex) are shown as at the first ${shared.per}.`;
  holder.dataset.context = context;
}

// The model continues the text (a normal generation, the text so far as prompt).
export async function continueWrite(signal, report) {
  const seed = chosenSeed();
  typing = false;
  remember();
  const body = generateBody(text());
  let grown = text();
  let last = null;
  await streamGenerate(body, seed, signal, (kind, data) => {
    if (kind === "token") {
      grown += data.token;
      $("write-text").value = grown;
    } else if (kind === "done" || kind === "error") {
      last = data;
      if (kind === "done") setText(body.prompt + data.text); // the stop string cut applied
      else report(data.detail, "error");
    } else if (kind === "warning") {
      report(data.warning);
    }
  }).finally(() => refreshChoices(0));
  return { seed, last };
}

export function setupWrite() {
  const box = $("write-text");
  box.addEventListener("input", () => {
    if (!typing) { // a burst of typing is one step of Undo
      undo.push(box.dataset.before ?? "");
      $("write-undo").disabled = false;
      typing = true;
    }
    box.dataset.before = box.value;
    refreshChoices();
  });
  box.addEventListener("focus", () => { box.dataset.before = box.value; });
  box.addEventListener("change", () => { box.dataset.before = box.value; });
  box.addEventListener("blur", () => { typing = false; });
  $("write-undo").addEventListener("click", undoWrite);
  $("write-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text());
      $("status").textContent = "the text is copied";
    } catch {
      box.select();
      document.execCommand("copy");
    }
  });
  $("write-download").addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([text()], { type: "text/plain;charset=utf-8" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `chargen-${shared.info.run}.txt`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
}

// The keys of the mode (from the page's keydown): Ctrl+Z undoes; outside a text field 1-9 and 0
// pick. True when the key was used.
export function writeKey(e) {
  const inField = e.target.closest && e.target.closest("input, textarea");
  if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") {
    if (inField && e.target !== $("write-text")) return false;
    return undoWrite() || !inField;
  }
  if (!inField && !e.ctrlKey && !e.metaKey && !e.altKey && /^[0-9]$/.test(e.key)) {
    const choice = $("choices").querySelectorAll(".choice")[e.key === "0" ? 9 : Number(e.key) - 1];
    if (choice) { choice.click(); return true; }
  }
  return false;
}

// Opening the mode: the text starts as the prompt the first time.
export function enterWrite() {
  const box = $("write-text");
  if (!box.value && !box.dataset.started) box.value = $("prompt").value;
  box.dataset.started = "1";
  $("choices-title").querySelector(".cap-noun").textContent = NextNoun();
  refreshChoices(0);
}
