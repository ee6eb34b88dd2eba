// chargen playground: no build step, no dependencies; everything is served by `chargen serve`.
// This module starts the page: the run, the modes (tabs), generation into the main text, the
// legend, the training curves and the page's keys. The others: util.js (shared helpers),
// settings.js (the controls and the URL), bars.js (bar charts), inspect.js (the distribution
// at every position) and modes.js (side by side; writing with the model).

import { hide, refreshSection, registerView, setEndContext } from "./inspect.js";
import {
  continueWrite, enterWrite, refreshChoices, runColumns, setupWrite, showVary, writeKey,
} from "./modes.js";
import {
  chosenSeed, describeGroups, examplePrompts, generateBody, resetSettings, restoreURL,
  samplingBody, saveURL,
} from "./settings.js";
import {
  $, LN2, NextNoun, doneLine, perShort, shared, streamGenerate, tokenInfo, tokenSpan,
} from "./util.js";

const state = { controller: null, mode: "generate", main: { prompt: "", pieces: [], sampling: {} } };

// ---------------------------------------------------------------- warnings and status
function clearWarnings() { $("warnings").textContent = ""; }

function addWarning(text, kind = "warning") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = `${kind === "error" ? "error" : "warning"}: ${text}`;
  $("warnings").appendChild(li);
}

function setStatus(text) { $("status").textContent = text; }

// ---------------------------------------------------------------- running
// One run at a time (a generation, the columns, a continuation); Stop or Esc ends it.
async function run(action) {
  if (state.controller) return;
  clearWarnings();
  hide();
  state.controller = new AbortController();
  for (const id of ["generate", "write-continue"]) $(id).disabled = true;
  for (const id of ["stop-button", "write-stop"]) $(id).disabled = false;
  try {
    await action(state.controller.signal);
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped");
    else { addWarning(err.message, "error"); setStatus("not generated"); }
  } finally {
    state.controller = null;
    for (const id of ["generate", "write-continue"]) $(id).disabled = false;
    for (const id of ["stop-button", "write-stop"]) $(id).disabled = true;
    saveURL(state.mode); // the seed used: the link reproduces the text
    refreshSection(0);
  }
}

function stop() { if (state.controller) state.controller.abort(); }

async function generateMain(signal) {
  const seed = chosenSeed();
  setStatus("generating…");
  const out = $("output");
  out.textContent = "";
  out.dataset.seed = seed;
  $("used-seed").textContent = `seed ${seed}`;
  $("token-info").textContent = "";
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  out.appendChild(prompt);
  const view = { prompt: $("prompt").value, pieces: [], sampling: samplingBody() };
  state.main = view;
  registerView(out, view);
  const body = generateBody(view.prompt, view.sampling);
  const finished = await streamGenerate(body, seed, signal, (kind, data) => {
    if (kind === "token") {
      out.appendChild(tokenSpan(data, view.pieces.length));
      view.pieces.push(data.token);
    } else if (kind === "done") {
      setStatus(doneLine(data));
    } else if (kind === "error") {
      addWarning(data.detail, "error");
      setStatus("stopped by an error");
    } else if (kind === "warning") {
      addWarning(data.warning);
    }
  });
  if (!finished) setStatus("the connection closed early");
  offerNeurons(view);
}

// the neuron view of the text just generated (POST /neurons opens it in a tab of its own)
function offerNeurons(view) {
  const text = view ? view.prompt + view.pieces.join("") : "";
  const chars = shared.info && shared.info.tokenizer === "char";
  $("neurons-text").value = text.slice(0, 8000);
  $("neurons-open").disabled = !chars || !text;
  if (!chars && shared.info) {
    $("neurons-hint").textContent = "the neuron view reads character-level runs; this run's tokens are " +
      `${shared.info.tokenizer} tokens`;
  }
}

async function generateColumns(signal) {
  setStatus("generating the columns…");
  setStatus(await runColumns(signal, (text, kind) => addWarning(text, kind)));
}

async function continueText(signal) {
  setStatus("the model continues…");
  const { last } = await continueWrite(signal, (text, kind) => addWarning(text, kind));
  if (last && last.tokens !== undefined) setStatus(doneLine(last));
}

function primary() {
  if (state.mode === "compare") run(generateColumns);
  else if (state.mode === "write") run(continueText);
  else run(generateMain);
}

// ---------------------------------------------------------------- modes
const PRIMARY = { generate: "Generate", compare: "Generate side by side" };

function setMode(mode, focus = false) {
  if (!["generate", "compare", "write"].includes(mode)) mode = "generate";
  state.mode = mode;
  document.body.dataset.mode = mode;
  hide();
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
    if (on && focus) tab.focus();
  }
  // writing has its own text and buttons: the prompt and Generate are the other modes'
  $("prompt-block").hidden = mode === "write";
  $("generate-buttons").hidden = mode === "write";
  $("generate").textContent = PRIMARY[mode] || "Generate";
  if (mode === "write") enterWrite();
  saveURL(mode);
  refreshSection(0);
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, k) => {
    tab.addEventListener("click", () => setMode(tab.dataset.mode));
    tab.addEventListener("keydown", (e) => {
      const to = { ArrowRight: k + 1, ArrowLeft: k - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      setMode(tabs[(to + tabs.length) % tabs.length].dataset.mode, true);
    });
  });
}

// Where the charts look when no token is inspected.
function endContext() {
  if (state.mode === "write") return { context: $("write-text").value, where: "at the end of the text so far" };
  if (state.mode === "compare") return { context: $("prompt").value, where: "after the prompt" };
  const main = state.main;
  const generated = main.prompt === $("prompt").value ? main.pieces.join("") : "";
  return {
    context: $("prompt").value + generated,
    where: generated ? "at the end of the text" : "after the prompt",
  };
}

// ---------------------------------------------------------------- colour
function drawLegend() {
  const legend = $("legend");
  legend.textContent = "";
  const title = document.createElement("span");
  title.textContent = `${shared.scale.title} of each ${shared.per} as drawn, in bits per ${shared.per}: `;
  legend.appendChild(title);
  for (const b of shared.scale.bins) {
    const sw = document.createElement("i");
    sw.className = "swatch";
    sw.style.background = b.colour;
    sw.textContent = b.label;
    legend.appendChild(sw);
  }
  const tail = document.createElement("span");
  tail.textContent = " pale = expected, red = surprising; p is after the sampling rules.";
  legend.appendChild(tail);
}

function applyColourToggle() {
  const on = $("colour-toggle").checked;
  document.querySelectorAll(".gen").forEach((e) => e.classList.toggle("plain", !on));
  document.body.classList.toggle("plain-text", !on);
  $("legend").hidden = !on;
}

// ---------------------------------------------------------------- training curves
// A canvas fills its container's width; drawing is in CSS pixels, sharp on any screen.
function fit(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(100, canvas.parentElement.clientWidth);
  const h = Number(canvas.dataset.h || canvas.height); // the height in CSS pixels, from the page
  canvas.dataset.h = String(h);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

// Round ticks (1, 2 or 5 times a power of ten) covering [lo, hi]: {ticks, step, from, to}.
function niceTicks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const rough = span / count;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= rough * (1 - 1e-9));
  const first = Math.floor(lo / step + 1e-9), last = Math.max(Math.ceil(hi / step - 1e-9), first + 1);
  const ticks = [];
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toPrecision(12)));
  return { ticks, step, from: ticks[0], to: ticks[ticks.length - 1] };
}

function drawCurves() {
  const canvas = $("curves");
  const { ctx, w, h } = fit(canvas);
  const metrics = shared.info.metrics;
  const per = shared.per;
  const evals = metrics.filter((m) => m.kind === "eval");
  const train = metrics.filter((m) => m.kind === "train");
  if (!evals.length && !train.length) { $("curves-caption").textContent = "no metrics yet"; return; }
  // the loss is in nats per token; on a character run a token is a character
  const unit = `bits/${perShort()}`;
  const valOf = (m) => (per === "character" ? m.val_bits_per_char : m.val_nats_per_token / LN2);
  const series = [
    { pts: train.map((m) => [m.step, m.loss / LN2]), colour: "#c08a2e", name: `training (${unit})` },
    { pts: evals.map((m) => [m.step, valOf(m)]), colour: "#3b6ea8", name: `validation (${unit})` },
  ].map((s) => ({ ...s, pts: s.pts.filter(([, y]) => Number.isFinite(y)) }));
  const all = series.flatMap((s) => s.pts);
  if (!all.length) { $("curves-caption").textContent = "no finite losses to draw"; return; }
  const xmax = Math.max(...all.map((p) => p[0]), 1);
  const ys = niceTicks(Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])), 4);
  const ymin = ys.from, ymax = ys.to;
  const left = 56, right = 12, top = 26, bottom = 34;
  const X = (x) => left + (x / xmax) * (w - left - right);
  const Y = (y) => h - bottom - ((y - ymin) / (ymax - ymin)) * (h - top - bottom);
  ctx.font = "11px sans-serif"; ctx.textBaseline = "middle";
  ctx.save(); ctx.translate(11, top + (h - top - bottom) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillStyle = "#556"; ctx.fillText(`bits per ${per}`, 0, 0); ctx.restore();
  for (const t of ys.ticks) {
    ctx.strokeStyle = "#e3e6ec"; ctx.beginPath(); ctx.moveTo(left, Y(t)); ctx.lineTo(w - right, Y(t)); ctx.stroke();
    ctx.fillStyle = "#556"; ctx.textAlign = "right"; ctx.fillText(t.toFixed(ys.step < 0.1 ? 2 : 1), left - 4, Y(t));
  }
  ctx.textAlign = "center";
  const xs = niceTicks(0, xmax, Math.max(2, Math.floor((w - left) / 90)));
  for (const t of xs.ticks.filter((v) => v <= xmax)) {
    ctx.strokeStyle = "#c9ced8"; ctx.beginPath(); ctx.moveTo(X(t), h - bottom); ctx.lineTo(X(t), h - bottom + 4); ctx.stroke();
    ctx.fillStyle = "#556"; ctx.fillText(String(t), X(t), h - bottom + 12);
  }
  ctx.fillText("step", left + (w - left - right) / 2, h - 7);
  ctx.strokeStyle = "#8a93a3"; ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, h - bottom); ctx.lineTo(w - right, h - bottom); ctx.stroke();
  ctx.textAlign = "left";
  let lx = left;
  series.forEach((s) => {
    ctx.strokeStyle = s.colour; ctx.lineWidth = 2; ctx.beginPath();
    s.pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke(); ctx.lineWidth = 1;
    if (s.pts.length < 40) {  // few points: each one shown
      ctx.fillStyle = s.colour;
      s.pts.forEach(([x, y]) => { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 2 * Math.PI); ctx.fill(); });
    }
    ctx.fillStyle = s.colour; ctx.fillRect(lx, 8, 14, 4);
    ctx.fillStyle = "#1d2430"; ctx.fillText(s.name, lx + 18, 10);
    lx += ctx.measureText(s.name).width + 34;
  });
  // the best evaluation: the weights this server loaded (lowest validation loss per character)
  const best = evals.reduce((b, m) => (b === null || m.val_nats_per_char < b.val_nats_per_char ? m : b), null);
  const last = evals[evals.length - 1];
  if (best && Number.isFinite(valOf(best))) {
    const bx = X(best.step), by = Y(valOf(best));
    ctx.fillStyle = "#1d7a46"; ctx.beginPath(); ctx.arc(bx, by, 5, 0, 2 * Math.PI); ctx.fill();
    const note = `best, step ${best.step}`;
    const nw = ctx.measureText(note).width;
    const nx = Math.min(Math.max(bx - nw / 2, left + 2), w - right - nw - 2);
    const ny = by - 14 < top ? by + 16 : by - 14;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; ctx.fillRect(nx - 2, ny - 7, nw + 4, 14);
    ctx.fillStyle = "#1d7a46"; ctx.fillText(note, nx, ny);
  }
  const both = (m) => (per === "character"
    ? `${m.val_bits_per_char.toFixed(3)} bits/char`
    : `${valOf(m).toFixed(3)} bits/token (${m.val_bits_per_char.toFixed(3)} bits/char)`);
  $("curves-caption").textContent = last
    ? `last validation: ${both(last)} at step ${last.step}; best: ${both(best)} at step ${best.step}. ` +
      (per === "character" ? "" : "A token of this run is a word or piece, not a character: losses are per token. ")
    : "no validation yet; training loss only";
}

// ---------------------------------------------------------------- a run still training
// While the run trains into the served folder the server serves each new best (live.py);
// every 5 s (while the page is visible) the curves and this note follow it.
function describeWeights() {
  const w = shared.info.weights || {};
  const when = w.loaded_at ? ` (loaded at ${new Date(w.loaded_at * 1000).toLocaleTimeString()})` : "";
  const loss = w.val_nats_per_char != null
    ? `, validation ${(w.val_nats_per_char / Math.LN2).toFixed(3)} bits/char` : "";
  let text = `Serving ${w.file || "the weights"}${w.step != null ? ` of step ${w.step}` : ""}${loss}${when}.`;
  if (w.following) text += " New bests are served as the run trains (the server looks every few seconds).";
  if (w.reloads) text += ` Weights reloaded ${w.reloads} time${w.reloads > 1 ? "s" : ""} since the server started.`;
  if (w.skipped) text += ` The last new file was not loaded: ${w.skipped}`;
  $("live-note").textContent = text;
}

async function followRun() {
  if (document.hidden) return;
  try {
    const res = await fetch("/v1/model");
    if (!res.ok) return;
    const info = await res.json();
    const was = shared.info;
    const changed = info.metrics.length !== was.metrics.length ||
      JSON.stringify(info.weights) !== JSON.stringify(was.weights);
    if (!changed) return;
    Object.assign(shared.info, { metrics: info.metrics, weights: info.weights });
    drawCurves();
    describeWeights();
  } catch (err) { /* the server may be restarting: try again at the next tick */ }
}

// ---------------------------------------------------------------- prompt
function describePrompt() {
  const info = shared.info;
  const edited = $("prompt").value !== shared.seedText;
  let text;
  if (info.seed_text_note) text = `${info.seed_text_note[0].toUpperCase()}${info.seed_text_note.slice(1)}.`;
  else if (!shared.seedText) text = "An empty prompt starts from the beginning, as the model's own samples do.";
  else if (edited) text = "Your prompt.";
  else text = "The run's seed text: the stretch of its training text its samples started from.";
  $("prompt-origin").textContent = text;
  $("reset-prompt").hidden = !edited || !shared.seedText;
}

function setPrompt(text) {
  $("prompt").value = text;
  describePrompt();
  saveURL(state.mode);
  refreshSection(0);
}

function drawExamples() {
  const holder = $("examples");
  holder.textContent = "";
  for (const ex of examplePrompts()) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = ex.name;
    b.title = ex.text === "" ? "an empty prompt" : JSON.stringify(ex.text);
    b.dataset.prompt = ex.text;
    b.addEventListener("click", () => { setPrompt(ex.text); $("prompt").focus(); });
    holder.appendChild(b);
  }
}

// ---------------------------------------------------------------- start
async function init() {
  let info;
  try {
    const res = await fetch("/v1/model");
    info = await res.json();
    if (!res.ok) throw new Error(info.detail || res.statusText);
  } catch (err) {
    $("run-name").textContent = "";
    addWarning(`could not read the run: ${err.message}`, "error");
    return;
  }
  Object.assign(shared, {
    info, scale: info.surprisal_scale, per: info.units.per, seedText: info.seed_text || "", limits: info.limits,
  });
  const m = info.config.model;
  $("run-name").textContent = `run ${info.run}: ${m.family.toUpperCase()} ${m.hidden_size} × ${m.num_layers}, ` +
    `${info.tokenizer} tokens, vocabulary ${info.vocab_size}`;
  document.querySelectorAll(".unit-noun").forEach((e) => { e.textContent = shared.per; });
  const capNoun = NextNoun();
  document.querySelectorAll(".cap-noun").forEach((e) => { e.textContent = capNoun; });
  $("prompt").defaultValue = shared.seedText;
  $("prompt").value = shared.seedText;
  const mode = restoreURL();
  describePrompt();
  drawExamples();
  drawLegend();
  applyColourToggle();
  drawCurves();
  describeWeights();
  if (info.weights && info.weights.following) setInterval(followRun, 5000);
  setupTabs();
  setupWrite();
  setEndContext(endContext);

  let urlTimer = null;
  const settingsChanged = () => {
    describeGroups();
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => saveURL(state.mode), 200);
    refreshSection();
    if (state.mode === "write") refreshChoices();
  };
  document.querySelector(".controls").addEventListener("input", settingsChanged);
  document.querySelector(".controls").addEventListener("change", settingsChanged);
  $("temps").addEventListener("input", settingsChanged);
  for (const id of ["samples", "beams", "length_penalty"]) $(id).addEventListener("input", settingsChanged);
  $("vary").addEventListener("change", () => { showVary(); settingsChanged(); });
  $("write-text").addEventListener("change", settingsChanged);
  $("write-text").addEventListener("input", () => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => saveURL(state.mode), 200);
    refreshSection();
  });
  $("prompt").addEventListener("input", describePrompt);
  $("reset-prompt").addEventListener("click", () => { setPrompt(shared.seedText); $("prompt").focus(); });
  $("reset-settings").addEventListener("click", () => { resetSettings(); settingsChanged(); setStatus("the settings are back to their defaults"); });
  $("copy-link").addEventListener("click", async () => {
    const left = saveURL(state.mode);
    const note = left.length ? ` (too long for a link, left out: ${left.join(", ")})` : "";
    try {
      await navigator.clipboard.writeText(location.href);
      setStatus(`a link to these settings is copied: with the seed, it gives the same text${note}`);
    } catch {
      setStatus(`the link to these settings: ${location.href}${note}`);
    }
  });
  $("seed").addEventListener("input", () => { $("seed-lock").checked = $("seed").value.trim() !== ""; });
  $("colour-toggle").addEventListener("change", applyColourToggle);
  $("generate").addEventListener("click", primary);
  $("write-continue").addEventListener("click", primary);
  $("stop-button").addEventListener("click", stop);
  $("write-stop").addEventListener("click", stop);
  $("inspector-close").addEventListener("click", hide);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); primary(); }
    else if (e.key === "Escape" && state.controller) { e.preventDefault(); stop(); }
    else if (e.key === "Escape" && !$("inspector").hidden) { e.preventDefault(); hide(); }
    else if (state.mode === "write" && writeKey(e)) e.preventDefault();
  });
  $("output").addEventListener("mouseover", (e) => {
    const span = e.target.closest("span[data-i]");
    if (span) $("token-info").textContent = tokenInfo(span);
  });
  let pending = false;
  new ResizeObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawCurves(); });
  }).observe(document.querySelector("main"));
  showVary();
  setMode(mode || "generate");
  document.body.dataset.ready = "1";
}

init();
