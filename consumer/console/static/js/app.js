// Console shell: the shared controls (query, cluster, time), the route in
// the URL fragment, and the pages.
import * as api from "./api.js";
import { el } from "./chart.js";
import { parseHash, buildHash, rangeKey, resolveRange } from "./query.js";
import * as searchPage from "./search.js";
import * as dash from "./dashboards.js";

const $ = (id) => document.getElementById(id);
const view = $("view");
let current = null; // AbortController of the page being rendered
let seq = 0;

// state is the page and its parameters, read from the fragment.
function state() {
  const { page, params } = parseHash(location.hash);
  return { page, st: params };
}

function navigate(page, st) {
  const h = buildHash(page, st);
  if (h === location.hash) render();
  else location.hash = h;
}

const utcInput = (ms) => new Date(ms).toISOString().slice(0, 19);
const fromUtcInput = (v) => (v ? new Date(Date.parse(v.length === 16 ? v + ":00Z" : v + "Z")).toISOString() : "");

function fillControls(page, st) {
  $("q").value = st.q || "";
  $("qrow").hidden = page !== "search";
  $("run").textContent = page === "search" ? "Search" : "Apply";
  const sel = $("cluster");
  if (st.cluster && ![...sel.options].some((o) => o.value === st.cluster)) sel.append(el("option", { value: st.cluster, text: st.cluster }));
  sel.value = st.cluster || "";
  const key = rangeKey(st);
  $("range").value = key;
  $("abs").hidden = key !== "abs";
  const { from, to } = resolveRange(st);
  $("from").value = utcInput(from);
  $("to").value = utcInput(to);
  const name = page.replace(/^dash\//, "");
  const d = page.startsWith("dash/") ? dash.dashboards[name] : null;
  const prow = $("prow");
  prow.replaceChildren();
  prow.hidden = !(d && (d.params || d.checkbox));
  if (d) {
    for (const [k, label, ph] of d.params || []) {
      prow.append(el("label", {}, label + " ", el("input", { type: "text", name: k, id: "p-" + k, placeholder: "e.g. " + ph, value: st[k] || "" })));
    }
    if (d.checkbox) {
      const [k, label] = d.checkbox;
      prow.append(el("label", {}, el("input", { type: "checkbox", name: k, id: "p-" + k, checked: st[k] ? true : null }), " " + label));
    }
  }
  for (const a of $("nav").querySelectorAll("a")) {
    a.classList.toggle("active", a.dataset.page === (page === "search" ? "search" : name));
  }
}

// readControls builds the state the form asks for.
function readControls(page) {
  const st = {};
  if (page === "search") st.q = $("q").value.trim();
  st.cluster = $("cluster").value;
  const key = $("range").value;
  if (key === "abs") {
    st.from = fromUtcInput($("from").value);
    st.to = fromUtcInput($("to").value);
  } else if (key === "all") {
    st.from = "all";
  } else {
    st.from = "now-" + key;
    st.to = "now";
  }
  for (const input of $("prow").querySelectorAll("input")) {
    if (input.type === "checkbox") st[input.name] = input.checked ? "1" : "";
    else st[input.name] = input.value.trim();
  }
  return st;
}

function banner(msg) {
  $("banner").hidden = !msg;
  $("banner").textContent = msg || "";
}

async function render() {
  const { page, st } = state();
  if (current) current.abort();
  current = new AbortController();
  const my = ++seq;
  fillControls(page, st);
  banner("");
  view.replaceChildren();
  view.dataset.page = page;
  view.dataset.state = "rendering";
  const ctx = { signal: current.signal, navigate: (next) => navigate(page, next) };
  try {
    if (page === "search") {
      document.title = "Search · auditpipe";
      await searchPage.render(view, st, ctx);
    } else if (page.startsWith("dash/") && dash.dashboards[page.slice(5)]) {
      document.title = dash.dashboards[page.slice(5)].title + " · auditpipe";
      await dash.render(view, st, ctx, page.slice(5));
    } else {
      view.append(el("p", { class: "error", text: `No page "${page}".` }), el("a", { href: "#/search", text: "Go to search" }));
    }
  } catch (e) {
    if (e.name !== "AbortError") banner(e.message);
  }
  if (my === seq) {
    view.dataset.state = "done";
    view.dataset.seq = String(my);
  }
}

async function loadClusters() {
  const sel = $("cluster");
  try {
    const res = await api.clusters();
    const keep = sel.value;
    for (const o of [...sel.options]) if (o.value) o.remove();
    for (const c of res.clusters) {
      const label = c.id + (c.displayName ? ` — ${c.displayName}` : "") + (c.stored ? "" : " (no events)");
      sel.append(el("option", { value: c.id, text: label }));
    }
    sel.value = keep;
    sel.dataset.loaded = String(res.clusters.length);
  } catch (e) {
    banner("Cluster list: " + e.message);
  }
}

$("controls").addEventListener("submit", (e) => {
  e.preventDefault();
  const { page } = state();
  navigate(page, readControls(page));
});
$("range").addEventListener("change", () => {
  const abs = $("range").value === "abs";
  $("abs").hidden = !abs;
  if (!abs) $("controls").requestSubmit();
});
$("cluster").addEventListener("change", () => $("controls").requestSubmit());
$("copyLink").addEventListener("click", (e) => searchPage.copy(location.href, e.currentTarget));
$("logout").hidden = !api.token();
$("logout").addEventListener("click", () => {
  api.forgetToken();
  $("logout").hidden = true;
  render();
});
window.addEventListener("hashchange", render);

if (!location.hash) history.replaceState(null, "", buildHash("search", { from: "now-24h", to: "now" }));
loadClusters();
render();
