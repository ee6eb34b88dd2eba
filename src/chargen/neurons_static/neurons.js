"use strict";
// The neuron lab page: the text coloured by one unit, the model's top guesses under each
// character, the units found for each feature, and select-a-span-find-its-units.
// Only the rows in view are in the DOM (virtual scroll), so long texts stay fast.
(() => {
  const D = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const chars = Array.from(D.text); // code points, as Python indexes them
  const n = chars.length;
  const K = D.k;
  // [{layer, kind, unit, offset, scale (value = offset + q * scale), median, zero, spread,
  //   centred, data (base64 int8)}]
  const units = D.units;
  const U = units.length;

  // ------------------------------------------------------------------ data
  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const guessRaw = bytes(D.guessIds);
  const guessIds =
    D.guessWidth === 4 ? new Uint32Array(guessRaw.buffer)
      : D.guessWidth === 2 ? new Uint16Array(guessRaw.buffer) : guessRaw;
  const guessProbs = bytes(D.guessProbs); // round(p * 255)
  // what render writes for a guess, made once: each piece's text and each level's style
  const guessText = D.vocab.map((piece) => esc(shownGuess(piece)));
  const guessStyle = Array.from({ length: 256 }, (_, q) => {
    const p = q / 255;
    return `background:rgba(40,44,52,${(p * 0.9).toFixed(3)});color:${p > 0.45 ? "#fff" : "#1d2430"}`;
  });

  const cache = new Map(); // unit -> Int8Array of all n values (most recent last)
  function values(u) {
    let v = cache.get(u);
    if (v) {
      cache.delete(u);
    } else {
      v = new Int8Array(bytes(units[u].data).buffer);
    }
    cache.set(u, v);
    if (cache.size > 48) cache.delete(cache.keys().next().value);
    return v;
  }
  // values of unit u at [a, b) without decoding the rest (3 bytes = 4 base64 characters)
  function valuesRange(u, a, b) {
    const whole = cache.get(u);
    if (whole) return whole.subarray(a, b);
    const g0 = Math.floor(a / 3);
    const g1 = Math.ceil(b / 3);
    const part = bytes(units[u].data.slice(4 * g0, 4 * g1));
    return new Int8Array(part.buffer, a - 3 * g0, b - a);
  }

  // the colour scale of unit u: centred on 0 or on its median, half-width covering 99.5% of it
  let centreMode = "auto";
  function frame(u) {
    const m = units[u];
    const median = centreMode === "median" || (centreMode === "auto" && m.centred);
    return median ? { centre: m.median, half: m.spread, median } : { centre: 0, half: m.zero, median };
  }
  // level[q + 127]: where a stored value falls on the colour scale (-1 .. 1 is the ramp)
  function levels(u) {
    const m = units[u];
    const f = frame(u);
    const out = new Float32Array(255);
    for (let q = -127; q <= 127; q++) out[q + 127] = (m.offset + q * m.scale - f.centre) / f.half;
    return out;
  }
  function unitName(u) {
    const m = units[u];
    return `layer ${m.layer} ${m.kind} ${m.unit}`;
  }
  function shown(ch) {
    if (ch === "\n") return "\u21b5";
    if (ch === "\t") return "\u21e5";
    if (ch.length === 1 && ch.charCodeAt(0) < 32) return "\u00b7";
    return ch;
  }
  function shownGuess(ch) {
    return ch === " " ? "\u2423" : shown(ch);
  }
  function esc(s) {
    return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }
  function fmt(x) {
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(a >= 1 ? 2 : 3);
  }
  function pct(p) {
    return p >= 0.1 ? `${Math.round(p * 100)}%` : `${(p * 100).toFixed(1)}%`;
  }

  // line starts, for "line L, column C"
  const lineStarts = [0];
  for (let i = 0; i < n; i++) if (chars[i] === "\n" && i + 1 < n) lineStarts.push(i + 1);
  function search(sorted, i) { // last index with sorted[k] <= i
    let lo = 0, hi = sorted.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (sorted[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  // ------------------------------------------------------------------ state
  let current = D.initial;
  let holdReady = false; // the hold panel follows the unit once its handlers are in place
  let curValues = values(current);
  let showGuesses = true;
  let sel = null; // {a, b}: [a, b)
  let anchor = null;
  let dragFrom = null;
  let matchMark = new Uint8Array(n);
  let threshold = 0.5;
  let candidates = [];

  // ------------------------------------------------------------------ layout and drawing
  const viewer = $("viewer");
  const spacer = $("spacer");
  const rowsEl = $("rows");
  const TEXT_H = 22, GUESS_H = 15, GAP = 8;
  let charW = 9, cols = 80, rowStart = new Int32Array([0, n]);

  function rowHeight() {
    return TEXT_H + (showGuesses ? K * GUESS_H : 0) + GAP;
  }
  function measure() {
    const line = document.createElement("div");
    line.className = "t";
    const probe = document.createElement("span");
    probe.className = "probe";
    probe.textContent = "M".repeat(40);
    line.appendChild(probe);
    rowsEl.appendChild(line);
    charW = probe.getBoundingClientRect().width / 40 || 9;
    line.remove();
    viewer.style.setProperty("--cw", `${charW}px`);
  }
  function layout() {
    cols = Math.max(8, Math.floor((viewer.clientWidth - 4) / charW));
    const starts = [0];
    let col = 0;
    for (let i = 0; i < n; i++) {
      if (col === cols) { starts.push(i); col = 0; }
      col++;
      if (chars[i] === "\n" && i + 1 < n) { starts.push(i + 1); col = 0; }
    }
    starts.push(n);
    rowStart = Int32Array.from(starts);
  }
  function colour(level) {
    const t = Math.min(1, Math.abs(level));
    const [r, g, b] = level >= 0 ? [200, 30, 30] : [30, 90, 200];
    const mix = (c) => Math.round(255 + (c - 255) * t);
    return [`rgb(${mix(r)},${mix(g)},${mix(b)})`, t > 0.55 ? "#fff" : "#1d2430"];
  }
  let palette = []; // palette[q + 127] = [background, text colour] of the current unit
  function render() {
    const rh = rowHeight();
    const rows = rowStart.length - 1;
    spacer.style.height = `${rows * rh}px`;
    const first = Math.max(0, Math.floor(viewer.scrollTop / rh) - 2);
    const last = Math.min(rows, Math.ceil((viewer.scrollTop + viewer.clientHeight) / rh) + 2);
    const v = curValues;
    const parts = [];
    for (let r = first; r < last; r++) {
      const a = rowStart[r], b = rowStart[r + 1];
      parts.push(`<div class="row" style="height:${rh}px"><div class="t">`);
      for (let i = a; i < b; i++) {
        const [bg, fg] = palette[v[i] + 127];
        let cls = chars[i] === "\n" ? "nl" : "";
        if (sel && i >= sel.a && i < sel.b) cls += " sel";
        else if (matchMark[i]) cls += " match";
        parts.push(`<span data-i="${i}" class="${cls}" style="background:${bg};color:${fg}">${esc(shown(chars[i]))}</span>`);
      }
      parts.push("</div>");
      if (showGuesses) {
        for (let k = 0; k < K; k++) {
          parts.push('<div class="g">');
          for (let i = a; i < b; i++) {
            const id = guessIds[i * K + k];
            const hit = i + 1 < n && D.vocab[id] === chars[i + 1] ? ' class="hit"' : "";
            parts.push(`<span data-j="${i}"${hit} style="${guessStyle[guessProbs[i * K + k]]}">${guessText[id]}</span>`);
          }
          parts.push("</div>");
        }
      }
      parts.push("</div>");
    }
    rowsEl.style.transform = `translateY(${first * rh}px)`;
    rowsEl.innerHTML = parts.join("");
  }
  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  }
  viewer.addEventListener("scroll", schedule);
  window.addEventListener("resize", () => {
    const top = topChar();
    measure();
    layout();
    scrollToChar(top, 0);
    render();
  });
  function topChar() { // the first character of the top row in view
    return rowStart[Math.min(rowStart.length - 2, Math.floor(viewer.scrollTop / rowHeight()))];
  }
  function rowOf(i) {
    return search(rowStart, i);
  }
  function scrollToChar(i, fraction) {
    const rh = rowHeight();
    viewer.scrollTop = Math.max(0, rowOf(i) * rh - viewer.clientHeight * fraction);
  }

  // ------------------------------------------------------------------ the unit picker and legend
  const picker = $("unit");
  function option(u, text) {
    const o = document.createElement("option");
    o.value = String(u);
    o.textContent = text;
    return o;
  }
  const order = []; // embedded units, layer by layer and kind by kind, for the arrows
  (() => {
    const best = document.createElement("optgroup");
    best.label = "Found for you: the best unit of each feature";
    for (const f of D.found) {
      if (f.ranked.length) {
        const top = f.ranked[0];
        best.appendChild(option(top.u, `${f.label}: ${unitName(top.u)} (r = ${top.r >= 0 ? "+" : ""}${top.r.toFixed(2)})`));
      }
    }
    if (best.children.length) picker.appendChild(best);
    const groups = new Map();
    for (let u = 0; u < U; u++) {
      const key = `layer ${units[u].layer} \u00b7 ${units[u].kind}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(u);
    }
    for (const [key, list] of groups) {
      const g = document.createElement("optgroup");
      g.label = `${key} (${list.length} unit${list.length === 1 ? "" : "s"} on this page)`;
      for (const u of list) {
        g.appendChild(option(u, unitName(u)));
        order.push(u);
      }
      picker.appendChild(g);
    }
  })();
  function selectUnit(u) {
    current = u;
    curValues = values(u);
    if (Number(picker.value) !== u) picker.value = String(u);
    palette = Array.from(levels(u), colour);
    const f = frame(u);
    const lo = f.centre - f.half, hi = f.centre + f.half;
    $("legend-lo").textContent = fmt(lo);
    $("legend-hi").textContent = `${hi > 0 ? "+" : ""}${fmt(hi)}`;
    $("legend-name").textContent = f.median
      ? `${unitName(u)}, centred on its median ${fmt(f.centre)}: blue below, red above`
      : `${unitName(u)}: blue negative, red positive`;
    $("legend-name").title = "99.5% of the unit's values lie within the ramp; beyond it the colour saturates";
    for (const chip of document.querySelectorAll(".chip")) {
      chip.classList.toggle("current", Number(chip.dataset.u) === u);
    }
    document.body.dataset.unit = String(u);
    if (holdReady) holdUnit(u);
    render();
  }
  picker.addEventListener("change", () => selectUnit(Number(picker.value)));
  function step(delta) {
    const at = order.indexOf(current);
    selectUnit(order[(at + delta + order.length) % order.length]);
  }
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("centre").addEventListener("change", (e) => {
    centreMode = e.target.value;
    selectUnit(current);
    if (sel) analyse();
  });
  $("guesses").addEventListener("change", (e) => {
    const top = topChar();
    showGuesses = e.target.checked;
    scrollToChar(top, 0);
    render();
  });

  // ------------------------------------------------------------------ found for you
  (() => {
    const table = $("found");
    for (const f of D.found) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = f.label;
      th.title = `${f.name}: ${f.definition}`;
      const td = document.createElement("td");
      if (!f.ranked.length) {
        td.innerHTML = '<span class="muted">not in this text (constant)</span>';
      }
      for (const item of f.ranked) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "chip";
        b.dataset.u = String(item.u);
        b.innerHTML = `${esc(unitName(item.u))} <b>${item.r >= 0 ? "+" : ""}${item.r.toFixed(2)}</b>`;
        b.addEventListener("click", () => selectUnit(item.u));
        td.appendChild(b);
      }
      tr.append(th, td);
      table.appendChild(tr);
    }
  })();

  // ------------------------------------------------------------------ hover details
  function details(i) {
    const line = search(lineStarts, i);
    const col = i - lineStarts[line];
    const value = units[current].offset + curValues[i] * units[current].scale;
    const guesses = [];
    for (let k = 0; k < K; k++) {
      const id = guessIds[i * K + k];
      guesses.push(`${JSON.stringify(D.vocab[id])} ${pct(guessProbs[i * K + k] / 255)}`);
    }
    const next = i + 1 < n ? ` (came next: ${JSON.stringify(chars[i + 1])})` : "";
    return `char ${i.toLocaleString()} ${JSON.stringify(chars[i])}, line ${line + 1} column ${col + 1} \u00b7 ` +
      `${unitName(current)} = ${fmt(value)}\nnext: ${guesses.join(", ")}${next}`;
  }
  function indexOf(target) {
    const el = target && target.closest ? target.closest("[data-i],[data-j]") : null;
    if (!el) return null;
    return Number(el.dataset.i !== undefined ? el.dataset.i : el.dataset.j);
  }
  rowsEl.addEventListener("mouseover", (e) => {
    const i = indexOf(e.target);
    if (i !== null) $("info").textContent = details(i);
  });

  // ------------------------------------------------------------------ select a span, find its units
  function setSelection(x, y) {
    sel = { a: Math.min(x, y), b: Math.max(x, y) + 1 };
    schedule();
  }
  rowsEl.addEventListener("mousedown", (e) => {
    const i = indexOf(e.target);
    if (i === null || e.button !== 0) return;
    e.preventDefault();
    if (e.shiftKey && anchor !== null) {
      setSelection(anchor, i);
      analyse();
      return;
    }
    anchor = i;
    dragFrom = i;
    setSelection(i, i);
  });
  document.addEventListener("mousemove", (e) => {
    if (dragFrom === null) return;
    const i = indexOf(e.target);
    if (i !== null) setSelection(dragFrom, i);
  });
  document.addEventListener("mouseup", () => {
    if (dragFrom === null) return;
    dragFrom = null;
    analyse();
  });
  $("threshold").addEventListener("input", (e) => {
    threshold = Number(e.target.value) / 100;
    $("threshold-value").textContent = `${e.target.value}%`;
    if (sel) analyse();
  });

  // units beyond the threshold on the colour scale (in either sign) across [a, b) and not at
  // a - 1 nor at b
  // A unit passes at threshold T when outside < T <= inside: {passing, near} where near are
  // the units that would pass at another threshold (best first), for a hint.
  function findUnits(a, b) {
    const T = threshold;
    const lo = Math.max(0, a - 1), hi = Math.min(n, b + 1);
    const passing = [], near = [];
    for (let u = 0; u < U; u++) {
      const v = valuesRange(u, lo, hi);
      const level = levels(u);
      for (const s of [1, -1]) {
        let inside = Infinity;
        for (let i = a; i < b; i++) inside = Math.min(inside, s * level[v[i - lo] + 127]);
        if (inside < Math.min(0.1, T)) continue;
        let outside = -Infinity;
        if (a > 0) outside = Math.max(outside, s * level[v[a - 1 - lo] + 127]);
        if (b < n) outside = Math.max(outside, s * level[v[b - lo] + 127]);
        if (outside >= inside) continue;
        const margin = Math.min(inside, 1) - Math.max(outside, -1);
        const item = { u, s, inside, outside, margin };
        if (T <= inside && outside < T) passing.push(item);
        else if (inside - outside >= 0.1) near.push(item);
      }
    }
    const best = (x, y) => y.margin - x.margin || x.u - y.u;
    passing.sort(best);
    near.sort(best);
    return { passing: passing.slice(0, 12), near: near.slice(0, 5) };
  }
  // the slider step (5%) inside (outside, inside], nearest the middle
  function suggested(c) {
    const low = Math.max(c.outside, 0.05), high = Math.min(c.inside, 0.95);
    const mid = Math.round(((low + high) / 2) * 20) * 5;
    for (const t of [mid, mid + 5, mid - 5]) if (t / 100 > c.outside && t / 100 <= c.inside && t >= 5 && t <= 95) return t;
    return null;
  }
  // maximal runs where every checked unit is on, other than the selection
  function findMatches(chosen) {
    matchMark = new Uint8Array(n);
    if (!chosen.length) return [];
    const on = new Uint8Array(n).fill(1);
    for (const c of chosen) {
      const v = values(c.u);
      const level = levels(c.u);
      for (let i = 0; i < n; i++) if (c.s * level[v[i] + 127] < threshold) on[i] = 0;
    }
    curValues = values(current);
    const runs = [];
    for (let i = 0; i < n; ) {
      if (!on[i]) { i++; continue; }
      let j = i;
      while (j < n && on[j]) j++;
      if (j <= sel.a || i >= sel.b) {
        runs.push([i, j]);
        matchMark.fill(1, i, j);
      }
      i = j;
    }
    return runs;
  }
  function quote(a, b, limit) {
    const piece = chars.slice(a, Math.min(b, a + limit)).map(shown).join("");
    return esc(piece) + (b - a > limit ? "\u2026" : "");
  }
  function analyse() {
    if (!sel) return;
    const result = findUnits(sel.a, sel.b);
    candidates = result.passing;
    const box = $("span-result");
    const len = sel.b - sel.a;
    let html = `<p>Selected ${len} character${len === 1 ? "" : "s"} at ${sel.a.toLocaleString()}: ` +
      `<span class="quote">${quote(sel.a, sel.b, 60)}</span> <button type="button" class="linkish" id="clear">clear</button></p>`;
    if (!candidates.length) {
      html += `<p class="muted" id="no-units">No unit on this page stays beyond ${Math.round(threshold * 100)}% ` +
        "across the whole span and below it just before and after.";
      const hints = result.near.map((c) => [c, suggested(c)]).filter(([, t]) => t !== null);
      if (hints.length) {
        html += " These would at another threshold:</p><ul>";
        for (const [c, t] of hints) {
          html += `<li>${esc(unitName(c.u))} ${c.s > 0 ? "red" : "blue"}: weakest inside ` +
            `${Math.min(c.inside, 1).toFixed(2)}, strongest just outside ${Math.max(c.outside, -1).toFixed(2)} ` +
            `<button type="button" class="linkish" data-threshold="${t}">use ${t}%</button></li>`;
        }
        html += "</ul>";
      } else {
        html += " Try a shorter span, or one that ends where something changes (a closing quote, the end of a word).</p>";
      }
      matchMark = new Uint8Array(n);
      box.innerHTML = html;
      $("clear").addEventListener("click", clearSelection);
      for (const b of box.querySelectorAll("[data-threshold]")) {
        b.addEventListener("click", () => {
          $("threshold").value = b.dataset.threshold;
          $("threshold").dispatchEvent(new Event("input"));
        });
      }
      document.body.dataset.matches = "0";
      render();
      return;
    }
    html += `<p>${candidates.length} unit${candidates.length === 1 ? "" : "s"} on across it and off just outside ` +
      "(weakest inside / strongest just outside, on the colour scale: 1 = full colour):</p><ul id=\"candidates\">";
    candidates.forEach((c, k) => {
      const out = Number.isFinite(c.outside) ? Math.max(c.outside, -1).toFixed(2) : "none";
      html += `<li><label><input type="checkbox" data-k="${k}"${k < 5 ? " checked" : ""}> ` +
        `<button type="button" class="linkish" data-show="${c.u}">${esc(unitName(c.u))}</button> ` +
        `${c.s > 0 ? "red" : "blue"}: ${Math.min(c.inside, 1).toFixed(2)} / ${out}</label></li>`;
    });
    html += '</ul><div id="matches"></div>';
    box.innerHTML = html;
    $("clear").addEventListener("click", clearSelection);
    for (const b of box.querySelectorAll("[data-show]")) {
      b.addEventListener("click", (e) => { e.preventDefault(); selectUnit(Number(b.dataset.show)); });
    }
    for (const cb of box.querySelectorAll("input[type=checkbox]")) cb.addEventListener("change", showMatches);
    showMatches();
  }
  function showMatches() {
    const chosen = [];
    for (const cb of document.querySelectorAll("#candidates input[type=checkbox]")) {
      if (cb.checked) chosen.push(candidates[Number(cb.dataset.k)]);
    }
    const runs = findMatches(chosen);
    document.body.dataset.matches = String(runs.length);
    let html;
    if (!chosen.length) {
      html = '<p class="muted">Check a unit to find where else it is on.</p>';
    } else if (!runs.length) {
      html = `<p class="muted">The ${chosen.length} checked unit${chosen.length === 1 ? " is" : "s are"} on nowhere else in the text.</p>`;
    } else {
      html = `<p>${runs.length.toLocaleString()} other place${runs.length === 1 ? "" : "s"} where the ${chosen.length} checked ` +
        `unit${chosen.length === 1 ? " is" : "s are"} on (amber underline)${runs.length > 40 ? "; the first 40" : ""}:</p><ul>`;
      for (const [a, b] of runs.slice(0, 40)) {
        html += `<li><button type="button" class="linkish jump" data-at="${a}">${a.toLocaleString()}</button> ` +
          `<span class="quote">${quote(Math.max(0, a - 8), a, 8)}<b>${quote(a, b, 40)}</b></span></li>`;
      }
      html += "</ul>";
    }
    const box = $("matches");
    box.innerHTML = html;
    for (const b of box.querySelectorAll("[data-at]")) {
      b.addEventListener("click", () => { scrollToChar(Number(b.dataset.at), 0.3); render(); });
    }
    render();
  }
  function clearSelection() {
    sel = null;
    anchor = null;
    matchMark = new Uint8Array(n);
    $("span-result").innerHTML = '<p class="muted">No span selected yet.</p>';
    delete document.body.dataset.matches;
    render();
  }
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && sel) clearSelection(); });

  // ------------------------------------------------------------------ hold a unit and write
  // The --clamp intervention: the unit shown, held at a value at every step. A page served by
  // `chargen serve` writes here through /v1/generate, held and free from one seed; any page
  // gives the command line.
  let holdEdited = false;
  let holdSeed = 1; // the seed of the last write here, so the command line redraws it
  function unitSpec(u) {
    const m = units[u];
    return `${m.layer}:${m.kind}:${m.unit}`;
  }
  function unitExtremes(u) {
    const v = values(u);
    let lo = 127, hi = -127;
    for (let i = 0; i < v.length; i++) {
      if (v[i] < lo) lo = v[i];
      if (v[i] > hi) hi = v[i];
    }
    const m = units[u];
    return [m.offset + lo * m.scale, m.offset + hi * m.scale];
  }
  function round2(x) {
    return Math.round(x * 100) / 100;
  }
  function shellQuote(s) {
    return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'"'"'`)}'`;
  }
  function holdValue() {
    const v = Number($("hold-value").value);
    return Number.isFinite(v) ? Math.max(-100, Math.min(100, v)) : 0;
  }
  function holdCommand() {
    const prompt = $("hold-prompt").value;
    const escaped = prompt.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
    $("hold-command").textContent =
      `chargen generate ${shellQuote(D.run || "RUN")} --clamp ${unitSpec(current)}=${holdValue()}` +
      (prompt ? ` --prompt ${shellQuote(escaped)}` : "") + ` --seed ${holdSeed}` +
      (D.served ? ` --length ${$("hold-length").value} --temperature ${$("hold-temp").value}` : "");
  }
  function holdUnit(u) {
    const [lo, hi] = unitExtremes(u);
    $("hold-unit").textContent = unitSpec(u);
    $("hold-unit").title = unitName(u);
    $("hold-lo").textContent = `low ${round2(lo)}`;
    $("hold-lo").dataset.v = String(round2(lo));
    $("hold-hi").textContent = `high ${round2(hi)}`;
    $("hold-hi").dataset.v = String(round2(hi));
    if (!holdEdited) $("hold-value").value = String(round2(hi));
    holdCommand();
  }
  for (const id of ["hold-lo", "hold-hi"]) {
    $(id).addEventListener("click", (e) => {
      $("hold-value").value = e.target.dataset.v;
      holdEdited = true;
      holdCommand();
    });
  }
  $("hold-value").addEventListener("input", () => { holdEdited = true; holdCommand(); });
  for (const id of ["hold-prompt", "hold-length", "hold-temp"]) $(id).addEventListener("input", holdCommand);
  $("hold-prompt").value = chars.slice(0, Math.min(n, 24)).join("").split("\n")[0];
  $("hold-copy").addEventListener("click", () => {
    const text = $("hold-command").textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    $("hold-copy").textContent = "copied";
    setTimeout(() => { $("hold-copy").textContent = "copy"; }, 1500);
  });
  if (D.served) {
    $("hold-served").hidden = false;
    $("hold-cli-note").textContent = "The same on the command line:";
    $("hold-go").addEventListener("click", async () => {
      const out = $("hold-out");
      const spec = `${unitSpec(current)}=${holdValue()}`;
      const seed = Math.floor(Math.random() * 2 ** 32);
      holdSeed = seed;
      holdCommand();
      const body = {
        prompt: $("hold-prompt").value,
        length: Math.max(1, Math.min(2000, Math.floor(Number($("hold-length").value) || 300))),
        temperature: Math.max(0, Number($("hold-temp").value) || 0),
        seed,
      };
      $("hold-go").disabled = true;
      out.innerHTML = '<p class="muted">writing\u2026</p>';
      try {
        const ask = async (clamp) => {
          const res = await fetch("/v1/generate", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ ...body, clamp }),
          });
          const data = await res.json();
          if (!res.ok) throw new Error(data.detail || `HTTP ${res.status}`);
          return data.text;
        };
        const [held, free] = await Promise.all([ask([spec]), ask([])]);
        out.innerHTML =
          `<div class="col"><h3>held: ${esc(spec)}</h3><pre id="hold-held"></pre></div>` +
          `<div class="col"><h3>free (seed ${seed})</h3><pre id="hold-free"></pre></div>`;
        $("hold-held").textContent = body.prompt + held;
        $("hold-free").textContent = body.prompt + free;
        document.body.dataset.held = "1";
      } catch (err) {
        out.innerHTML = `<p class="error">${esc(String(err.message || err))}</p>`;
      } finally {
        $("hold-go").disabled = false;
      }
    });
  }

  // ------------------------------------------------------------------ start
  $("summary").textContent = D.summary;
  holdReady = true;
  $("embedded").textContent = D.embedded;
  measure();
  layout();
  selectUnit(current);
  document.body.dataset.ready = "1";
})();
