// chargen playground: no build step, no dependencies; everything is served by `chargen serve`.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { dist: null, controller: null, generated: "" };

function temperature() { return parseFloat($("temperature").value); }

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

function drawBars(canvas, tokens, probs, order) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, n = order.length;
  ctx.clearRect(0, 0, w, h);
  const bw = (w - 20) / Math.max(n, 1);
  ctx.font = "11px monospace";
  order.forEach((idx, k) => {
    const bh = probs[idx] * (h - 40);
    ctx.fillStyle = "#3b6ea8";
    ctx.fillRect(10 + k * bw + 1, h - 24 - bh, bw - 2, bh);
    ctx.fillStyle = "#1d2430";
    ctx.fillText(label(tokens[idx]).slice(0, 3), 10 + k * bw + 2, h - 8);
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
  $("caption-t1").textContent = `T = 1: entropy ${h1.toFixed(2)} bits`;
  $("caption-t").textContent = `T = ${temperature().toFixed(2)}: entropy ${ht.toFixed(2)} bits`;
  $("chart-t").dataset.entropy = ht.toFixed(4);
  $("chart-t").dataset.top = pt[order[0]].toFixed(4);
}

async function refreshDistribution() {
  const prompt = $("prompt").value + state.generated;
  const res = await fetch("/v1/distribution", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: prompt.slice(-2000) }),
  });
  if (res.ok) { state.dist = await res.json(); drawDistributions(); }
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function colourFor(logprob) {
  const p = Math.exp(logprob);
  const level = Math.round(255 * p);
  return `rgb(255, ${level}, ${level})`;
}

async function generate() {
  $("status").textContent = "generating…";
  $("generate").disabled = true; $("stop").disabled = false;
  const out = $("output");
  out.textContent = "";
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  out.appendChild(prompt);
  state.generated = "";
  state.controller = new AbortController();
  const body = {
    prompt: $("prompt").value, temperature: temperature(), length: numberOrNull("length") ?? 300,
    seed: numberOrNull("seed") ?? 0, top_k: numberOrNull("top_k"), top_p: numberOrNull("top_p"),
    min_p: numberOrNull("min_p"), stream: true,
  };
  try {
    const res = await fetch("/v1/generate", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify(body), signal: state.controller.signal,
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ detail: res.statusText }));
      throw new Error(typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail));
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
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
          span.style.background = colourFor(data.logprob);
          span.title = `p = ${Math.exp(data.logprob).toFixed(3)}, entropy ${data.entropy.toFixed(2)} nats`;
          out.appendChild(span);
          state.generated += data.token;
        } else if (kind === "done") {
          state.generated = data.text;
          $("status").textContent = `done (${data.stop_reason}), ${data.tokens} tokens`;
        } else if (kind === "error") {
          $("status").textContent = `error: ${data.detail}`;
        } else if (kind === "warning") {
          $("status").textContent = data.warning;
        }
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") $("status").textContent = `error: ${err.message}`;
    else $("status").textContent = "stopped";
  } finally {
    $("generate").disabled = false; $("stop").disabled = true;
    refreshDistribution();
  }
}

function drawCurves(metrics) {
  const canvas = $("curves"), ctx = canvas.getContext("2d");
  const evals = metrics.filter((m) => m.kind === "eval");
  const train = metrics.filter((m) => m.kind === "train");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!evals.length && !train.length) { $("curves-caption").textContent = "no metrics yet"; return; }
  const LN2 = Math.log(2);
  const series = [
    { pts: train.map((m) => [m.step, m.loss / LN2]), colour: "#c08a2e", name: "train bits/char" },
    { pts: evals.map((m) => [m.step, m.val_bits_per_char]), colour: "#3b6ea8", name: "validation bits/char" },
  ];
  const all = series.flatMap((s) => s.pts);
  const xmax = Math.max(...all.map((p) => p[0]), 1);
  const ymin = Math.min(...all.map((p) => p[1])), ymax = Math.max(...all.map((p) => p[1]));
  const X = (x) => 40 + (x / xmax) * (canvas.width - 60);
  const Y = (y) => canvas.height - 25 - ((y - ymin) / Math.max(ymax - ymin, 1e-9)) * (canvas.height - 45);
  ctx.font = "11px sans-serif"; ctx.fillStyle = "#1d2430";
  ctx.fillText(ymax.toFixed(2), 2, 20); ctx.fillText(ymin.toFixed(2), 2, canvas.height - 25);
  ctx.fillText(`step ${xmax}`, canvas.width - 70, canvas.height - 8);
  series.forEach((s, k) => {
    ctx.strokeStyle = s.colour; ctx.lineWidth = 2; ctx.beginPath();
    s.pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    ctx.fillStyle = s.colour; ctx.fillText(s.name, 60 + k * 160, 14);
  });
  const last = evals[evals.length - 1];
  $("curves-caption").textContent = last
    ? `last validation: ${last.val_nats_per_char.toFixed(4)} nats/char, ${last.val_bits_per_char.toFixed(4)} bits/char at step ${last.step}`
    : "";
}

async function init() {
  const info = await (await fetch("/v1/model")).json();
  $("run-name").textContent = `run ${info.run}: ${info.config.model.family.toUpperCase()} ${info.config.model.hidden_size} × ${info.config.model.num_layers}, vocabulary ${info.vocab_size}`;
  drawCurves(info.metrics);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = temperature().toFixed(2);
    drawDistributions();
  });
  let timer = null;
  $("prompt").addEventListener("input", () => {
    state.generated = "";
    clearTimeout(timer); timer = setTimeout(refreshDistribution, 250);
  });
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  await refreshDistribution();
  document.body.dataset.ready = "1";
}

init();
