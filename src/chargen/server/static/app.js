// chargen playground: no build step, no dependencies; everything is served by `chargen serve`.
"use strict";

const $ = (id) => document.getElementById(id);
const LN2 = Math.log(2);
const MAX_SEED = (1n << 64n) - 1n;
const state = {
  dist: null, controller: null, generated: "", info: null, metrics: [],
  per: "character", scale: null, seedText: "",
};

function temperature() { return parseFloat($("temperature").value); }
function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
function perShort() { return state.per === "character" ? "char" : "token"; }

// The seed's reweighting: p' = exp(log p / T) / sum exp(log p / T); T = 0 is greedy.
function reweight(logprobs, t) {
  if (t <= 0) {
    const best = logprobs.indexOf(Math.max(...logprobs));
    return logprobs.map((_, i) => (i === best ? 1 : 0));
  }
  const scaled = logprobs.map((l) => l / t);
  const max = Math.max(...scaled);
  const w = scaled.map((s) => Math.exp(s - max));
  const z = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / z);
}

function entropyBits(p) {
  return -p.reduce((acc, x) => (x > 0 ? acc + x * Math.log2(x) : acc), 0);
}

function label(token) {
  return token === "\n" ? "\\n" : token === " " ? "␣" : token === "\t" ? "\\t" : token;
}

// ---------------------------------------------------------------- canvases
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

function drawBars(canvas, tokens, probs, order) {
  const { ctx, w, h } = fit(canvas);
  const left = 34, bottom = 22, top = 10;
  const n = order.length, plot = h - bottom - top;
  const bw = (w - left - 4) / Math.max(n, 1);
  ctx.font = "11px sans-serif"; ctx.textBaseline = "middle";
  [0, 0.25, 0.5, 0.75, 1].forEach((p) => {
    const y = top + plot * (1 - p);
    ctx.strokeStyle = "#e3e6ec"; ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillStyle = "#556"; ctx.fillText(p.toFixed(2), 2, y);
  });
  ctx.font = "11px ui-monospace, monospace";
  const fits = Math.max(1, Math.floor(bw / 7));
  order.forEach((idx, k) => {
    const bh = probs[idx] * plot;
    ctx.fillStyle = "#3b6ea8";
    ctx.fillRect(left + k * bw + 1, top + plot - bh, Math.max(bw - 2, 1), bh);
    ctx.fillStyle = "#1d2430";
    ctx.fillText(label(tokens[idx]).slice(0, fits), left + k * bw + 2, h - 10);
  });
}

function drawDistributions() {
  if (!state.dist) return;
  const { tokens, logprobs } = state.dist;
  const p1 = reweight(logprobs, 1);
  const pt = reweight(logprobs, temperature());
  const order = p1.map((_, i) => i).sort((a, b) => p1[b] - p1[a]).slice(0, 20);
  drawBars($("chart-t1"), tokens, p1, order);
  drawBars($("chart-t"), tokens, pt, order);
  const h1 = entropyBits(p1), ht = entropyBits(pt);
  $("caption-t1").textContent = `T = 1 (the model): entropy ${h1.toFixed(2)} bits`;
  $("caption-t").textContent = `T = ${temperature().toFixed(2)}: entropy ${ht.toFixed(2)} bits`;
  $("chart-t").dataset.entropy = ht.toFixed(4);
  $("chart-t").dataset.top = pt[order[0]].toFixed(4);
}

async function refreshDistribution() {
  const prompt = $("prompt").value + state.generated;
  try {
    const res = await fetch("/v1/distribution", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: prompt.slice(-2000) }),
    });
    if (res.ok) { state.dist = await res.json(); drawDistributions(); return; }
    const err = await res.json().catch(() => ({ detail: res.statusText }));
    $("caption-t1").textContent = `no distribution: ${err.detail}`;
  } catch (err) {
    $("caption-t1").textContent = `no distribution: ${err.message}`;
  }
}

// ---------------------------------------------------------------- colour
// The scale is score --html's (chargen.score.SURPRISAL_SCALE), sent by GET /v1/model.
function colourFor(bits) {
  const bins = state.scale.bins;
  if (!Number.isFinite(bits)) return bins[bins.length - 1].colour;
  let chosen = bins[0];
  for (const b of bins) if (bits >= b.from) chosen = b;
  return chosen.colour;
}

function drawLegend() {
  const legend = $("legend");
  legend.textContent = "";
  const title = document.createElement("span");
  title.textContent = `${state.scale.title} of each ${state.per} as drawn, in bits per ${state.per}: `;
  legend.appendChild(title);
  for (const b of state.scale.bins) {
    const sw = document.createElement("i");
    sw.className = "swatch";
    sw.style.background = b.colour;
    sw.textContent = b.label;
    legend.appendChild(sw);
  }
  const tail = document.createElement("span");
  tail.textContent = " pale = expected, red = surprising; p is after temperature and filters. Hover or tap a " +
    `${state.per} for its numbers.`;
  legend.appendChild(tail);
}

function applyColourToggle() {
  const on = $("colour-toggle").checked;
  $("output").classList.toggle("plain", !on);
  $("legend").hidden = !on;
}

function tokenInfo(span) {
  const lp = Number(span.dataset.logprob), ent = Number(span.dataset.entropy);
  return `${JSON.stringify(span.textContent)}: p = ${Math.exp(lp).toFixed(3)}, surprisal ${(-lp / LN2).toFixed(2)} bits; ` +
    `the distribution it was drawn from had entropy ${(ent / LN2).toFixed(2)} bits`;
}

// ---------------------------------------------------------------- warnings and status
function clearWarnings() { $("warnings").textContent = ""; }

function addWarning(text, kind = "warning") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = `${kind === "error" ? "error" : "warning"}: ${text}`;
  $("warnings").appendChild(li);
}

function setStatus(text) { $("status").textContent = text; }

const REASONS = { length: "reached the length asked for", stop: "met a stop string", timeout: "ran out of time" };

// ---------------------------------------------------------------- seeds
function drawSeed() {
  const words = new Uint32Array(1);
  crypto.getRandomValues(words);
  return String(words[0]);
}

function chosenSeed() {
  if (!$("seed-lock").checked || $("seed").value.trim() === "") {
    const seed = drawSeed();
    $("seed").value = seed;
    return seed;
  }
  const text = $("seed").value.trim();
  if (!/^\d+$/.test(text) || BigInt(text) > MAX_SEED) {
    throw new Error(`the seed must be a whole number from 0 to ${MAX_SEED}, got "${text}"`);
  }
  return BigInt(text).toString();
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

// ---------------------------------------------------------------- generation
async function generate() {
  if (state.controller) return;
  clearWarnings();
  let seed;
  try { seed = chosenSeed(); } catch (err) { addWarning(err.message, "error"); setStatus("not started"); return; }
  setStatus("generating…");
  $("generate").disabled = true; $("stop").disabled = false;
  const out = $("output");
  out.textContent = "";
  out.dataset.seed = seed;
  $("used-seed").textContent = `seed ${seed}`;
  $("token-info").textContent = "";
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  out.appendChild(prompt);
  state.generated = "";
  state.controller = new AbortController();
  const body = {
    prompt: $("prompt").value, temperature: temperature(), length: numberOrNull("length") ?? 300,
    seed: "__SEED__", top_k: numberOrNull("top_k"), top_p: numberOrNull("top_p"),
    min_p: numberOrNull("min_p"), stream: true,
  };
  // seeds go up to 2**64 - 1, past what a JavaScript number holds exactly: sent as written
  const json = JSON.stringify(body).replace('"__SEED__"', seed);
  let finished = false;
  try {
    const res = await fetch("/v1/generate", {
      method: "POST", headers: { "content-type": "application/json" },
      body: json, signal: state.controller.signal,
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ detail: res.statusText }));
      throw new Error(typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail));
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const unit = state.per;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (kind === "token") {
          const span = document.createElement("span");
          span.textContent = data.token;
          span.style.background = colourFor(-data.logprob / LN2);
          span.dataset.logprob = String(data.logprob);
          span.dataset.entropy = String(data.entropy);
          span.title = tokenInfo(span);
          out.appendChild(span);
          state.generated += data.token;
        } else if (kind === "done") {
          finished = true;
          state.generated = data.text;
          setStatus(`done: ${plural(data.tokens, unit)}, ${REASONS[data.stop_reason] || data.stop_reason}`);
        } else if (kind === "error") {
          finished = true;
          addWarning(data.detail, "error");
          setStatus("stopped by an error");
        } else if (kind === "warning") {
          addWarning(data.warning);
        }
      }
    }
    if (!finished) setStatus("the connection closed early");
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped");
    else { addWarning(err.message, "error"); setStatus("not generated"); }
  } finally {
    state.controller = null;
    $("generate").disabled = false; $("stop").disabled = true;
    refreshDistribution();
  }
}

function stop() { if (state.controller) state.controller.abort(); }

// ---------------------------------------------------------------- training curves
function drawCurves() {
  const canvas = $("curves");
  const { ctx, w, h } = fit(canvas);
  const metrics = state.metrics;
  const evals = metrics.filter((m) => m.kind === "eval");
  const train = metrics.filter((m) => m.kind === "train");
  if (!evals.length && !train.length) { $("curves-caption").textContent = "no metrics yet"; return; }
  // the loss is in nats per token; on a character run a token is a character
  const unit = `bits/${perShort()}`;
  const valOf = (m) => (state.per === "character" ? m.val_bits_per_char : m.val_nats_per_token / LN2);
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
  ctx.textAlign = "center"; ctx.fillStyle = "#556"; ctx.fillText(`bits per ${state.per}`, 0, 0); ctx.restore();
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
  const both = (m) => (state.per === "character"
    ? `${m.val_bits_per_char.toFixed(3)} bits/char`
    : `${valOf(m).toFixed(3)} bits/token (${m.val_bits_per_char.toFixed(3)} bits/char)`);
  $("curves-caption").textContent = last
    ? `last validation: ${both(last)} at step ${last.step}; best: ${both(best)} at step ${best.step} (the weights served here). ` +
      (state.per === "character" ? "" : "A token of this run is a word or piece, not a character: losses are per token. ")
    : "no validation yet; training loss only";
}

function redraw() { drawDistributions(); drawCurves(); }

// ---------------------------------------------------------------- prompt
function describePrompt() {
  const info = state.info;
  const edited = $("prompt").value !== state.seedText;
  let text;
  if (info.seed_text_note) text = `${info.seed_text_note[0].toUpperCase()}${info.seed_text_note.slice(1)}.`;
  else if (!state.seedText) text = "An empty prompt starts from the beginning, as the model's own samples do.";
  else if (edited) text = "Your prompt.";
  else text = "The run's seed text: the stretch of its training text its samples started from.";
  $("prompt-origin").textContent = text;
  $("reset-prompt").hidden = !edited;
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
  state.info = info;
  state.metrics = info.metrics;
  state.scale = info.surprisal_scale;
  state.per = info.units.per;
  state.seedText = info.seed_text || "";
  const m = info.config.model;
  $("run-name").textContent = `run ${info.run}: ${m.family.toUpperCase()} ${m.hidden_size} × ${m.num_layers}, ` +
    `${info.tokenizer} tokens, vocabulary ${info.vocab_size}`;
  document.querySelectorAll(".unit-noun").forEach((e) => { e.textContent = state.per; });
  $("length-unit").textContent = `(${state.per}s)`;
  $("prompt").value = state.seedText;
  describePrompt();
  drawLegend();
  applyColourToggle();
  drawCurves();

  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = temperature().toFixed(2);
    drawDistributions();
  });
  let timer = null;
  $("prompt").addEventListener("input", () => {
    state.generated = "";
    describePrompt();
    clearTimeout(timer); timer = setTimeout(refreshDistribution, 250);
  });
  $("reset-prompt").addEventListener("click", () => {
    $("prompt").value = state.seedText;
    state.generated = "";
    describePrompt();
    refreshDistribution();
    $("prompt").focus();
  });
  $("seed").addEventListener("input", () => { $("seed-lock").checked = $("seed").value.trim() !== ""; });
  $("colour-toggle").addEventListener("change", applyColourToggle);
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", stop);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
    else if (e.key === "Escape" && state.controller) { e.preventDefault(); stop(); }
  });
  const showToken = (e) => {
    const span = e.target.closest("#output span:not(.prompt)");
    if (span) $("token-info").textContent = tokenInfo(span);
  };
  $("output").addEventListener("mouseover", showToken);
  $("output").addEventListener("click", showToken);
  let pending = false;
  new ResizeObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; redraw(); });
  }).observe(document.querySelector("main"));
  await refreshDistribution();
  document.body.dataset.ready = "1";
}

init();
