// The page of `chargen export --web`: reads config.json, vocab.json and model.onnx from its own
// folder, steps the graph with onnxruntime-web (wasm, copied into ort/), draws each token with
// chargen's rules and seeds (sampler.js) and colours it by surprisal in bits.
import * as ort from "./ort/ort.wasm.min.mjs";
import { Uniforms, checkConfig, draw, logprobs } from "./sampler.js";
import { Tokenizer } from "./tokenizer.js";

const $ = (id) => document.getElementById(id);
const LN2 = Math.log(2);
const YIELD_EVERY_MS = 30; // give the page a frame this often while generating

let site; // config.json
let tokenizer;
let session;
let running = null; // {stop: boolean} while generating

// ---------------------------------------------------------------- loading
async function getJSON(name) {
  const res = await fetch(name);
  if (!res.ok) throw new Error(`${name}: ${res.status} ${res.statusText}`);
  return res.json();
}

async function load() {
  [site, tokenizer] = await Promise.all([
    getJSON("config.json"),
    getJSON("vocab.json").then((data) => new Tokenizer(data)),
  ]);
  if (tokenizer.size !== site.vocab_size) throw new Error("vocab.json does not match the model");
  ort.env.wasm.numThreads = 1; // no SharedArrayBuffer without cross-origin isolation headers
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  const model = await fetch(site.model.file);
  if (!model.ok) throw new Error(`${site.model.file}: ${model.status} ${model.statusText}`);
  session = await ort.InferenceSession.create(new Uint8Array(await model.arrayBuffer()), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
    // fold the int8 weights' DequantizeLinear into float weights once, at load
    extra: { session: { disable_quant_qdq: "1" } },
  });
  showModel();
}

function showModel() {
  $("run-name").textContent = site.run;
  document.title = `${site.run} · chargen`;
  const m = site.model;
  const facts = [
    m.summary,
    `${formatCount(m.parameters)} parameters`,
    `${site.vocab_size} ${site.tokenizer === "char" ? "characters" : "tokens"}`,
  ];
  if (site.val_bits_per_char !== null) facts.push(`${site.val_bits_per_char.toFixed(3)} bits/char on held-out text`);
  facts.push(`${(m.bytes / 1e6).toFixed(2)} MB${m.quantize ? ` (${m.quantize})` : ""}`);
  $("model-facts").textContent = facts.join(" · ");
  $("length-unit").textContent = site.per === "character" ? "(chars)" : "(tokens)";
  $("prompt").value = site.prompt;
  $("prompt-hint").textContent = site.lines
    ? `${site.prompt_note} (This page writes one item after another from one state; ` +
      "chargen generate draws each item of a --lines run from a fresh state.)"
    : site.prompt_note;
  $("temperature").value = String(site.defaults.temperature);
  $("temperature-slider").value = String(site.defaults.temperature);
  $("length").value = String(site.defaults.length);
  drawLegend();
}

function formatCount(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}k`;
  return String(n);
}

function drawLegend() {
  const legend = $("legend");
  legend.textContent = "";
  const title = document.createElement("span");
  title.textContent = `${site.surprisal_scale.title} of each ${site.per} as drawn, in bits per ${site.per}: `;
  legend.appendChild(title);
  for (const b of site.surprisal_scale.bins) {
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

function colourFor(bits) {
  const bins = site.surprisal_scale.bins;
  if (!Number.isFinite(bits)) return bins[bins.length - 1].colour;
  let chosen = bins[0];
  for (const b of bins) if (bits >= b.from) chosen = b;
  return chosen.colour;
}

// ---------------------------------------------------------------- the model
function zeros(port, rows) {
  const shape = port.shape.map((d) => (d === "batch" ? rows : d));
  const size = shape.reduce((a, b) => a * b, 1);
  const data = port.dtype === "int64" ? new BigInt64Array(size) : new Float32Array(size);
  return new ort.Tensor(port.dtype, data, shape);
}

// One step of the graph: the logits (Float32Array) after reading `id`, and the new state.
async function step(id, state) {
  const feeds = { ids: new ort.Tensor("int64", BigInt64Array.of(BigInt(id)), [1]) };
  site.state.forEach((port, i) => (feeds[port.name] = state[i]));
  const out = await session.run(feeds);
  return { logits: out.logits.data, state: site.state.map((port) => out[`${port.name}_out`]) };
}

// ---------------------------------------------------------------- settings
function numberOrNull(id, parse) {
  const text = $(id).value.trim();
  if (text === "") return null;
  const value = parse(text);
  if (!Number.isFinite(value)) throw new Error(`${id}: not a number: ${text}`);
  return value;
}

function settings() {
  const temperature = numberOrNull("temperature", Number);
  const length = numberOrNull("length", Number);
  if (temperature === null) throw new Error("temperature: give a number >= 0");
  if (length === null || !Number.isInteger(length) || length < 1 || length > site.limits.length) {
    throw new Error(`length must be an integer in [1, ${site.limits.length}]`);
  }
  const cfg = checkConfig({
    temperature,
    topK: numberOrNull("top-k", Number),
    topP: numberOrNull("top-p", Number),
    minP: numberOrNull("min-p", Number),
  });
  const seedText = $("seed").value.trim();
  if (seedText !== "" && !/^-?\d+$/.test(seedText)) throw new Error(`seed must be an integer, got ${seedText}`);
  const seed = seedText === "" ? BigInt(crypto.getRandomValues(new Uint32Array(1))[0]) : BigInt(seedText);
  return { cfg, length, seed };
}

// ---------------------------------------------------------------- generation
function warn(text, kind = "warning") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = `${kind}: ${text}`;
  $("warnings").appendChild(li);
}

function tokenSpan(piece, lp, entropy) {
  const span = document.createElement("span");
  span.textContent = piece;
  const bits = -lp / LN2;
  span.style.background = colourFor(bits);
  span.title = `${JSON.stringify(piece)}: p = ${Math.exp(lp).toFixed(3)} after the rules, surprisal ` +
    `${bits.toFixed(2)} bits; the distribution it was drawn from had entropy ${(entropy / LN2).toFixed(2)} bits`;
  return span;
}

async function generate() {
  if (running || !session) return;
  $("warnings").textContent = "";
  let request;
  try {
    request = settings();
  } catch (err) {
    warn(err.message, "error");
    return;
  }
  const { cfg, length, seed } = request;
  const prompt = $("prompt").value;
  const { ids, unknown } = tokenizer.encode(prompt);
  if (prompt && !ids.length) {
    warn(`every symbol of the prompt is missing from the model's vocabulary; use symbols the training text contains`, "error");
    return;
  }
  if (unknown.length) {
    const shown = unknown.slice(0, 10).map((s) => JSON.stringify(s)).join(", ");
    warn(`dropped ${unknown.length} symbol(s) the vocabulary lacks: ${shown}${unknown.length > 10 ? ", …" : ""}`);
  }
  if (!ids.length) ids.push(tokenizer.startToken());
  const job = { stop: false };
  running = job;
  $("generate").disabled = true;
  $("stop").hidden = false;
  $("used-seed").textContent = `seed ${seed}`;
  $("prompt-echo").textContent = prompt;
  const output = $("output");
  output.textContent = "";
  $("status").textContent = "reading the prompt…";
  const result = document.querySelector(".result");
  if (window.innerWidth < 860 && result.getBoundingClientRect().top > window.innerHeight * 0.6) {
    result.scrollIntoView({ block: "start", behavior: "smooth" }); // one column: show the text
  }
  const started = performance.now();
  let made = 0;
  try {
    let state = site.state.map((port) => zeros(port, 1));
    for (const id of ids.slice(0, -1)) state = (await step(id, state)).state;
    let last = ids[ids.length - 1];
    const uniforms = new Uniforms(seed);
    let frame = performance.now();
    let pending = document.createDocumentFragment();
    for (let t = 0; t < length && !job.stop; t++) {
      const out = await step(last, state);
      state = out.state;
      const lp = logprobs(out.logits, cfg);
      const picked = draw(lp, uniforms.at(t));
      pending.appendChild(tokenSpan(tokenizer.piece(picked.id), picked.logprob, picked.entropy));
      last = picked.id;
      made = t + 1;
      if (performance.now() - frame > YIELD_EVERY_MS) {
        output.appendChild(pending);
        pending = document.createDocumentFragment();
        $("status").textContent = `generating… ${made} of ${length}`;
        await new Promise((resolve) => setTimeout(resolve, 0));
        frame = performance.now();
      }
    }
    output.appendChild(pending);
    const seconds = (performance.now() - started) / 1000;
    const rate = made / Math.max(seconds, 1e-9);
    $("status").textContent = `done: ${made} ${site.per}${made === 1 ? "" : "s"} in ${seconds.toFixed(2)} s ` +
      `(${rate.toFixed(0)} per second)${job.stop ? ", stopped" : ""}`;
  } catch (err) {
    $("status").textContent = "failed";
    warn(err.message || String(err), "error");
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop").hidden = true;
  }
}

// ---------------------------------------------------------------- wiring
function wire() {
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => running && (running.stop = true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("temperature-slider").addEventListener("input", () => ($("temperature").value = $("temperature-slider").value));
  $("temperature").addEventListener("input", () => ($("temperature-slider").value = $("temperature").value));
  $("colour").addEventListener("change", () => {
    const on = $("colour").checked;
    document.body.classList.toggle("plain", !on);
    $("legend").hidden = !on;
  });
}

wire();
load().then(
  () => {
    $("generate").disabled = false;
    $("status").textContent = "ready: press Generate";
    document.body.dataset.ready = "1";
  },
  (err) => {
    $("status").textContent = "the model could not be loaded";
    warn(err.message || String(err), "error");
    document.body.dataset.ready = "error";
  },
);
