// The settings: every sampling field of POST /v1/generate as a labelled control (its id is the
// field's name, data-kind says how to read it), the seed, and the page's URL, which holds every
// setting that differs from its default so that a link reproduces a sample.

import { $, shared } from "./util.js";

const MAX_SEED = (1n << 64n) - 1n;

export function fieldControls() { return [...document.querySelectorAll("[data-field]")]; }

// "\n", "\t" and "\\" in a list written one item per line.
function unescapeLine(line) {
  return line.replace(/\\(n|t|\\)/g, (_, c) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

// The value a control sends, or undefined to leave the server's default.
function read(el) {
  const raw = el.value;
  switch (el.dataset.kind) {
    case "float": case "int": return raw.trim() === "" ? undefined : Number(raw);
    case "text": return raw === "" ? undefined : raw;
    case "lines": return raw.split("\n").filter((l) => l !== "").map(unescapeLine);
    default: return raw;
  }
}

// The sampling fields of the controls: the body /v1/distribution takes (with a prompt), and
// with the stop strings (data-field="generate"), /v1/generate's but for prompt, length and seed.
export function samplingBody(withStops = false) {
  const body = {};
  for (const el of fieldControls()) {
    const v = read(el);
    if (v !== undefined && (withStops || el.dataset.field !== "generate")) body[el.id] = v;
  }
  return body;
}

// What /v1/generate takes (but the seed) for `prompt` with the settings of the controls.
export function generateBody(prompt, sampling = samplingBody()) {
  const stops = samplingBody(true).stop;
  return { ...sampling, stop: stops, prompt, length: lengthAsked() };
}

export function temperature() { return parseFloat($("temperature").value); }

export function lengthAsked() {
  const v = $("length").value.trim();
  return v === "" ? 300 : Number(v);
}

// ---------------------------------------------------------------- seeds
function drawSeed() {
  const words = new Uint32Array(1);
  crypto.getRandomValues(words);
  return String(words[0]);
}

// The seed to use: the one shown when kept, else a fresh one (then shown).
export function chosenSeed() {
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

// ---------------------------------------------------------------- groups
// Each <details> group says in its summary how many of its settings are on.
export function describeGroups() {
  for (const group of document.querySelectorAll("details.group")) {
    const changed = [...group.querySelectorAll("[data-field]")].filter((el) => el.value !== el.defaultValue);
    const badge = group.querySelector(".count");
    badge.textContent = changed.length ? `${changed.length} changed` : "";
  }
  $("temperature-value").textContent = temperature().toFixed(2);
}

export function resetSettings() {
  for (const el of fieldControls()) el.value = el.defaultValue;
  describeGroups();
}

// ---------------------------------------------------------------- the URL
// Every control marked data-url, by its id, when it differs from its default; a link with a
// seed keeps it (the same seed and settings give the same text).
export function urlControls() { return [...document.querySelectorAll("[data-url]")]; }

// A control's value as the page first had it (a <select> has no defaultValue: its option so).
function defaultOf(el) {
  if (el.tagName !== "SELECT") return el.defaultValue;
  const first = [...el.options].find((o) => o.defaultSelected) || el.options[0];
  return first ? first.value : "";
}

// A value longer than this stays out of the link (a server refuses very long addresses);
// the ids of those left out are returned.
const URL_VALUE_MOST = 2000;

export function saveURL(mode) {
  const params = new URLSearchParams();
  const left = [];
  if (mode !== "generate") params.set("mode", mode);
  for (const el of urlControls()) {
    if (el.value === defaultOf(el)) continue;
    if (el.value.length > URL_VALUE_MOST) left.push(el.id);
    else params.set(el.id, el.value);
  }
  const query = params.toString();
  const url = `${location.pathname}${query ? `?${query}` : ""}`;
  if (url !== `${location.pathname}${location.search}`) history.replaceState(null, "", url);
  return left;
}

// The controls from the URL; the mode it names (or null). Unknown names are ignored.
export function restoreURL() {
  const params = new URLSearchParams(location.search);
  for (const el of urlControls()) {
    if (params.has(el.id)) el.value = params.get(el.id);
  }
  if (params.get("seed")) $("seed-lock").checked = true;
  // a group holding a changed setting opens, so that the link's reader sees it
  for (const group of document.querySelectorAll("details.group")) {
    if ([...group.querySelectorAll("[data-field]")].some((el) => el.value !== el.defaultValue)) {
      group.open = true;
    }
  }
  describeGroups();
  return params.get("mode");
}

// ---------------------------------------------------------------- example prompts
// From the run's own text: its seed text, that text's first line and first words, nothing.
// Each {text, name}: the prompt and what its button says.
export function examplePrompts() {
  const seed = shared.seedText;
  const out = [];
  const quoted = (text) => `“${text.length > 24 ? `${text.slice(0, 23)}…` : text}”`;
  const add = (text, name) => {
    if (!out.some((e) => e.text === text)) out.push({ text, name });
  };
  if (seed) add(seed, "the seed text");
  const firstLine = seed.split("\n").find((l) => l.trim() !== "");
  if (firstLine) add(`${firstLine}\n`, quoted(firstLine.trim()));
  const words = seed.trim().split(/\s+/).slice(0, 2).join(" ");
  if (words) add(`${words} `, quoted(words));
  add("", "nothing (from scratch)");
  return out;
}
