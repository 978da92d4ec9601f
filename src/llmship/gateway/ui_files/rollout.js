// The page of one rollout (/ui/rollouts/:id): its phase and strategy, the current step
// among all steps, the traffic split, the action buttons, each analysis run with its
// metrics, conditions, verdicts and measurements, the live charts (when the rollout runs
// in this gateway's environment) and the timeline of its events. Polled every 1.5 s.

import { actionPanel } from "./actions.js";
import { api, empty, fmt, gatewayEnv, h, href, link, poll } from "./app.js";
import { liveElsewhere, liveSection } from "./live.js";
import { drawWeights, weightsBar } from "./traffic.js";

const PAGE = 500;
const RECENT_MEASUREMENTS = 10;

/** The class of a phase's badge (a rollout's or an analysis run's). */
export function phaseClass(phase) {
  if (phase === "Healthy" || phase === "Successful") return "badge ok";
  if (phase === "Aborted" || phase === "Failed" || phase === "Error") return "badge bad";
  if (phase === "Paused" || phase === "Inconclusive") return "badge warn";
  return "badge";
}

/** A link to a release's page, for NAME@VERSION. */
export function releaseLink(ref) {
  if (!ref || !ref.includes("@")) return ref || "—";
  const at = ref.lastIndexOf("@");
  return link(href(`/releases/${encodeURIComponent(ref.slice(0, at))}/${encodeURIComponent(ref.slice(at + 1))}`), ref);
}

/** A section with a heading (h2) and its content. */
export function section(title, ...content) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

/** Redraw `el` with `draw(value)` only when `value` differs from what it shows. */
export function redraw(el, value, draw) {
  const key = JSON.stringify(value);
  if (el.dataset.shown === key) return;
  el.dataset.shown = key;
  el.replaceChildren(...[draw(value)].flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
}

export function time(iso) {
  return h("time", { datetime: iso, title: fmt.time(iso) }, fmt.time(iso));
}

function facts(detail) {
  const rows = [
    ["Strategy", h("span", { "data-testid": "rollout-strategy" }, detail.strategy)],
    ["Environment", detail.env],
    ["Candidate", releaseLink(detail.candidate)],
    ["Stable", releaseLink(detail.stable)],
    ["Step", detail.step || "—"],
    detail.strategy === "canary" ? ["Candidate weight", `${fmt.num(detail.weight || 0)}%`] : null,
    ["Attempt", detail.attempt],
    detail.paused || detail.pause_reason ? ["Paused", detail.pause_reason || "yes"] : null,
    detail.blocked ? ["Waiting for", detail.blocked] : null,
    detail.abort_reason ? ["Abort reason", detail.abort_reason] : null,
    detail.message ? ["Message", detail.message] : null,
    ["Started", [time(detail.created_at), ` by ${detail.created_by}`]],
    ["Updated", time(detail.updated_at)],
  ];
  return rows.filter(Boolean).flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]);
}

function steps(list) {
  if (!list || !list.length) return h("li", { class: "pending" }, "This strategy has no steps.");
  return list.map((step) =>
    h("li", { class: step.state, "data-kind": step.kind, "aria-current": step.state === "current" ? "step" : null, title: step.state }, step.text),
  );
}

function measurementStrip(taken) {
  if (!taken || !taken.length) return h("span", { class: "muted" }, "none yet");
  return h(
    "span",
    { class: "measurements" },
    taken.map((m) =>
      h("span", { class: phaseClass(m.phase), title: `${m.phase} at ${fmt.time(m.at)}${m.message ? `: ${m.message}` : ""}` }, fmt.num(m.value)),
    ),
  );
}

function analysis(runs, measured) {
  if (!runs || !runs.length) {
    return empty("No analysis has run yet: a run starts when the rollout reaches the analysis its spec asks for (none, if the spec has no analysis).", null);
  }
  return runs.map((run) =>
    h(
      "article",
      { class: "run", "data-run": run.name },
      h("h3", {}, run.name, " ", h("span", { class: phaseClass(run.phase), "data-testid": "run-phase" }, run.phase), run.role ? h("span", { class: "muted" }, ` ${run.role}`) : null),
      run.message ? h("p", {}, run.message) : null,
      run.metrics.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "stack" },
              h("thead", {}, h("tr", {}, ["Metric", "Condition", "Last value", "Verdict", "Measurements"].map((c) => h("th", { scope: "col" }, c)))),
              h(
                "tbody",
                {},
                run.metrics.map((m) =>
                  h(
                    "tr",
                    { "data-metric": m.metric },
                    h("td", { "data-label": "Metric" }, h("div", {}, m.metric)),
                    h("td", { "data-label": "Condition" }, h("div", {}, m.condition ? h("code", {}, m.condition) : "—")),
                    h("td", { "data-label": "Last value" }, h("div", {}, fmt.num(m.last_value), m.last_message ? h("div", { class: "muted" }, m.last_message) : null)),
                    h("td", { "data-label": "Verdict" }, h("div", {}, h("span", { class: phaseClass(m.last_phase) }, m.last_phase || "—"))),
                    h("td", { "data-label": "Measurements" }, h("div", {}, h("div", {}, `${m.measurements} in all`), measurementStrip(measured.get(`${run.name}\n${m.metric}`)))),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No measurement yet."),
    ),
  );
}

function event(e) {
  return h(
    "li",
    { "data-kind": e.kind },
    time(e.at),
    " ",
    h("span", { class: "actor" }, e.actor),
    " ",
    h("span", { class: "badge kind" }, e.kind),
    " ",
    h("span", { class: "message" }, e.message),
  );
}

/** Render rollout `id` into `root` and keep it live (404 for an unknown id, via the router). */
export async function rolloutPage(root, id) {
  const path = `/rollouts/${encodeURIComponent(id)}`;
  let detail = await api(path);
  document.title = `Rollout ${detail.name} · llmship`;
  const phase = h("span", { "data-testid": "rollout-phase" });
  const factList = h("dl", { class: "facts" });
  const stepList = h("ol", { class: "steps", "data-testid": "steps", "aria-label": "Steps" });
  const split = weightsBar();
  const runs = h("div", { "data-testid": "analysis" });
  const timeline = h("ol", { class: "timeline", "data-testid": "timeline" });
  const noEvents = empty(
    "No events yet: the controller records them as it applies the rollout.",
    `llmship controller --env ${detail.env}   # or llmship up, which runs it`,
  );
  const panel = actionPanel(detail.id, (fresh) => fresh && show(fresh));
  const live = detail.env === gatewayEnv() ? liveSection() : liveElsewhere(detail.env);
  const waiting = empty(
    `Pending: the controller of ${detail.env} has not picked this rollout up yet. It runs with llmship up, or on its own:`,
    `llmship controller --env ${detail.env}`,
  );
  root.replaceChildren(
    h("p", { class: "crumbs" }, link(href("/rollouts"), "Rollouts"), ` / #${detail.id}`),
    h("h1", {}, `Rollout ${detail.name}`),
    h("p", { class: "lead" }, "Phase ", phase, ` · ${detail.strategy} of `, releaseLink(detail.candidate), " over ", releaseLink(detail.stable), ` in ${detail.env}`),
    waiting,
    section("Actions", panel.el),
    section("Steps", stepList),
    section("Traffic split", split),
    section("Details", factList),
    section("Analysis", runs),
    live,
    section("Timeline", noEvents, timeline),
  );

  const measured = new Map();
  let measurementsSeen = 0;
  let eventsSeen = 0;

  function show(fresh) {
    detail = fresh;
    if (phase.textContent !== detail.phase) phase.textContent = detail.phase;
    phase.className = phaseClass(detail.phase);
    waiting.hidden = detail.phase !== "Pending";
    redraw(factList, detail, facts);
    redraw(stepList, detail.steps, steps);
    drawWeights(split, detail.weights, detail.traffic);
    panel.update(detail);
    redraw(runs, [detail.runs, [...measured]], () => analysis(detail.runs, measured));
  }

  async function loadEvents() {
    for (;;) {
      const page = await api(`${path}/events?limit=${PAGE}&offset=${eventsSeen}`);
      eventsSeen += page.items.length;
      timeline.append(...page.items.map(event));
      if (!page.items.length || eventsSeen >= page.total) break;
    }
    noEvents.hidden = eventsSeen > 0;
  }

  async function loadMeasurements() {
    for (;;) {
      const page = await api(`${path}/measurements?limit=${PAGE}&offset=${measurementsSeen}`);
      measurementsSeen += page.items.length;
      for (const m of page.items) {
        const key = `${m.run}\n${m.metric}`;
        const taken = measured.get(key) || [];
        taken.push(m);
        measured.set(key, taken.slice(-RECENT_MEASUREMENTS));
      }
      if (!page.items.length || measurementsSeen >= page.total) break;
    }
  }

  show(detail);
  await Promise.all([loadEvents(), loadMeasurements()]);
  show(detail);
  let first = true;
  poll(async () => {
    if (first) return void (first = false);
    const fresh = await api(path);
    await Promise.all([loadEvents(), loadMeasurements()]);
    show(fresh);
  });
}
