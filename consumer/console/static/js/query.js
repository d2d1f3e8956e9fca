// Query text, time ranges and the URL state. Pure functions: no DOM.

// Relative ranges of the time picker, in milliseconds.
export const relative = {
  "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3,
  "7d": 7 * 86400e3, "30d": 30 * 86400e3, "365d": 365 * 86400e3,
};

// splitQuery separates the search part from the "| SQL" part at the first
// '|' outside double quotes and not escaped, as the server's parser does.
export function splitQuery(q) {
  let inQuote = false;
  for (let i = 0; i < q.length; i++) {
    const c = q[i];
    if (c === "\\") { i++; continue; }
    if (c === '"') inQuote = !inQuote;
    else if (c === "|" && !inQuote) return { filter: q.slice(0, i).trim(), sql: q.slice(i + 1).trim() };
  }
  return { filter: q.trim(), sql: null };
}

// and joins search parts with AND, leaving out empty ones and "*".
export function and(...parts) {
  const kept = parts.map((p) => (p || "").trim()).filter((p) => p && p !== "*");
  if (kept.length === 0) return "*";
  if (kept.length === 1) return kept[0];
  return kept.map((p) => (needsParens(p) ? "(" + p + ")" : p)).join(" AND ");
}

// needsParens: p has an OR outside parentheses and quotes, which binds
// looser than the AND that joins it.
function needsParens(p) {
  let depth = 0;
  let top = "";
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "\\") { i++; top += " "; continue; }
    if (c === '"') {
      for (i++; i < p.length && p[i] !== '"'; i++) if (p[i] === "\\") i++;
      top += " ";
      continue;
    }
    if (c === "(") depth++;
    else if (c === ")") depth--;
    top += depth === 0 && c !== ")" ? c : " ";
  }
  return /\bOR\b/.test(top);
}

// quote makes a CQL phrase of any string.
export function quote(s) {
  return '"' + String(s).replace(/[\\"]/g, (c) => "\\" + c) + '"';
}

// fieldOK: the server's parser admits these characters in field names.
const fieldRE = /^[A-Za-z0-9_\-./@]+$/;

// term is the CQL condition "field has this value" for the detail panel's
// "search for this value"; a field the language cannot name becomes a
// full-text phrase.
export function term(field, value) {
  if (value === null || value === undefined) return fieldRE.test(field) ? "NOT " + field + ":*" : "";
  if (!fieldRE.test(field)) return quote(value);
  if (typeof value === "number" && Number.isFinite(value)) return field + "=" + value;
  if (typeof value === "boolean") return field + ":" + value;
  if (value === "") return field + ':""';
  return field + ":" + quote(value);
}

// sqlName quotes a field for the SQL part.
export function sqlName(f) {
  return '"' + f.replace(/"/g, '""') + '"';
}

// sqlString quotes a string literal for the SQL part.
export function sqlString(s) {
  return "'" + String(s).replace(/'/g, "''") + "'";
}

// Histogram bucket sizes the console picks from: about 60 bars per range.
const intervals = [
  [1, "second"], [5, "second"], [10, "second"], [30, "second"],
  [1, "minute"], [5, "minute"], [10, "minute"], [30, "minute"],
  [1, "hour"], [3, "hour"], [6, "hour"], [12, "hour"], [1, "day"], [7, "day"], [30, "day"], [365, "day"],
];
const unitMS = { second: 1e3, minute: 60e3, hour: 3600e3, day: 86400e3 };

// interval picks the bucket for a range: { n, unit, ms, sql }.
export function interval(fromMs, toMs, bars = 60) {
  const want = (toMs - fromMs) / bars;
  let pick = intervals[intervals.length - 1];
  for (const iv of intervals) {
    if (iv[0] * unitMS[iv[1]] >= want) { pick = iv; break; }
  }
  const [n, unit] = pick;
  return { n, unit, ms: n * unitMS[unit], sql: `histogram(cast(__TIMESTAMP__ as timestamp), interval ${n} ${unit})` };
}

// bucketMs reads a histogram bucket ("2026-12-02 10:30:00", UTC) as ms.
export function bucketMs(s) {
  if (typeof s === "number") return s;
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(String(s));
  if (!m) return NaN;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

// resolveRange turns the state's from/to ("now-24h", "now", ISO, or ms) into
// absolute unix ms.
export function resolveRange(st, now = Date.now()) {
  const one = (v, dflt) => {
    if (!v) return dflt;
    if (v === "now") return now;
    const rel = /^now-(\w+)$/.exec(v);
    if (rel && relative[rel[1]]) return now - relative[rel[1]];
    if (/^\d+$/.test(v)) return +v;
    const t = Date.parse(v);
    return Number.isNaN(t) ? dflt : t;
  };
  const to = one(st.to, now);
  const from = one(st.from, to - relative["24h"]);
  return { from, to };
}

// rangeKey is the picker's value for a state: a relative key, "all" or
// "abs".
export function rangeKey(st) {
  if (st.from === "all") return "all";
  const m = /^now-(\w+)$/.exec(st.from || "");
  if ((!st.to || st.to === "now") && m && relative[m[1]]) return m[1];
  if (!st.from && !st.to) return "24h";
  return "abs";
}

export function fmtTime(ms, withMs = false) {
  if (!Number.isFinite(ms)) return "";
  const s = new Date(ms).toISOString().replace("T", " ");
  return withMs ? s.slice(0, 23) : s.slice(0, 19);
}

// Route state lives in the fragment: #/page?key=value&..., so a URL is a
// shareable saved query and the server needs no routes.
export function parseHash(hash) {
  const h = (hash || "").replace(/^#/, "");
  const [path, qs] = h.split("?", 2);
  const page = (path || "/search").replace(/^\//, "") || "search";
  const params = {};
  for (const [k, v] of new URLSearchParams(qs || "")) params[k] = v;
  return { page, params };
}

export function buildHash(page, params) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") sp.set(k, v);
  }
  const qs = sp.toString();
  return "#/" + page + (qs ? "?" + qs : "");
}

// searchLink is the URL of the search page for a query in a context.
export function searchLink(q, st) {
  return buildHash("search", { q, cluster: st.cluster, from: st.from, to: st.to });
}
