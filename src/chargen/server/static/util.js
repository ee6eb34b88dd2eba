// Shared by the playground's modules: the page's state, formatting, the seed's reweighting,
// the surprisal colours, and reading a server-sent event stream.

export const $ = (id) => document.getElementById(id);
export const LN2 = Math.log(2);

// What every module reads: the run (GET /v1/model), its unit and colour scale.
export const shared = {
  info: null, per: "character", scale: null, seedText: "", limits: {},
};

export function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
export function perShort() { return shared.per === "character" ? "char" : "token"; }
export function nextNoun() { return `next ${shared.per}`; }
export function NextNoun() { return `Next ${shared.per}`; }

// A token as it can be read in a label: newline, tab and space made visible.
export function tokenLabel(token) {
  if (token === "") return "∅";
  return token.replace(/\n/g, "⏎").replace(/\t/g, "⇥").replace(/ /g, "␣");
}

// The last characters of a context, quoted for a caption: "…the slo".
export function contextTail(text, most = 24) {
  const tail = text.length > most ? `…${text.slice(-most)}` : text;
  return `“${tail.replace(/\n/g, "⏎")}”`;
}

// A probability in per cent, with as many digits as it needs to be read.
export function percent(p) {
  if (p <= 0) return "0%";
  const v = p * 100;
  if (v >= 10) return `${v.toFixed(1)}%`;
  if (v >= 0.1) return `${v.toFixed(2)}%`;
  return v >= 0.001 ? `${v.toFixed(3)}%` : "<0.001%";
}

// The seed's reweighting: p' = exp(log p / T) / sum exp(log p / T); T = 0 is greedy.
export function reweight(logprobs, t) {
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

export function entropyBits(p) {
  return -p.reduce((acc, x) => (x > 0 ? acc + x * Math.log2(x) : acc), 0);
}

// The scale is score --html's (chargen.score.SURPRISAL_SCALE), sent by GET /v1/model.
export function colourFor(bits) {
  const bins = shared.scale.bins;
  if (!Number.isFinite(bits)) return bins[bins.length - 1].colour;
  let chosen = bins[0];
  for (const b of bins) if (bits >= b.from) chosen = b;
  return chosen.colour;
}

// One generated token as a coloured span; its numbers in its title (and data attributes).
export function tokenSpan(data, index) {
  const span = document.createElement("span");
  span.textContent = data.token;
  span.dataset.i = String(index);
  span.dataset.logprob = String(data.logprob);
  span.dataset.entropy = String(data.entropy);
  span.style.background = colourFor(-data.logprob / LN2);
  span.title = tokenInfo(span);
  return span;
}

export function tokenInfo(span) {
  const lp = Number(span.dataset.logprob), ent = Number(span.dataset.entropy);
  return `${JSON.stringify(span.textContent)}: p = ${Math.exp(lp).toFixed(3)} after the rules, ` +
    `surprisal ${(-lp / LN2).toFixed(2)} bits; the distribution it was drawn from had entropy ` +
    `${(ent / LN2).toFixed(2)} bits`;
}

// POST JSON; the parsed answer, or an Error holding the server's one line.
export async function postJSON(path, body, signal) {
  const res = await fetch(path, {
    method: "POST", headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body), signal,
  });
  if (!res.ok) throw await failure(res);
  return res.json();
}

export async function failure(res) {
  const err = await res.json().catch(() => ({ detail: res.statusText }));
  return new Error(typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail));
}

// POST /v1/generate with stream: true; calls onEvent(kind, data) per server-sent event.
// Seeds go up to 2**64 - 1, past what a JavaScript number holds exactly: the body is sent
// with the seed written as the digits it was given.
export async function streamGenerate(body, seed, signal, onEvent) {
  const json = JSON.stringify({ ...body, seed: "__SEED__", stream: true }).replace('"__SEED__"', seed);
  const res = await fetch("/v1/generate", {
    method: "POST", headers: { "content-type": "application/json" }, body: json, signal,
  });
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", finished = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (kind === "done" || kind === "error") finished = true;
      onEvent(kind, data);
    }
  }
  return finished;
}

export const REASONS = {
  length: "reached the length asked for", stop: "met a stop string", timeout: "ran out of time",
};

export function doneLine(data) {
  return `done: ${plural(data.tokens, shared.per)}, ${REASONS[data.stop_reason] || data.stop_reason}`;
}
