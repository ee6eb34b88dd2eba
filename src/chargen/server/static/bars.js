// Bar charts of a distribution as HTML tables: one row per token (its label, a bar on a 0-100 %
// axis, the value in %), read by a screen reader as a table, sized by CSS (word labels fit).

import { percent, tokenLabel } from "./util.js";

const TICKS = [0, 25, 50, 75, 100];

function cell(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

// rows: [{token, p}] in the order drawn; chosen: the token to highlight (or undefined);
// title / note: the figure's caption and the line under it; noun: "next character".
export function drawBars(figure, { title, note, rows, chosen, noun, rest = true }) {
  figure.textContent = "";
  figure.classList.add("dist");
  const caption = cell("figcaption", "", "");
  caption.append(...title);
  figure.appendChild(caption);
  const table = cell("table", "bars");
  const longest = Math.max(1, ...rows.map((r) => [...tokenLabel(r.token)].length));
  table.style.setProperty("--label", `${Math.min(longest, 14) + 1}ch`);
  const cols = cell("colgroup");
  cols.append(cell("col", "c-label"), cell("col", "c-bar"), cell("col", "c-pct"));
  const head = cell("thead", "visually-hidden");
  const hr = cell("tr");
  hr.append(cell("th", "", noun), cell("th", "", "bar"), cell("th", "", "probability"));
  head.appendChild(hr);
  const body = cell("tbody");
  for (const r of rows) {
    const tr = cell("tr");
    tr.dataset.token = r.token;
    tr.dataset.p = String(r.p);
    if (chosen !== undefined && r.token === chosen) {
      tr.className = "chosen";
      tr.title = "the one drawn here";
    }
    const th = cell("th", "", tokenLabel(r.token));
    th.scope = "row";
    th.title = JSON.stringify(r.token);
    const bar = cell("td", "bar");
    const fill = cell("i");
    fill.style.width = `${Math.min(100, r.p * 100)}%`;
    bar.appendChild(fill);
    tr.append(th, bar, cell("td", "pct", percent(r.p)));
    body.appendChild(tr);
  }
  const foot = cell("tfoot");
  const fr = cell("tr");
  const axis = cell("td", "axis");
  axis.setAttribute("aria-hidden", "true");
  for (const t of TICKS) {
    const tick = cell("span", "", `${t}`);
    tick.style.left = `${t}%`;
    axis.appendChild(tick);
  }
  fr.append(cell("td"), axis, cell("td", "unit", "%"));
  foot.appendChild(fr);
  table.append(cols, head, body, foot);
  figure.appendChild(table);
  const lines = [];
  if (rest) {
    const sum = rows.reduce((a, r) => a + r.p, 0);
    const left = sum > 1 - 1e-6 ? 0 : 1 - sum; // float32 sums reach 1 within 1e-7
    figure.dataset.rest = String(left);
    lines.push(`the rest: ${percent(left)}`);
  }
  if (note) lines.push(note);
  if (lines.length) figure.appendChild(cell("p", "note", lines.join(" · ")));
}
