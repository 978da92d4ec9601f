// Eval runs: the list, and one run — candidate against baseline per metric (delta,
// interval, p-value, verdict) and every case's outputs side by side, filtered by tag,
// by failure and by the type of a failed assertion.

import { api, empty, fmt, h, route, table } from "./app.js";
import { facts, field, releaseFilter, num, paged, query, refLink, runLink, signed, verdict } from "./pages_parts.js";

const EVAL_COMMAND = "llmship eval --dataset evals/smoke.jsonl --candidate NAME@VERSION";

// -- the list ------------------------------------------------------------------------

route("/evals", "evals", async (root, _params, q) => {
  document.title = "Eval runs · llmship";
  const filter = await releaseFilter(q, () => list.reload());
  const list = paged({
    name: "Eval runs pages",
    load: (limit, offset) => api(`/evals${query({ ref: filter.value(), limit, offset })}`),
    none: () =>
      filter.value()
        ? empty(`No run of ${filter.value()} yet.`, EVAL_COMMAND.replace("NAME@VERSION", filter.value()))
        : empty("No eval has run yet. Compare a release with production on a dataset:", EVAL_COMMAND),
    render: (runs) =>
      table(
        [
          ["Run", (r) => runLink(r)],
          ["Candidate", (r) => refLink(r.ref)],
          ["Baseline", (r) => refLink(r.baseline_ref)],
          ["Environment", (r) => r.env],
          ["Verdict", (r) => verdict(r.passed, r.forced)],
          ["Pass rate", (r) => passRate(r.summary)],
          ["Why", (r) => ((r.summary && r.summary.failures) || [])[0] || "—"],
          ["When", (r) => h("time", { datetime: r.created_at, title: fmt.time(r.created_at) }, fmt.ago(r.created_at))],
          ["By", (r) => r.created_by],
        ],
        runs,
      ),
  });
  root.replaceChildren(h("h1", {}, "Eval runs"), filter.element, list.element);
  await list.show(0);
});

function passRate(summary) {
  const row = summary && summary.metrics && summary.metrics.pass_rate;
  if (!row) return "—";
  return `${fmt.pct(row.candidate, 0)} (baseline ${fmt.pct(row.baseline, 0)})`;
}

// -- one run ----------------------------------------------------------------------------

route("/evals/:id", "evals", async (root, params, q) => {
  const id = encodeURIComponent(params.id);
  const data = await api(`/evals/${id}`);
  const { run, report } = data;
  document.title = `Eval run ${run.id} · llmship`;
  const alpha = report.gate && typeof report.gate.alpha === "number" ? report.gate.alpha : 0.05;
  const sides = { baseline: (report.baseline && report.baseline.ref) || run.baseline_ref, candidate: run.ref };
  const why = report.verdict || {};
  const parts = [
    h("h1", {}, `Eval run ${run.id}`),
    h("p", {}, verdict(run.passed, run.forced), " ", refLink(run.ref), " against ", refLink(sides.baseline)),
    facts([
      ["Environment", run.env],
      ["Baseline", report.baseline && report.baseline.source ? `${sides.baseline} (${report.baseline.source})` : null],
      ["Dataset", report.dataset ? `${report.dataset.path} (${report.dataset.cases} cases)` : null],
      ["Cases failed", `${data.cases_failed} of ${data.cases_total}`],
      ["A/A run", report.aa ? "yes: both sides are the same release content" : null],
      ["Judge", report.judge ? report.judge.ref : null],
      ["Ran", `${fmt.time(run.created_at)} by ${run.created_by}`],
    ]),
    reasons("Why it failed", why.failures, "error"),
    reasons("Notes", why.notes, "muted"),
    h("h2", {}, "Metrics"),
    metrics(report.metrics || [], alpha),
    h("h2", { id: "cases-title" }, "Cases"),
    cases(id, data, sides, q),
  ];
  root.replaceChildren(...parts.filter(Boolean));
});

function reasons(title, lines, cls) {
  if (!lines || !lines.length) return ""; // not null: root.replaceChildren() would show "null"
  return h("section", {}, h("h2", {}, title), h("ul", { class: cls }, lines.map((line) => h("li", {}, line))));
}

function metrics(rows, alpha) {
  if (!rows.length) return empty("This run has no metrics (its dataset has no references or assertions).");
  const confidence = `${Math.round((1 - alpha) * 100)}% interval`;
  const element = table(
    [
      ["Metric", (m) => h("strong", {}, m.metric)],
      ["Baseline", (m) => num(m.baseline)],
      ["Candidate", (m) => num(m.candidate)],
      ["Delta", (m) => h("span", { class: m.delta > 0 ? "pass" : m.delta < 0 ? "fail" : "" }, signed(m.delta))],
      [confidence, (m) => (m.ci_low === null || m.ci_low === undefined ? "—" : h("span", { class: "nowrap" }, `[${signed(m.ci_low)}, ${signed(m.ci_high)}]`))],
      ["p-value", (m) => num(m.p_value, 2)],
      ["Test", (m) => m.test || "—"],
      ["n", (m) => m.n ?? "—"],
      ["Verdict", (m) => [verdict(m.gated ? m.passed : null), (m.reasons || []).map((r) => h("div", { class: "reason" }, r))]],
    ],
    rows,
    { rowAttrs: (m) => ({ "data-metric": m.metric, class: m.gated && m.passed === false ? "fail" : null }) },
  );
  element.setAttribute("data-testid", "metrics");
  return element;
}

// -- the cases ----------------------------------------------------------------------------

function cases(id, data, sides, q) {
  const tag = h("select", { id: "case-tag", name: "tag" }, h("option", { value: "" }, "All tags"), (data.tags || []).map((t) => h("option", { value: t }, t)));
  const assertion = h(
    "select",
    { id: "case-assertion", name: "assertion" },
    h("option", { value: "" }, "Any"),
    (data.assertion_types || []).map((t) => h("option", { value: t }, t)),
  );
  const failed = h("input", { id: "case-failed", name: "failed", type: "checkbox" });
  tag.value = q.get("tag") || "";
  assertion.value = q.get("assertion") || "";
  failed.checked = q.get("failed") === "true";
  const filters = () => ({ tag: tag.value, failed: failed.checked ? "true" : "", assertion: assertion.value });
  const list = paged({
    name: "Cases pages",
    labels: ["Previous", "Next"],
    limit: 20,
    load: (limit, offset) => api(`/evals/${id}/cases${query({ ...filters(), limit, offset })}`),
    none: () =>
      Object.values(filters()).some(Boolean)
        ? empty("No case matches these filters.")
        : empty("This run has no cases."),
    render: (rows) => h("div", { class: "case-list" }, rows.map((row) => caseView(row, sides))),
  });
  const refilter = () => {
    const url = new URL(location.href);
    for (const [key, value] of Object.entries(filters())) {
      if (value) url.searchParams.set(key, value);
      else url.searchParams.delete(key);
    }
    history.replaceState(null, "", url.pathname + url.search);
    list.reload();
  };
  for (const control of [tag, assertion, failed]) control.addEventListener("change", refilter);
  const section = h(
    "section",
    { "data-testid": "cases", "aria-labelledby": "cases-title" },
    h(
      "div",
      { class: "filters", role: "group", "aria-label": "Filter the cases" },
      field("case-tag", "Tag", tag),
      h("div", { class: "field check" }, h("label", { for: "case-failed" }, failed, " Only failed")),
      field("case-assertion", "Assertion", assertion),
      h("span", { class: "muted" }, `${data.cases_failed} of ${data.cases_total} failed`),
    ),
    list.element,
  );
  list.reload();
  return section;
}

/** One case: its prompt and references, then the two sides' outputs and assertions. */
function caseView(row, sides) {
  const candidate = row.candidate || {};
  const failing = candidate.passed === false;
  return h(
    "article",
    { class: failing ? "case fail" : "case", "data-case": row.id },
    h(
      "header",
      {},
      h("h3", {}, `Case ${row.id}`),
      h("span", { class: `badge ${failing ? "bad" : "ok"}` }, failing ? "failed" : "passed"),
      row.change && row.change !== "same" ? h("span", { class: "badge warn" }, row.change) : null,
      (row.tags || []).map((t) => h("span", { class: "badge tag" }, t)),
    ),
    prompt(row),
    row.references && row.references.length
      ? h("p", { class: "refs" }, h("span", { class: "muted" }, "Expected: "), row.references.map((r, i) => [i ? " · " : "", h("code", {}, r)]))
      : null,
    h("div", { class: "side-by-side" }, side("Baseline", sides.baseline, row.baseline), side("Candidate", sides.candidate, row.candidate)),
  );
}

function prompt(row) {
  if (row.messages && row.messages.length) {
    return h(
      "div",
      { class: "prompt" },
      row.messages.map((m) => h("p", {}, h("span", { class: "muted" }, `${m.role}: `), String(m.content ?? ""))),
    );
  }
  return h("div", { class: "prompt" }, h("p", {}, h("span", { class: "muted" }, "Input: "), String(row.input ?? "")));
}

function side(title, ref, result) {
  if (!result) return h("section", { class: "side" }, h("h4", {}, title), h("p", { class: "muted" }, "No output on this side."));
  const asserts = result.assertions || [];
  return h(
    "section",
    { class: `side ${result.passed === false ? "side-fail" : ""}`, "aria-label": `${title} ${ref || ""}`.trim() },
    h("h4", {}, `${title} `, h("span", { class: "muted" }, ref || ""), " ", verdict(result.passed)),
    result.error
      ? h("p", { class: "error" }, `Error: ${result.error}`)
      : h("pre", { class: "output" }, result.output === "" ? h("span", { class: "muted" }, "(empty answer)") : String(result.output ?? "")),
    asserts.length
      ? h(
          "ul",
          { class: "assertions" },
          asserts.map((a) =>
            h(
              "li",
              { class: a.passed ? "assert-pass" : "assert-fail" },
              h("strong", {}, a.passed ? "pass" : "fail"),
              ` ${a.type}`,
              a.reason ? h("span", { class: "muted" }, ` — ${a.reason}`) : null,
            ),
          ),
        )
      : h("p", { class: "muted" }, "No assertions."),
    h(
      "p",
      { class: "muted small" },
      [
        result.score !== null && result.score !== undefined ? `score ${num(result.score)}` : null,
        result.latency_s !== null && result.latency_s !== undefined ? `latency ${fmt.secs(result.latency_s)}` : null,
        result.completion_tokens !== null && result.completion_tokens !== undefined ? `${result.completion_tokens} tokens` : null,
        result.cached ? "cached" : null,
      ]
        .filter(Boolean)
        .join(" · "),
    ),
  );
}
