// The time range of a page. "All time" (from=all) has no bounds in the URL:
// the page asks the API for the first and last matching event and uses
// that span, so its histogram and dashboards have buckets to draw.
import * as api from "./api.js";
import { resolveRange } from "./query.js";

// bounds resolves st's range to unix ms. filter is the CQL search part the
// page shows (for "all", the span of its matches).
export async function bounds(st, filter, signal) {
  if (st.from !== "all") return { ...resolveRange(st), all: false };
  const res = await api.search({ q: (filter || "*") + " | SELECT min(__TIMESTAMP__) AS first, max(__TIMESTAMP__) AS last", cluster: st.cluster }, { signal });
  const [first, last] = res.rows.length ? res.rows[0] : [null, null];
  if (first === null || last === null) {
    const now = Date.now();
    return { from: now - 3600e3, to: now, all: true };
  }
  return { from: Number(first), to: Number(last) + 1, all: true };
}
