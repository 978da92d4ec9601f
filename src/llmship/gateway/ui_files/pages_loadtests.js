// Load-test runs: the list, and one run — its summary, SLO verdicts, charts drawn from
// the report's timeline, and the full HTML report (with its plots) the CLI writes.

import { api, empty, fmt, h, route, table } from "./app.js";
import { lineChart } from "./charts.js";
import { facts, releaseFilter, num, paged, query, refLink, runLink, verdict } from "./pages_parts.js";

const LOADTEST_COMMAND = "llmship loadtest --release NAME@VERSION --users 2 --duration 30s --slo ttft_p95=0.5";

route("/loadtests", "loadtests", async (root, _params, q) => {
  document.title = "Load tests · llmship";
  const filter = await releaseFilter(q, () => list.reload());
  const list = paged({
    name: "Load tests pages",
    load: (limit, offset) => api(`/loadtests${query({ ref: filter.value(), limit, offset })}`),
    none: () =>
      filter.value()
        ? empty(`No run of ${filter.value()} yet.`, LOADTEST_COMMAND.replace("NAME@VERSION", filter.value()))
        : empty("No load test has run yet. Load-test a release against its SLOs:", LOADTEST_COMMAND),
    render: (runs) =>
      table(
        [
          ["Run", (r) => runLink(r)],
          ["Release", (r) => refLink(r.ref)],
          ["Environment", (r) => r.env],
          ["Verdict", (r) => verdict(r.passed, r.forced)],
          ["Requests", (r) => stat(r, "requests", (v) => v)],
          ["Error rate", (r) => stat(r, "error_rate", (v) => fmt.pct(v))],
          ["Throughput", (r) => stat(r, "throughput", (v) => `${num(v)} req/s`)],
          ["TTFT p95", (r) => stat(r, "ttft_p95", fmt.ms)],
          ["E2E p95", (r) => stat(r, "e2e_p95", fmt.secs)],
          ["When", (r) => h("time", { datetime: r.created_at, title: fmt.time(r.created_at) }, fmt.ago(r.created_at))],
        ],
        runs,
      ),
  });
  root.replaceChildren(h("h1", {}, "Load tests"), filter.element, list.element);
  await list.show(0);
});

function stat(run, key, format) {
  const value = run.summary ? run.summary[key] : null;
  return value === null || value === undefined ? "—" : format(value);
}

route("/loadtests/:id", "loadtests", async (root, params) => {
  const id = encodeURIComponent(params.id);
  const { run, report } = await api(`/loadtests/${id}`);
  document.title = `Load test ${run.id} · llmship`;
  const results = report.results || {};
  const load = report.load || {};
  const frame = h("iframe", { title: "Load-test report", class: "report", sandbox: "allow-same-origin" });
  frame.addEventListener("load", () => fitFrame(frame));
  root.replaceChildren(
    h("h1", {}, `Load test ${run.id}`),
    h("p", {}, verdict(run.passed, run.forced), " ", refLink(run.ref), ` in ${run.env}`),
    facts([
      ["Target", report.target ? `${report.target} (${report.endpoint})` : null],
      ["Load", loadLine(load)],
      ["Started", `${fmt.time(report.started_at || run.created_at)} by ${run.created_by}`],
      ["Requests", `${results.requests ?? "—"} (${results.errors ?? 0} failed, error rate ${fmt.pct(results.error_rate)})`],
      ["Throughput", `${num(results.throughput)} req/s, ${num(results.tokens_per_second)} tokens/s`],
      ["TTFT", dist(results.ttft)],
      ["End to end", dist(results.e2e)],
    ]),
    h("h2", {}, "SLOs"),
    gates(report),
    h("h2", {}, "Over time"),
    charts(report.timeline || []),
    h("h2", {}, "Full report"),
    frame,
  );
  try {
    frame.srcdoc = await api(`/loadtests/${id}/report.html`, { text: true });
  } catch (error) {
    frame.replaceWith(h("p", { class: "error", role: "alert" }, `The HTML report could not be loaded: ${error.message}`));
  }
});

function loadLine(load) {
  if (!load.mode) return null;
  const shape =
    load.mode === "open"
      ? `open loop, ${num(load.rate)} req/s (${load.arrival})`
      : `closed loop, ${load.users} users (spawn ${num(load.spawn_rate)}/s)`;
  return `${shape}, ${num(load.duration_s)} s after ${num(load.warmup_s)} s warm-up, max ${load.max_tokens} tokens`;
}

function dist(d) {
  if (!d) return "—";
  return `p50 ${fmt.ms(d.p50)}, p95 ${fmt.ms(d.p95)}, p99 ${fmt.ms(d.p99)} (mean ${fmt.ms(d.mean)})`;
}

function gates(report) {
  const rows = [...(report.verdicts || []), ...(report.checks || [])];
  if (!rows.length) return empty("This run had no SLOs.", LOADTEST_COMMAND);
  return table(
    [
      ["Check", (g) => h("code", {}, g.key)],
      ["Verdict", (g) => verdict(g.passed)],
      ["Why", (g) => g.reason || "—"],
    ],
    rows,
    { rowAttrs: (g) => ({ class: g.passed ? null : "fail" }) },
  );
}

/** Throughput, errors and latency per time bin (x: seconds into the measured window). */
function charts(bins) {
  if (!bins.length) return empty("The report has no timeline (nothing was measured).");
  const per = (key) => bins.map((b) => [b.t, b[key] === null ? null : b[key] / (b.width || 1)]);
  const at = (key) => bins.map((b) => [b.t, b[key]]);
  return h(
    "div",
    { class: "charts", "data-testid": "loadtest-charts" },
    lineChart({ title: "Requests", unit: "per s", xTime: false, series: [{ name: "sent", points: per("requests") }, { name: "failed", points: per("errors") }] }),
    lineChart({ title: "Output tokens", unit: "per s", xTime: false, series: [{ name: "tokens/s", points: per("output_tokens") }] }),
    lineChart({ title: "Time to first token", unit: "s", xTime: false, series: [{ name: "p50", points: at("ttft_p50") }, { name: "p95", points: at("ttft_p95") }] }),
    lineChart({ title: "End-to-end latency", unit: "s", xTime: false, series: [{ name: "p50", points: at("e2e_p50") }, { name: "p95", points: at("e2e_p95") }] }),
  );
}

/** Grow the report's frame to its content, so the page scrolls instead of the frame. */
function fitFrame(frame) {
  try {
    const doc = frame.contentDocument;
    if (doc && doc.documentElement) frame.style.height = `${doc.documentElement.scrollHeight + 24}px`;
  } catch {
    // A frame we cannot read keeps its CSS height.
  }
}
