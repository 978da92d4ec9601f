// Live figures of this gateway per release and variant: GET /api/v1/live polled every
// 1.5 s; each answer is one point per series, kept here for the last five minutes (also
// across pages, so going back to a page shows what was seen), drawn as line charts with a
// table of the latest figures.

import { api, empty, environments, fmt, gatewayEnv, h, poll } from "./app.js";
import { COLOURS, lineChart } from "./charts.js";

const KEEP_S = 300;
const WINDOW_S = 10;
// A chart's title is its SVG's aria-label: no title says "token", so that the token
// dialog's field stays the one thing labelled "Token" on a page.
const CHARTS = [
  { key: "requests_per_s", title: "Requests", unit: "per s" },
  { key: "error_rate", title: "Error rate", unit: "%", scale: 100 },
  { key: "p50_s", title: "Latency p50", unit: "ms", scale: 1000 },
  { key: "p95_s", title: "Latency p95", unit: "ms", scale: 1000 },
  { key: "ttft_p50_s", title: "TTFT p50", unit: "ms to the first token", scale: 1000 },
  { key: "tokens_per_s", title: "Output", unit: "tokens per s" },
  { key: "mean_rating", title: "Feedback rating", unit: "mean", yTop: 5 },
];

// key -> {name, colour, points: {metric: [[t, value|null], ...]}}, in first-seen order
const series = new Map();
let lastAt = null;
let latest = null;

function keyOf(version) {
  return version.variant ? `${version.ref} ${version.variant}` : version.ref;
}

function nameOf(version) {
  const role = version.variant || version.role;
  return role ? `${version.ref} (${role})` : version.ref;
}

/** Add one answer of /live to the series (nothing when it is the same instant again). */
function record(data) {
  if (data.at === lastAt) return;
  lastAt = data.at;
  latest = data;
  const seen = new Set();
  for (const version of data.versions) {
    const key = keyOf(version);
    seen.add(key);
    if (!series.has(key)) {
      series.set(key, { name: nameOf(version), colour: COLOURS[series.size % COLOURS.length], points: {} });
    }
    const line = series.get(key);
    line.name = nameOf(version);
    for (const { key: metric, scale = 1 } of CHARTS) {
      const value = version[metric];
      (line.points[metric] ||= []).push([data.at, value === null || value === undefined ? null : value * scale]);
    }
  }
  for (const [key, line] of series) {
    if (!seen.has(key)) for (const { key: metric } of CHARTS) (line.points[metric] ||= []).push([data.at, null]);
    for (const metric of Object.keys(line.points)) {
      line.points[metric] = line.points[metric].filter(([t]) => t >= data.at - KEEP_S);
    }
    if (!Object.values(line.points).some((points) => points.some(([, y]) => y !== null))) series.delete(key);
  }
}

/** The charts, `width` user units wide: the width they were drawn at last, so that the
SVG is not stretched sideways (its text would be). */
function charts(width = 560) {
  const lines = [...series.values()];
  return CHARTS.map(({ key, title, unit, yTop }) =>
    lineChart({ title, unit, width, yTop, series: lines.map((line) => ({ name: line.name, colour: line.colour, points: line.points[key] || [] })) }),
  );
}

function drawnWidth(grid) {
  const svg = grid.querySelector("svg");
  return svg && svg.clientWidth > 100 ? Math.round(svg.clientWidth) : 560;
}

function figures(data) {
  if (!data || !data.versions.length) {
    return empty(
      `No requests reached this gateway in the last ${WINDOW_S} s; the charts fill as requests come in. Send one:`,
      `curl -s ${location.origin}/predict -H 'Content-Type: application/json' -d '{"prompt": "What is a canary release?", "max_new_tokens": 30}'`,
    );
  }
  const columns = [
    ["Release", (v) => v.ref],
    ["Variant", (v) => v.variant || v.role || "—"],
    ["Weight", (v) => (v.weight === null || v.weight === undefined ? "—" : `${fmt.num(v.weight)}%`)],
    ["Requests", (v) => String(v.requests)],
    ["Req/s", (v) => fmt.num(v.requests_per_s)],
    ["Errors", (v) => fmt.pct(v.error_rate)],
    ["p50", (v) => fmt.ms(v.p50_s)],
    ["p95", (v) => fmt.ms(v.p95_s)],
    ["TTFT p50", (v) => fmt.ms(v.ttft_p50_s)],
    ["Tokens/s", (v) => fmt.num(v.tokens_per_s)],
    ["Rating", (v) => (v.ratings ? `${fmt.num(v.mean_rating)} (${v.ratings})` : "—")],
  ];
  return figuresTable(columns, data.versions, `Over the last ${fmt.num(data.window)} s, at ${new Date(data.at * 1000).toLocaleTimeString()}`);
}

function figuresTable(columns, rows, caption) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "data-testid": "live-table", class: "stack" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map(([name]) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((row) => h("tr", { "data-ref": row.ref }, columns.map(([name, cell]) => h("td", { "data-label": name }, h("div", {}, cell(row))))))),
    ),
  );
}

/**
 * The live section (`data-testid="live-charts"`): charts per release and variant, and the
 * latest figures; polls /live every 1.5 s until the page is left. Call it while a page
 * renders (polling stops with the page).
 */
export function liveSection() {
  const grid = h("div", { class: "charts", hidden: series.size === 0 }, charts());
  const latestBox = h("div", { class: "live-latest" }, latest ? figures(latest) : h("p", { class: "muted" }, "Loading…"));
  const status = h("p", { class: "muted live-status", role: "status" });
  const section = h(
    "section",
    { "data-testid": "live-charts", "aria-labelledby": "live-title" },
    h("h2", { id: "live-title" }, "Live traffic"),
    h("p", { class: "muted" }, `This gateway's figures per release and variant, each over the last ${WINDOW_S} s, every 1.5 s; the charts keep five minutes.`),
    status,
    grid,
    latestBox,
  );
  poll(async () => {
    let data;
    try {
      data = await api(`/live?window=${WINDOW_S}`);
    } catch (error) {
      status.textContent = `Live figures are not available: ${error.message}`;
      throw error;
    }
    status.textContent = "";
    record(data);
    grid.replaceChildren(...charts(drawnWidth(grid)));
    grid.hidden = series.size === 0;
    latestBox.replaceChildren(figures(data));
  });
  return section;
}

/** In place of the live section for an environment another gateway serves: a link to it. */
export function liveElsewhere(envName) {
  const info = environments().find((e) => e.name === envName);
  const port = info && info.gateway_port;
  return h(
    "section",
    { "aria-labelledby": "live-title" },
    h("h2", { id: "live-title" }, "Live traffic"),
    h(
      "p",
      { class: "muted" },
      `This gateway serves ${gatewayEnv() || "another environment"}; the live figures of ${envName} are its own gateway's`,
      port ? [": ", h("a", { href: `${location.protocol}//${location.hostname}:${port}/ui` }, `open the dashboard on port ${port}`), "."] : ".",
    ),
  );
}
