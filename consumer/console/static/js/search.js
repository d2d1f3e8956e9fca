// The search page: histogram of the matches over time (drag to narrow the
// range), the result table with cursor paging, and the event detail panel.
import * as api from "./api.js";
import { el, histogram, table, fmtNum } from "./chart.js";
import { splitQuery, and, term, interval, bucketMs, fmtTime } from "./query.js";
import { bounds } from "./range.js";

const pageSize = 50;

export async function render(view, st, ctx) {
  const q = (st.q || "").trim() || "*";
  const { filter, sql } = splitQuery(q);
  let from, to, all;
  try {
    ({ from, to, all } = await bounds(st, filter, ctx.signal));
  } catch (e) {
    const card = el("section", { class: "card results", id: "results", "data-state": "loading" }, el("h3", {}, "Events", el("span", { class: "state" })));
    view.append(card);
    showError(card, e, q);
    return;
  }
  const iv = interval(from, to);

  const histCard = el("section", { class: "card hist", id: "histogram", "data-state": "loading", "data-interval-ms": String(iv.ms), "data-from": String(from), "data-to": String(to) },
    el("h3", {}, "Events over time", el("span", { class: "state", id: "histState", text: `loading… (${iv.n} ${iv.unit} buckets)` })));
  const resCard = el("section", { class: "card results", id: "results", "data-state": "loading" }, el("h3", {}, sql ? "Analysis" : "Events", el("span", { class: "state", text: "loading…" })));
  const split = el("div", { class: "split", id: "split" }, resCard);
  view.append(histCard, split);

  const common = all ? { cluster: st.cluster } : { from, to, cluster: st.cluster };
  const histQ = (filter || "*") + ` | SELECT ${iv.sql} AS t, count(1) AS n GROUP BY t ORDER BY t LIMIT 10000`;
  histCard.dataset.q = histQ;

  const hist = api.search({ ...common, from, to, q: histQ }, { signal: ctx.signal }).then((res) => {
    const counts = new Map(res.rows.map((r) => [bucketMs(r[0]), Number(r[1])]));
    const buckets = [];
    for (let t = Math.floor(from / iv.ms) * iv.ms; t < to; t += iv.ms) buckets.push({ start: t, n: counts.get(t) || 0 });
    const total = buckets.reduce((a, b) => a + b.n, 0);
    histCard.querySelector("#histState").textContent = `${fmtNum(total)} events, ${iv.n} ${iv.unit} buckets, ${all ? "all time: " : ""}${fmtTime(from)} – ${fmtTime(to)} UTC; drag to zoom`;
    histCard.dataset.total = String(total);
    histCard.append(histogram(buckets, {
      from, to, intervalMs: iv.ms, width: histCard.clientWidth - 26,
      onSelect: (a, b) => ctx.navigate({ ...st, from: new Date(a).toISOString(), to: new Date(b).toISOString() }),
    }));
    histCard.dataset.state = "ok";
  }, (e) => {
    // A query error shows once, under the results, where it is most
    // readable; the histogram only points at it.
    if (e.name !== "AbortError" && e.parameter === "q") e = Object.assign(new Error("The query has an error, shown below."), { parameter: "", position: null });
    showError(histCard, e, q);
  });

  const main = sql === null ? events(resCard, split, st, q, common, ctx) : analysis(resCard, st, q, common, ctx);
  await Promise.allSettled([hist, main]);
  // All time counts events without a timestamp too; a histogram cannot.
  const untimed = Number(resCard.dataset.total) - Number(histCard.dataset.total);
  if (all && sql === null && untimed > 0) {
    histCard.querySelector("#histState").append(`; ${fmtNum(untimed)} events without a timestamp are not on it`);
  }
}

function showError(card, e, q) {
  if (e.name === "AbortError") return;
  card.dataset.state = "error";
  const st = card.querySelector(".state");
  if (st) st.textContent = "failed";
  let text = e.message;
  if (e.position !== null && e.position !== undefined && e.parameter === "q" && !e.message.includes("\n")) {
    text += "\n" + q + "\n" + " ".repeat(e.position) + "^";
  }
  card.append(el("pre", { class: "qerror", text }));
}

async function analysis(card, st, q, common, ctx) {
  try {
    const res = await api.search({ ...common, q }, { signal: ctx.signal });
    card.querySelector(".state").textContent = `${fmtNum(res.rows.length)} rows`;
    card.append(table(res.columns, res.rows, {
      numeric: res.columns.map((_, i) => i).filter((i) => res.rows.length && typeof res.rows[0][i] === "number"),
    }));
    card.dataset.state = "ok";
    card.dataset.rows = String(res.rows.length);
  } catch (e) {
    showError(card, e, q);
  }
}

function get(obj, path) {
  let v = obj;
  for (const k of path) v = v == null ? undefined : v[k];
  return v;
}

// row is what the table shows of an event.
export function row(ev) {
  const ref = ev.objectRef || {};
  const res = ref.resource ? ref.resource + (ref.subresource ? "/" + ref.subresource : "") : "";
  const nn = [ref.namespace, ref.name].filter(Boolean).join("/");
  return {
    // Events of old apiservers (audit.k8s.io/v1beta1 "timestamp") may have
    // no stageTimestamp; Go writes the zero time for it.
    time: !ev.stageTimestamp || ev.stageTimestamp.startsWith("0001-01-01") ? "(no timestamp)" : fmtTime(Date.parse(ev.stageTimestamp), true),
    cluster: get(ev, ["auditpipe", "cluster"]) || "",
    user: get(ev, ["user", "username"]) || "",
    verb: ev.verb || "",
    resource: res || ev.requestURI || "",
    name: nn,
    code: get(ev, ["responseStatus", "code"]) ?? "",
    ip: (ev.sourceIPs || [])[0] || "",
  };
}

function codeClass(c) {
  if (c === "") return null;
  if (c >= 500) return "code-err";
  if (c >= 400) return "code-warn";
  return "code-ok";
}

async function events(card, split, st, q, common, ctx) {
  // Cursors of the pages seen so far: paging back re-asks the API with the
  // cursor that produced the page.
  const cursors = [""];
  let page = 0;
  const body = el("div");
  card.append(body);
  const load = async () => {
    card.dataset.state = "loading";
    try {
      const res = await api.search({ ...common, q, limit: pageSize, cursor: cursors[page] }, { signal: ctx.signal });
      if (res.cursor) cursors[page + 1] = res.cursor;
      body.replaceChildren();
      const first = page * pageSize + 1, last = page * pageSize + res.events.length;
      card.querySelector(".state").textContent = res.total ? `${fmtNum(first)}–${fmtNum(last)} of ${fmtNum(res.total)}` : "no events";
      card.dataset.total = String(res.total);
      card.dataset.page = String(page + 1);
      const cols = ["Time (UTC)", "Cluster", "User", "Verb", "Resource", "Namespace/Name", "Code", "Source IP"];
      if (!res.events.length) {
        body.append(el("div", { class: "empty", text: "No events match this query in this time range." }));
      } else {
        const tb = el("tbody");
        res.events.forEach((ev, i) => {
          const r = row(ev);
          const tr = el("tr", { class: "ev", "data-index": String(i), "data-audit-id": ev.auditID, "data-stage": ev.stage, tabindex: "0" },
            el("td", { class: "mono", text: r.time }), el("td", { text: r.cluster }), el("td", { text: r.user, title: r.user }),
            el("td", { text: r.verb }), el("td", { text: r.resource, title: r.resource }), el("td", { text: r.name, title: r.name }),
            el("td", { class: codeClass(r.code), text: String(r.code) }), el("td", { class: "mono", text: r.ip }));
          const open = () => {
            tb.querySelectorAll("tr.selected").forEach((x) => x.classList.remove("selected"));
            tr.classList.add("selected");
            detail(split, ev, st, ctx);
          };
          tr.addEventListener("click", open);
          tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
          tb.append(tr);
        });
        body.append(el("table", { class: "events" }, el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))), tb));
      }
      const prev = el("button", { type: "button", class: "small", id: "prevPage", disabled: page === 0, onclick: () => { page--; load(); } }, "‹ Previous");
      const next = el("button", { type: "button", class: "small", id: "nextPage", disabled: !res.cursor, onclick: () => { page++; load(); } }, "Next ›");
      body.append(el("div", { class: "pager" }, prev, el("span", { class: "muted", text: `page ${page + 1}` }), next));
      card.dataset.state = "ok";
    } catch (e) {
      body.replaceChildren();
      showError(card, e, q);
    }
  };
  await load();
}

// flatten lists every scalar of an event with its CLS field name (arrays
// share their field's name, as in CLS's index).
function flatten(v, path = [], out = []) {
  if (v !== null && typeof v === "object") {
    if (Array.isArray(v)) v.forEach((x, i) => flatten(x, [...path, i], out));
    else for (const [k, x] of Object.entries(v)) flatten(x, [...path, k], out);
    return out;
  }
  const names = path.filter((p) => typeof p === "string");
  let field = names.join(".");
  if (names[0] === "annotations") field = "annotations." + names.slice(1).join(".");
  const shown = path.map((p, i) => (typeof p === "number" ? `[${p}]` : (i ? "." : "") + p)).join("");
  out.push({ path: shown, field, value: v });
  return out;
}

export async function copy(text, btn) {
  try {
    if (navigator.clipboard && window.isSecureContext) await navigator.clipboard.writeText(text);
    else {
      const ta = el("textarea");
      ta.value = text;
      document.body.append(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    if (btn) { const t = btn.textContent; btn.textContent = "copied"; setTimeout(() => (btn.textContent = t), 1200); }
  } catch (e) {
    if (btn) btn.textContent = "copy failed";
  }
}

function detail(split, ev, st, ctx) {
  split.querySelector("#detail")?.remove();
  split.classList.add("open");
  const json = JSON.stringify(ev, null, 2);
  const { filter } = splitQuery((st.q || "").trim() || "*");
  const rows = flatten(ev).map((f) => {
    const cq = term(f.field, f.value);
    return el("tr", { "data-field": f.field },
      el("td", { class: "mono", text: f.path }),
      el("td", { class: "v mono", text: f.value === null ? "null" : String(f.value) }),
      el("td", { class: "act" },
        el("button", { type: "button", class: "small", title: "Copy the value", onclick: (e) => copy(String(f.value), e.currentTarget) }, "copy"),
        " ",
        cq ? el("a", { class: "search-value", href: "#", title: "Search for " + cq, onclick: (e) => { e.preventDefault(); ctx.navigate({ ...st, q: and(filter, cq) }); } }, "search") : null));
  });
  const panel = el("aside", { class: "card detail", id: "detail", "data-audit-id": ev.auditID },
    el("div", { class: "head" }, el("h3", { text: `${ev.verb || ""} ${ev.objectRef?.resource || ev.requestURI || ""}` }), el("span", { class: "spacer" }),
      el("button", { type: "button", class: "small", id: "copyJSON", onclick: (e) => copy(json, e.currentTarget) }, "copy JSON"),
      el("button", { type: "button", class: "small", id: "closeDetail", onclick: () => { panel.remove(); split.classList.remove("open"); } }, "close")),
    el("div", { class: "muted mono", text: `${ev.auditID} · ${ev.stage}` }),
    el("table", { class: "fields" }, el("tbody", {}, rows)),
    el("h3", {}, "Event JSON"),
    el("pre", { id: "eventJSON", text: json }));
  split.append(panel);
}
