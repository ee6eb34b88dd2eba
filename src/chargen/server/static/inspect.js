// The distribution at every position: POST /v1/distribution (cached per context and settings),
// the inspector that hovering, tapping or focusing a generated token opens (top 10 before and
// after the sampling rules), and the section of charts: the model's distribution and then the
// one after each rule of the chain (the sampler X-ray), for the hovered position or the end of
// the text.

import { drawBars } from "./bars.js";
import { samplingBody } from "./settings.js";
import { $, NextNoun, contextTail, nextNoun, percent, postJSON, shared } from "./util.js";

const TOP = 10; // rows per chart
const XRAY_TOP = 40; // asked of the server: the token drawn is found in most stages
const cache = new Map();
const CACHE_MOST = 500;

// The answer of /v1/distribution for `context` with `sampling` (fields of /v1/generate).
export function fetchDistribution(context, sampling) {
  const chars = [...context];
  const most = shared.limits.max_prompt_chars || 16384;
  const prompt = chars.length > most ? chars.slice(-most).join("") : context;
  const body = { ...sampling, prompt, top: XRAY_TOP, xray_top: XRAY_TOP };
  const key = JSON.stringify(body);
  if (!cache.has(key)) {
    if (cache.size >= CACHE_MOST) cache.delete(cache.keys().next().value);
    const answer = postJSON("/v1/distribution", body);
    answer.catch(() => cache.delete(key)); // a failure is asked again next time
    cache.set(key, answer);
  }
  return cache.get(key);
}

const probsOf = (tokens, logprobs) => tokens.map((token, i) => ({ token, p: Math.exp(logprobs[i]) }));

// The top rows of a stage, and the token drawn as one more row when it is not among them.
function rowsWithChosen(all, chosen) {
  const rows = all.slice(0, TOP);
  if (chosen !== undefined && !rows.some((r) => r.token === chosen)) {
    const found = all.find((r) => r.token === chosen);
    rows.push({ token: chosen, p: found ? found.p : 0 });
  }
  return rows;
}

// ---------------------------------------------------------------- views
// A view is an element holding generated tokens (spans with data-i) after a prompt, drawn with
// some settings: the main text, each column of the side-by-side mode. Its record: {prompt,
// pieces (each token's text), sampling (the fields it was drawn with), base (the controls'
// fields then, where sampling overrides one: a column's temperature)}.
const views = new Map();
const active = { el: null, i: -1, pinned: false, seq: 0 };

export function registerView(el, view) {
  views.set(el, view);
  if (el.dataset.inspectable) return;
  el.dataset.inspectable = "1";
  el.tabIndex = 0;
  el.setAttribute("role", "group");
  el.addEventListener("mouseover", (e) => {
    const span = e.target.closest("span[data-i]");
    if (span && !active.pinned) show(el, Number(span.dataset.i));
  });
  el.addEventListener("mouseleave", () => { if (!active.pinned) hide(); });
  el.addEventListener("click", (e) => {
    const span = e.target.closest("span[data-i]");
    if (!span) return;
    const i = Number(span.dataset.i);
    if (active.pinned && active.el === el && active.i === i) hide();
    else show(el, i, true);
  });
  el.addEventListener("focus", () => {
    if (active.el !== el) show(el, 0, true);
  });
  el.addEventListener("blur", (e) => {
    if (!$("inspector").contains(e.relatedTarget)) hide();
  });
  el.addEventListener("keydown", (e) => {
    const count = el.querySelectorAll("span[data-i]").length;
    if (!count) return;
    const at = active.el === el ? active.i : 0;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: count - 1 }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      show(el, Math.max(0, Math.min(count - 1, to)), true);
    } else if (e.key === "Escape" && active.el) {
      e.preventDefault();
      e.stopPropagation();
      hide();
    }
  });
}

export function forgetView(el) { views.delete(el); if (active.el === el) hide(); }

function contextAt(view, i) {
  return { context: view.prompt + view.pieces.slice(0, i).join(""), chosen: view.pieces[i] };
}

export function hide() {
  if (active.el) active.el.querySelectorAll(".current").forEach((s) => s.classList.remove("current"));
  active.el = null; active.pinned = false; active.seq++;
  $("inspector").hidden = true;
  refreshSection();
}

async function show(el, i, pin = false) {
  const view = views.get(el);
  if (!view || i < 0 || i >= view.pieces.length) return;
  if (active.el) active.el.querySelectorAll(".current").forEach((s) => s.classList.remove("current"));
  const span = el.querySelector(`span[data-i="${i}"]`);
  span.classList.add("current");
  Object.assign(active, { el, i, pinned: pin });
  const seq = ++active.seq;
  const box = $("inspector");
  box.classList.toggle("pinned", pin); // a hovering mouse goes through to the text beneath
  const { context, chosen } = contextAt(view, i);
  box.hidden = false;
  $("inspector-title").textContent = `${NextNoun()} after ${contextTail(context)}`;
  $("inspector-drawn").textContent = `drawn here: ${JSON.stringify(chosen)} (${shared.per} ${i + 1} of the text)`;
  $("inspector-status").textContent = "asking the model…";
  place(box, span);
  // the settings it was drawn with, which the controls may no longer show
  const changed = JSON.stringify(view.base ?? view.sampling) !== JSON.stringify(samplingBody());
  const settings = changed ? "with the settings it was drawn with, not those shown now" : "";
  $("inspector-settings").textContent = settings;
  const where = `at ${shared.per} ${i + 1} of the text${settings ? `, ${settings}` : ""}`;
  drawSection({ context, sampling: view.sampling, chosen, where });
  try {
    const answer = await fetchDistribution(context, view.sampling);
    if (seq !== active.seq) return;
    $("inspector-status").textContent = "";
    drawInspector(answer, chosen);
    place(box, span);
  } catch (err) {
    if (seq === active.seq) $("inspector-status").textContent = `no distribution: ${err.message}`;
  }
}

// Below the token, within the window's width.
function place(box, span) {
  const r = span.getBoundingClientRect();
  const page = document.documentElement.clientWidth;
  const width = box.offsetWidth;
  const left = Math.max(8, Math.min(r.left, page - width - 8));
  box.style.left = `${left + window.scrollX}px`;
  box.style.top = `${r.bottom + window.scrollY + 6}px`;
}

function drawInspector(answer, chosen) {
  const before = probsOf(answer.tokens, answer.logprobs);
  const last = answer.stages[answer.stages.length - 1];
  const after = probsOf(last.tokens, last.logprobs);
  const ruled = answer.stages.length > 1;
  drawBars($("inspector-before"), {
    title: [strong("before"), " the rules: the model, T = 1"],
    rows: rowsWithChosen(before, chosen), chosen, noun: nextNoun(),
  });
  drawBars($("inspector-after"), {
    title: [strong("after"), ruled ? " the rules: what it was drawn from" : " the rules: none is on, the same"],
    rows: rowsWithChosen(after, chosen), chosen, noun: nextNoun(),
    note: `${last.kept} of ${shared.info.vocab_size} keep p > 0`,
  });
  const drawn = after.find((r) => r.token === chosen);
  $("inspector-status").textContent = drawn
    ? `p of the ${shared.per} drawn: ${percent(before.find((r) => r.token === chosen)?.p ?? 0)} before, ${percent(drawn.p)} after the rules.`
    : "";
}

function strong(text) {
  const b = document.createElement("strong");
  b.textContent = text;
  return b;
}

// ---------------------------------------------------------------- the section of charts
let endContext = () => ({ context: "", where: "" });
let sectionSeq = 0;
let sectionTimer = null;

// Where the charts look when no token is inspected: a function giving {context, where}.
export function setEndContext(fn) { endContext = fn; }

// The charts for the inspected token, or (soon after the last call) for the end of the text.
export function refreshSection(delay = 150) {
  clearTimeout(sectionTimer);
  if (active.el) return;
  sectionTimer = setTimeout(() => {
    if (!active.el) drawSection({ ...endContext(), sampling: samplingBody() });
  }, delay);
}

async function drawSection({ context, sampling, chosen, where }) {
  const seq = ++sectionSeq;
  $("charts-context").textContent = contextTail(context, 40);
  $("charts-where").textContent = where;
  let answer;
  try {
    answer = await fetchDistribution(context, sampling);
  } catch (err) {
    if (seq === sectionSeq) $("charts-status").textContent = `no distribution: ${err.message}`;
    return;
  }
  if (seq !== sectionSeq) return;
  $("charts-status").textContent = "";
  const figures = $("xray");
  figures.textContent = "";
  const n = answer.stages.length;
  answer.stages.forEach((stage, k) => {
    const fig = document.createElement("figure");
    const rows = rowsWithChosen(probsOf(stage.tokens, stage.logprobs), chosen);
    const h = stage.entropy_bits === null ? "–" : stage.entropy_bits.toFixed(2);
    const name = k === 0 ? "the model, T = 1" : stage.label;
    const role = k === 0 ? (n === 1 ? "no rule is on: drawn from this" : "before the rules")
      : k === n - 1 ? "drawn from this" : `rule ${k} of ${n - 1}`;
    drawBars(fig, {
      title: [strong(`${k + 1}. ${name}`), document.createElement("br"), `${role} · entropy ${h} bits`],
      rows, chosen, noun: nextNoun(),
      note: `${stage.kept} of ${shared.info.vocab_size} keep p > 0`,
    });
    fig.id = k === 0 ? "chart-t1" : k === n - 1 ? "chart-last" : "";
    fig.dataset.label = stage.label;
    fig.dataset.entropy = h;
    if (k === n - 1) fig.classList.add("last");
    figures.appendChild(fig);
  });
  document.body.dataset.sectionContext = context;
}
