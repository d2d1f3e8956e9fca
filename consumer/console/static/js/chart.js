// Small hand-written SVG charts. Every mark carries its numbers as data-*
// attributes (data-key, data-value), so what the page draws can be read
// back and checked against the API by the browser tests.
import { fmtTime } from "./query.js";

const NS = "http://www.w3.org/2000/svg";
export const palette = ["#3b6fb6", "#e07b39", "#4c9f70", "#c9485b", "#8a63b8", "#b8a23b", "#3ba6b8", "#8c6d46", "#d46fb0", "#6b7280"];

export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

export function s(tag, attrs = {}, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of kids.flat()) if (c) e.append(c);
  return e;
}

function title(text) {
  const t = document.createElementNS(NS, "title");
  t.textContent = text;
  return t;
}

export function fmtNum(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : String(n);
}

// timeAxisLabel shortens a bucket start for the x axis.
function axisLabel(ms, spanMs) {
  const t = fmtTime(ms);
  if (spanMs <= 2 * 86400e3) return t.slice(11, 16);
  return t.slice(5, 16);
}

// histogram draws count per time bucket. buckets: [{start, n}] covering
// [from, to) at intervalMs. onSelect(fromMs, toMs) is called when the user
// drags across the chart (or clicks a bar), to narrow the time range.
export function histogram(buckets, { from, to, intervalMs, onSelect, height = 120, width = 1000 }) {
  const W = Math.max(300, Math.round(width)), H = height, padL = 44, padB = 18, padT = 6;
  const max = Math.max(1, ...buckets.map((b) => b.n));
  const span = Math.max(1, to - from);
  const x = (ms) => padL + ((ms - from) / span) * (W - padL - 4);
  const y = (n) => padT + (1 - n / max) * (H - padB - padT);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "events over time" });
  svg.append(s("line", { class: "axis", x1: padL, x2: W, y1: H - padB, y2: H - padB }));
  svg.append(s("text", { x: padL - 4, y: padT + 9, "text-anchor": "end" }, document.createTextNode(fmtNum(max))));
  svg.append(s("text", { x: padL - 4, y: H - padB, "text-anchor": "end" }, document.createTextNode("0")));
  for (let i = 0; i <= 4; i++) {
    const ms = from + (span * i) / 4;
    svg.append(s("text", { x: Math.min(W - 30, Math.max(padL, x(ms))), y: H - 4, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, document.createTextNode(axisLabel(ms, span))));
  }
  for (const b of buckets) {
    const x0 = Math.max(padL, x(b.start)), x1 = Math.min(W, x(b.start + intervalMs));
    const r = s("rect", {
      class: "bar", x: x0, width: Math.max(1, x1 - x0 - 1), y: y(b.n), height: Math.max(0, H - padB - y(b.n)),
      "data-key": String(b.start), "data-value": String(b.n),
    }, title(`${fmtTime(b.start)} UTC: ${fmtNum(b.n)} events`));
    svg.append(r);
  }
  // Drag to select: a rectangle follows the pointer; on release the range
  // under it becomes the new time range.
  const sel = s("rect", { class: "sel", y: padT, height: H - padB - padT, width: 0, x: 0, visibility: "hidden" });
  svg.append(sel);
  const toMs = (ev) => {
    const r = svg.getBoundingClientRect();
    const vx = ((ev.clientX - r.left) / r.width) * W;
    return from + ((Math.min(W - 4, Math.max(padL, vx)) - padL) / (W - padL - 4)) * span;
  };
  let start = null;
  svg.addEventListener("pointerdown", (ev) => {
    start = toMs(ev);
    svg.setPointerCapture(ev.pointerId);
    sel.setAttribute("visibility", "visible");
    sel.setAttribute("x", x(start));
    sel.setAttribute("width", 0);
  });
  svg.addEventListener("pointermove", (ev) => {
    if (start === null) return;
    const now = toMs(ev);
    sel.setAttribute("x", x(Math.min(start, now)));
    sel.setAttribute("width", Math.abs(x(now) - x(start)));
  });
  svg.addEventListener("pointerup", (ev) => {
    if (start === null) return;
    const end = toMs(ev);
    let a = Math.min(start, end), b = Math.max(start, end);
    start = null;
    sel.setAttribute("visibility", "hidden");
    if (b - a < intervalMs / 4) {
      // A click: the bucket under the pointer (buckets are aligned to the
      // epoch, as the server's histogram() aligns them).
      a = Math.floor(a / intervalMs) * intervalMs;
      b = a + intervalMs;
    }
    if (onSelect) onSelect(Math.max(from, Math.floor(a)), Math.min(to, Math.ceil(b)));
  });
  return svg;
}

// bars draws a horizontal bar per item: [{key, label, value, href}], as
// HTML so that labels keep their size in a narrow card.
export function bars(items) {
  if (!items.length) return el("div", { class: "empty", text: "No events." });
  const max = Math.max(1, ...items.map((i) => i.value));
  return el("div", { class: "bars" }, items.map((it) => {
    const fill = el("span", { class: "fill" });
    fill.style.width = ((100 * it.value) / max).toFixed(2) + "%";
    const label = it.href ? el("a", { href: it.href, class: "label", title: it.label, text: it.label }) : el("span", { class: "label", title: it.label, text: it.label });
    return el("div", { class: "item", "data-key": it.key, "data-value": String(it.value) },
      label, el("span", { class: "track" }, fill), el("span", { class: "num", text: fmtNum(it.value) }));
  }));
}

// stacked draws stacked bars per time bucket and series:
// buckets: [{start, parts: {series: n}}], series: names in legend order.
export function stacked(buckets, series, { from, to, intervalMs, height = 180, width = 1000, onSelect }) {
  const W = Math.max(300, Math.round(width)), H = height, padL = 44, padB = 18, padT = 6;
  const totals = buckets.map((b) => Object.values(b.parts).reduce((a, v) => a + v, 0));
  const max = Math.max(1, ...totals);
  const span = Math.max(1, to - from);
  const x = (ms) => padL + ((ms - from) / span) * (W - padL - 4);
  const h = (n) => (n / max) * (H - padB - padT);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  svg.append(s("line", { class: "axis", x1: padL, x2: W, y1: H - padB, y2: H - padB }));
  svg.append(s("text", { x: padL - 4, y: padT + 9, "text-anchor": "end" }, document.createTextNode(fmtNum(max))));
  for (let i = 0; i <= 4; i++) {
    const ms = from + (span * i) / 4;
    svg.append(s("text", { x: Math.min(W - 30, Math.max(padL, x(ms))), y: H - 4, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, document.createTextNode(axisLabel(ms, span))));
  }
  for (const b of buckets) {
    const x0 = Math.max(padL, x(b.start)), x1 = Math.min(W, x(b.start + intervalMs));
    let base = H - padB;
    series.forEach((name, i) => {
      const n = b.parts[name] || 0;
      if (!n) return;
      const hh = h(n);
      base -= hh;
      const r = s("rect", {
        x: x0, width: Math.max(1, x1 - x0 - 1), y: base, height: hh, fill: palette[i % palette.length],
        "data-key": b.start + "|" + name, "data-value": String(n),
      }, title(`${fmtTime(b.start)} UTC, ${name}: ${fmtNum(n)}`));
      if (onSelect) r.addEventListener("click", () => onSelect(b.start, b.start + intervalMs));
      svg.append(r);
    });
  }
  const legend = el("div", { class: "legend" }, series.map((name, i) => {
    const sw = el("i");
    sw.style.background = palette[i % palette.length];
    return el("span", {}, sw, name === "" ? "(none)" : name);
  }));
  return el("div", {}, svg, legend);
}

// table renders columns and rows; cell(value, row, colIndex) may return a
// node for a cell.
export function table(columns, rows, { cell, numeric = [] } = {}) {
  if (!rows.length) return el("div", { class: "empty", text: "No rows." });
  return el("table", { class: "rows" },
    el("thead", {}, el("tr", {}, columns.map((c, i) => el("th", { class: numeric.includes(i) ? "num" : null, text: c })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v, i) => {
      const c = cell ? cell(v, r, i) : null;
      return el("td", { class: numeric.includes(i) ? "num" : null, "data-col": columns[i] }, c !== null && c !== undefined ? c : v === null ? "∅" : String(v));
    })))));
}
