// The audit dashboards of TKE's console, each chart one search API query
// (a CQL filter and an SQL analysis) over the page's cluster and time range,
// and each a link to the search page with that query.
import * as api from "./api.js";
import { el, bars, stacked, table, fmtNum } from "./chart.js";
import { and, term, quote, sqlName, interval, bucketMs, fmtTime, searchLink } from "./query.js";
import { bounds } from "./range.js";
import { row } from "./search.js";

const reads = "NOT verb:get AND NOT verb:list AND NOT verb:watch";

// Chart kinds:
//   time:   count per time bucket, stacked by a field (series)
//   bars:   top values of a field
//   table:  an analysis shown as rows (sql given)
//   events: the newest matching events
const time = (id, title, filter, series, extra = {}) => ({ id, title, kind: "time", filter, field: series, wide: true, ...extra });
const top = (id, title, filter, field, extra = {}) => ({ id, title, kind: "bars", filter, field, limit: 10, ...extra });
const list = (id, title, filter, extra = {}) => ({ id, title, kind: "events", filter, limit: 20, wide: true, ...extra });

export const dashboards = {
  overview: {
    title: "Audit overview",
    charts: () => [
      time("verbs", "Operations by verb over time", "*", "verb"),
      top("codes", "Response codes", "*", "responseStatus.code"),
      top("users", "Top users", "*", "user.username"),
      top("resources", "Top resources", "objectRef.resource:*", "objectRef.resource"),
      top("denied", "Denied requests (401/403) by user", "responseStatus.code=401 OR responseStatus.code=403", "user.username"),
      top("deletes", "Sensitive: deletes by user", "verb:delete OR verb:deletecollection", "user.username"),
      top("exec", "Sensitive: exec/attach by user", "objectRef.subresource:exec OR objectRef.subresource:attach", "user.username"),
      top("rbac", "Sensitive: RBAC changes by user", 'objectRef.apiGroup:"rbac.authorization.k8s.io" AND ' + reads, "user.username"),
      top("secrets", "Sensitive: secret access by user", "objectRef.resource:secrets", "user.username"),
    ],
  },
  nodes: {
    title: "Node operations",
    charts: () => {
      const nodes = "objectRef.resource:nodes AND " + reads;
      return [
        time("node-verbs", "Node changes over time", nodes, "verb"),
        top("node-verb", "Node changes by verb", nodes, "verb"),
        top("node-users", "Who changed nodes", nodes, "user.username"),
        top("node-names", "Changes per node", nodes, "objectRef.name"),
        { id: "cordon", title: "Cordon / uncordon (patches of spec.unschedulable)", kind: "table", filter: "objectRef.resource:nodes AND verb:patch AND requestObject:unschedulable",
          sql: 'SELECT "user.username" AS user, "objectRef.name" AS node, count(1) AS n GROUP BY user, node ORDER BY n DESC LIMIT 50' },
        top("drain", "Drain: pod evictions by user", "objectRef.subresource:eviction", "user.username"),
        list("node-events", "Latest node changes", nodes),
      ];
    },
  },
  objects: {
    title: "Object operations",
    params: [["resource", "Resource (kind)", "deployments"], ["namespace", "Namespace", "default"], ["name", "Name", "nginx"]],
    checkbox: ["reads", "include reads (get/list/watch)"],
    charts: (p) => {
      const f = and(p.resource ? "objectRef.resource:" + quote(p.resource) : "", p.namespace ? "objectRef.namespace:" + quote(p.namespace) : "",
        p.name ? "objectRef.name:" + quote(p.name) : "", p.reads ? "" : reads);
      return [
        time("obj-verbs", "Operations over time", f, "verb"),
        { id: "obj-who", title: "Who made them", kind: "table", filter: f,
          sql: 'SELECT "user.username" AS user, verb, count(1) AS n, min(__TIMESTAMP__) AS first_ms, max(__TIMESTAMP__) AS last_ms GROUP BY user, verb ORDER BY n DESC LIMIT 50' },
        top("obj-names", "Objects", f, "objectRef.name"),
        list("obj-timeline", "Timeline: every operation, newest first", f, { limit: 200 }),
      ];
    },
  },
  users: {
    title: "Users",
    params: [["user", "User (principal)", "system:admin"]],
    charts: (p) => {
      const f = p.user ? "user.username:" + quote(p.user) : "*";
      return [
        time("user-verbs", "Activity over time", f, "verb"),
        top("user-clusters", "Across the fleet: events per cluster", f, "auditpipe.cluster"),
        top("user-verb", "Verbs", f, "verb"),
        top("user-resources", "Resources", f + (f === "*" ? "" : " AND objectRef.resource:*"), "objectRef.resource"),
        top("user-codes", "Response codes", f, "responseStatus.code"),
        list("user-events", "Latest activity", f),
      ];
    },
  },
};

const plural = (n, w) => `${fmtNum(n)} ${w}${n === 1 ? "" : "s"}`;

// query is the full search API query of a chart.
export function chartQuery(c, iv) {
  switch (c.kind) {
    case "time":
      return `${c.filter} | SELECT ${iv.sql} AS t, ${sqlName(c.field)} AS s, count(1) AS n GROUP BY t, s ORDER BY t LIMIT 10000`;
    case "bars":
      return `${c.filter} | SELECT ${sqlName(c.field)} AS k, count(1) AS n GROUP BY k ORDER BY n DESC, k LIMIT ${c.limit}`;
    case "table":
      return `${c.filter} | ${c.sql}`;
    default:
      return c.filter;
  }
}

export async function render(view, st, ctx, name) {
  const d = dashboards[name];
  const t0 = performance.now();
  let from, to;
  try {
    ({ from, to } = await bounds(st, "*", ctx.signal));
  } catch (e) {
    if (e.name === "AbortError") return;
    view.append(el("h2", { text: d.title }), el("pre", { class: "qerror", text: e.message }));
    return;
  }
  const iv = interval(from, to);
  const charts = d.charts(st);
  const timing = el("div", { class: "timing", id: "timing" }, "loading…");
  const grid = el("div", { class: "grid", id: "dashboard", "data-dashboard": name, "data-from": String(from), "data-to": String(to), "data-interval-ms": String(iv.ms) });
  view.append(el("h2", { text: d.title }), timing, grid);
  if (d.params && d.params.some(([k]) => !st[k])) {
    timing.after(el("p", { class: "muted", text: "Narrow the dashboard with the fields above; empty fields match everything." }));
  }
  const jobs = charts.map((c) => {
    const q = chartQuery(c, iv);
    const card = el("section", { class: "card" + (c.wide ? " wide" : ""), "data-chart": c.id, "data-kind": c.kind, "data-q": q, "data-state": "loading" },
      el("h3", {}, c.title, el("span", { class: "state", text: "loading…" }), el("a", { href: searchLink(q, st), class: "open-search" }, "open in search ›")));
    grid.append(card);
    return draw(card, c, q, { from, to, iv, st, ctx });
  });
  await Promise.allSettled(jobs);
  const ms = Math.round(performance.now() - t0);
  timing.textContent = `${charts.length} charts, ${fmtTime(from)} – ${fmtTime(to)} UTC${st.cluster ? ", cluster " + st.cluster : ", all clusters"}; rendered in ${fmtNum(ms)} ms`;
  grid.dataset.renderMs = String(ms);
}

async function draw(card, c, q, { from, to, iv, st, ctx }) {
  const t0 = performance.now();
  const state = card.querySelector(".state");
  const common = { from, to, cluster: st.cluster };
  try {
    if (c.kind === "events") {
      const res = await api.search({ ...common, q, limit: c.limit }, { signal: ctx.signal });
      state.textContent = `${fmtNum(res.events.length)} of ${fmtNum(res.total)}`;
      card.dataset.total = String(res.total);
      const rows = res.events.map((ev) => { const r = row(ev); return [r.time, r.cluster, r.user, r.verb, r.resource, r.name, r.code]; });
      const t = table(["Time (UTC)", "Cluster", "User", "Verb", "Resource", "Namespace/Name", "Code"], rows);
      t.querySelectorAll?.("tbody tr").forEach((tr, i) => tr.setAttribute("data-audit-id", res.events[i].auditID));
      card.append(t);
    } else {
      const res = await api.search({ ...common, q }, { signal: ctx.signal });
      if (c.kind === "time") {
        const series = [];
        const byT = new Map();
        for (const [t, s, n] of res.rows) {
          const k = s === null ? "" : String(s);
          if (!series.includes(k)) series.push(k);
          const ms = bucketMs(t);
          if (!byT.has(ms)) byT.set(ms, {});
          byT.get(ms)[k] = Number(n);
        }
        series.sort();
        const buckets = [];
        for (let t = Math.floor(from / iv.ms) * iv.ms; t < to; t += iv.ms) buckets.push({ start: t, parts: byT.get(t) || {} });
        const total = res.rows.reduce((a, r) => a + Number(r[2]), 0);
        state.textContent = `${fmtNum(total)} events, ${iv.n} ${iv.unit} buckets`;
        card.append(total ? stacked(buckets, series, {
          from, to, intervalMs: iv.ms, width: card.clientWidth - 26,
          onSelect: (a, b) => ctx.navigate({ ...st, from: new Date(a).toISOString(), to: new Date(b).toISOString() }),
        }) : el("div", { class: "empty", text: "No events." }));
      } else if (c.kind === "bars") {
        const items = res.rows.map(([k, n]) => ({
          key: k === null ? "" : String(k), label: k === null ? "(none)" : String(k), value: Number(n),
          href: searchLink(and(c.filter, term(c.field, k)), st),
        }));
        state.textContent = plural(items.length, "value");
        card.append(bars(items));
      } else {
        state.textContent = plural(res.rows.length, "row");
        const ms = res.columns.map((col, i) => (/_ms$/.test(col) ? i : -1)).filter((i) => i >= 0);
        const heads = res.columns.map((col, i) => (ms.includes(i) ? col.replace(/_ms$/, "") + " (UTC)" : col));
        card.append(table(heads, res.rows, {
          numeric: res.columns.map((_, i) => i).filter((i) => res.rows.length && typeof res.rows[0][i] === "number" && !ms.includes(i)),
          cell: (v, r, i) => (ms.includes(i) && typeof v === "number" ? el("span", { class: "mono", "data-value": String(v), text: fmtTime(v) }) : null),
        }));
      }
    }
    card.dataset.state = "ok";
    card.dataset.ms = String(Math.round(performance.now() - t0));
    card.title = `${card.dataset.ms} ms`;
  } catch (e) {
    if (e.name === "AbortError") return;
    card.dataset.state = "error";
    state.textContent = "failed";
    card.append(el("pre", { class: "qerror", text: e.message }));
  }
}
