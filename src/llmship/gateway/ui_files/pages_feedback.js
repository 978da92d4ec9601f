// Feedback of an environment: ratings and thumbs per release over time, and the
// feedback itself with its comments, newest first.

import { api, empty, env, fmt, h, route, table } from "./app.js";
import { lineChart } from "./charts.js";
import { field, num, paged, query, refLink } from "./pages_parts.js";

/** How to rate an answer of this gateway (its query id is the X-Request-ID header). */
function feedbackCommand() {
  return (
    `curl -s ${location.origin}/feedback -H 'Content-Type: application/json' \\\n` +
    `  -d '{"query_id": "QUERY_ID", "rating": 4, "comment": "helpful"}'`
  );
}

const RATE_HINT = "Rate an answer by its query id (the X-Request-ID header of the answer):";

/** The periods to look back over, and the width of a chart's time bucket for each. */
const PERIODS = [
  { value: "1h", label: "Last hour", seconds: 3600, bucket: 60 },
  { value: "24h", label: "Last 24 hours", seconds: 86400, bucket: 900 },
  { value: "7d", label: "Last 7 days", seconds: 7 * 86400, bucket: 3600 },
  { value: "30d", label: "Last 30 days", seconds: 30 * 86400, bucket: 6 * 3600 },
  { value: "all", label: "All time", seconds: null, bucket: 86400 },
];

function bucketText(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

route("/feedback", "feedback", async (root, _params, q) => {
  const here = env();
  document.title = `Feedback${here ? ` in ${here}` : ""} · llmship`;
  const period = h(
    "select",
    { id: "feedback-period", name: "period" },
    PERIODS.map((p) => h("option", { value: p.value }, p.label)),
  );
  period.value = PERIODS.some((p) => p.value === q.get("period")) ? q.get("period") : "24h";
  const release = h("select", { id: "feedback-release", name: "ref" }, h("option", { value: "" }, "All releases"));
  const kind = h(
    "select",
    { id: "feedback-kind", name: "kind" },
    h("option", { value: "" }, "Ratings and thumbs"),
    h("option", { value: "rating" }, "Ratings"),
    h("option", { value: "thumbs" }, "Thumbs"),
  );
  const commented = h("input", { id: "feedback-commented", name: "comment", type: "checkbox", checked: q.get("comments") !== "all" });
  const summary = h("div", { "data-testid": "feedback-summary" });
  const comments = paged({
    name: "Feedback pages",
    limit: 20,
    load: (limit, offset) => api(`/feedback${query({ env: here, ref: release.value, kind: kind.value, comment: commented.checked, limit, offset })}`),
    none: () =>
      release.value || kind.value || commented.checked
        ? empty(commented.checked ? "No feedback with a comment matches these filters." : "No feedback matches these filters.")
        : empty(`No feedback in ${here || "this environment"} yet. ${RATE_HINT}`, feedbackCommand()),
    render: (rows) =>
      table(
        [
          ["When", (g) => h("time", { datetime: g.at, title: fmt.time(g.at) }, fmt.ago(g.at))],
          ["Comment", (g) => (g.comment ? h("q", {}, g.comment) : h("span", { class: "muted" }, "—"))],
          ["Feedback", (g) => g.values.map((f, i) => [i ? " " : "", value(f)])],
          ["Release", (g) => refLink(g.ref)],
          ["Query", (g) => h("code", { title: g.query_id }, String(g.query_id).slice(0, 8))],
        ],
        byQuery(rows),
        { rowAttrs: (g) => ({ "data-query": g.query_id }) },
      ),
  });
  root.replaceChildren(
    h("h1", {}, here ? `Feedback in ${here}` : "Feedback"),
    h("div", { class: "filters" }, field("feedback-period", "Period", period)),
    summary,
    h("h2", {}, "Comments"),
    h(
      "div",
      { class: "filters", role: "group", "aria-label": "Filter the feedback" },
      field("feedback-release", "Release", release),
      field("feedback-kind", "Kind", kind),
      h("div", { class: "field check" }, h("label", { for: "feedback-commented" }, commented, " Only with a comment")),
    ),
    comments.element,
  );

  const refs = await showSummary(summary, here, PERIODS.find((p) => p.value === period.value));
  release.append(...refs.map((ref) => h("option", { value: ref }, ref)));
  await comments.show(0);

  period.addEventListener("change", async () => {
    const url = new URL(location.href);
    url.searchParams.set("period", period.value);
    history.replaceState(null, "", url.pathname + url.search);
    try {
      await showSummary(summary, here, PERIODS.find((p) => p.value === period.value));
    } catch (error) {
      summary.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  });
  release.addEventListener("change", () => comments.reload());
  kind.addEventListener("change", () => comments.reload());
  commented.addEventListener("change", () => comments.reload());
});

/** A query's rating and thumbs (adjacent rows, newest first) as one row. */
function byQuery(rows) {
  const groups = [];
  for (const row of rows) {
    const last = groups[groups.length - 1];
    if (last && last.query_id === row.query_id) {
      last.values.push(row);
      last.comment = last.comment || row.comment;
    } else {
      groups.push({ ...row, values: [row] });
    }
  }
  return groups;
}

function value(f) {
  if (f.kind === "rating") return h("span", { class: "rating", "aria-label": `rating ${f.value} of 5` }, `${"★".repeat(f.value)}${"☆".repeat(Math.max(0, 5 - f.value))}`);
  const up = f.value > 0 || f.value === "up";
  return h("span", { class: up ? "pass" : "fail" }, up ? "▲ up" : "▼ down");
}

/** The charts and the per-release table for `period`; returns the releases shown. */
async function showSummary(box, here, period) {
  const since = period.seconds ? new Date(Date.now() - period.seconds * 1000).toISOString() : null;
  const data = await api(`/feedback/summary${query({ env: here, bucket: period.bucket, since })}`);
  const releases = data.releases || [];
  if (!releases.length) {
    box.replaceChildren(empty(`No ratings or thumbs in ${here || "this environment"} over this period. ${RATE_HINT}`, feedbackCommand()));
    return [];
  }
  const width = data.bucket_s || period.bucket;
  const bucket = bucketText(width);
  const share = (p) => (p.thumbs_up + p.thumbs_down ? (100 * p.thumbs_up) / (p.thumbs_up + p.thumbs_down) : null);
  // Each bucket's value holds over the whole bucket: a step from its start to its end
  // (so a single bucket still draws a line); a bucket without data leaves a gap.
  const steps = (series, y) =>
    (series || []).flatMap((p, i, all) => {
      const gap = i > 0 && p.t - all[i - 1].t > width ? [[p.t, null]] : [];
      return [...gap, [p.t, y(p)], [p.t + width, y(p)]];
    });
  box.replaceChildren(
    h(
      "div",
      { class: "charts", "data-testid": "feedback-charts" },
      lineChart({
        title: `Mean rating per ${bucket}`,
        unit: "1–5",
        yTop: 5,
        series: releases.map((r) => ({ name: r.ref, points: steps(r.series, (p) => (p.ratings ? p.mean_rating : null)) })),
      }),
      lineChart({
        title: `Thumbs up per ${bucket}`,
        unit: "% of thumbs",
        yTop: 100,
        series: releases.map((r) => ({ name: r.ref, points: steps(r.series, share) })),
      }),
    ),
    table(
      [
        ["Release", (r) => refLink(r.ref)],
        ["Ratings", (r) => r.ratings],
        ["Mean rating", (r) => (r.ratings ? num(r.mean_rating, 3) : "—")],
        ["Thumbs up", (r) => r.thumbs_up],
        ["Thumbs down", (r) => r.thumbs_down],
      ],
      releases,
      { caption: "Per release over this period", rowAttrs: (r) => ({ "data-ref": r.ref }) },
    ),
  );
  return releases.map((r) => r.ref);
}
