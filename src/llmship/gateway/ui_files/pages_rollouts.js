// Pages: the overview of an environment (/ui), the list of rollouts (/ui/rollouts) and
// one rollout (/ui/rollouts/:id, drawn by rollout.js). Registers its routes with route().

import { api, empty, env, environments, fmt, gatewayEnv, h, href, link, navigate, poll, route } from "./app.js";
import { liveElsewhere, liveSection } from "./live.js";
import { phaseClass, redraw, releaseLink, rolloutPage, section, time } from "./rollout.js";
import { drawWeights, weightsBar } from "./traffic.js";

const LIST_LIMIT = 20;

function startCommand(envName) {
  return `llmship rollout start rollouts/canary.yaml --candidate NAME@VERSION --env ${envName}`;
}

function rolloutLink(r) {
  return link(href(`/rollouts/${r.id}`), `Rollout ${r.name}`);
}

// -- the overview ----------------------------------------------------------------

function productionCard(data) {
  const p = data.production;
  if (!p) {
    return [
      h("h2", {}, "Production"),
      empty(
        `${data.env} has no production release yet: register one and point production at it (llmship up does both for the bundled model).`,
        `llmship models register models/NAME-VERSION.yaml\nllmship alias set production NAME@VERSION --env ${data.env} --reason "first release"`,
      ),
    ];
  }
  return [
    h("h2", {}, "Production"),
    h("p", { class: "big" }, releaseLink(p.ref)),
    h("dl", { class: "facts" }, h("dt", {}, "Backend"), h("dd", {}, p.backend || "—"), h("dt", {}, "Model"), h("dd", {}, p.model || "—")),
  ];
}

function rolloutCard(data) {
  const r = data.rollout;
  const last = data.last_rollout;
  if (!r) {
    return [
      h("h2", {}, "Rollout"),
      empty(`No rollout is running in ${data.env}. Start one from a registered release:`, startCommand(data.env)),
      last ? h("p", {}, "Last: ", rolloutLink(last), " ", h("span", { class: phaseClass(last.phase) }, last.phase), ` · ${fmt.ago(last.updated_at)}`) : null,
    ];
  }
  return [
    h("h2", {}, "Rollout"),
    h("p", { class: "big" }, rolloutLink(r), " ", h("span", { class: phaseClass(r.phase) }, r.phase)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Strategy"),
      h("dd", {}, r.strategy),
      h("dt", {}, "Candidate"),
      h("dd", {}, releaseLink(r.candidate)),
      h("dt", {}, "Stable"),
      h("dd", {}, releaseLink(r.stable)),
      h("dt", {}, "Step"),
      h("dd", {}, r.step || "—"),
    ),
  ];
}

function events(list, envName) {
  if (!list || !list.length) return empty(`Nothing has happened in ${envName} yet: alias moves, traffic changes and rollouts are recorded here. Start the project:`, "llmship up");
  return h(
    "ol",
    { class: "timeline", "data-testid": "events" },
    list.map((e) => h("li", { "data-kind": e.kind }, time(e.at), " ", h("span", { class: "actor" }, e.actor), " ", h("span", { class: "badge kind" }, e.kind), " ", h("span", { class: "message" }, e.message))),
  );
}

function aliases(list, envName) {
  if (!list || !list.length) return empty(`No alias in ${envName}.`, `llmship alias set production NAME@VERSION --env ${envName} --reason "..."`);
  return h("dl", { class: "facts" }, list.flatMap((a) => [h("dt", {}, a.alias), h("dd", {}, releaseLink(a.ref))]));
}

function endpoints(list, envName) {
  if (!list || !list.length) return empty(`No model server has announced itself in ${envName}; llmship up starts them.`, "llmship up");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Release", "URL", "Last heartbeat"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, list.map((e) => h("tr", {}, h("td", {}, releaseLink(e.ref)), h("td", {}, h("code", {}, e.url)), h("td", {}, fmt.ago(e.heartbeat_at))))),
    ),
  );
}

function envNotes(envName) {
  const info = environments().find((e) => e.name === envName);
  if (!info) return null;
  const notes = [];
  if (info.approval) notes.push("promotions wait for an approval");
  if (info.reason_required) notes.push("changes must give a reason");
  if (info.gateway_port) notes.push(`gateway on port ${info.gateway_port}`);
  return notes.length ? h("p", { class: "muted" }, `${envName}: ${notes.join(" · ")}.`) : null;
}

route("/", "overview", async (root) => {
  const envName = env();
  document.title = "Overview · llmship";
  if (!envName) {
    root.replaceChildren(h("h1", {}, "Overview"), empty("No environment is known yet: create a project, then start it.", "llmship init && llmship up"));
    return;
  }
  const path = `/overview?env=${encodeURIComponent(envName)}`;
  const first = await api(path);
  document.title = `Overview of ${envName} · llmship`;
  const production = h("section", { class: "card", "data-testid": "production", "aria-label": "Production" });
  const rollout = h("section", { class: "card", "data-testid": "running-rollout", "aria-label": "Rollout" });
  const split = weightsBar();
  const recent = h("div");
  const aliasList = h("div");
  const endpointList = h("div");
  root.replaceChildren(
    h("h1", {}, `Overview of ${envName}`),
    envNotes(envName) || "",
    h("div", { class: "cards" }, production, rollout),
    section("Traffic split", split),
    envName === gatewayEnv() ? liveSection() : liveElsewhere(envName),
    section("Recent events", recent),
    h("div", { class: "cards" }, h("div", { class: "card" }, section("Aliases", aliasList)), h("div", { class: "card" }, section("Model servers", endpointList))),
  );
  const show = (data) => {
    redraw(production, data.production, () => productionCard(data));
    redraw(rollout, [data.rollout, data.last_rollout], () => rolloutCard(data));
    drawWeights(split, data.weights, data.traffic);
    redraw(recent, data.events, (list) => events(list, envName));
    redraw(aliasList, data.aliases, (list) => aliases(list, envName));
    redraw(endpointList, (data.endpoints || []).map((e) => [e.ref, e.url, fmt.ago(e.heartbeat_at)]), () => endpoints(data.endpoints, envName));
  };
  show(first);
  let skip = true;
  poll(async () => {
    if (skip) return void (skip = false);
    show(await api(path));
  });
});

// -- the rollouts ----------------------------------------------------------------

function pager(page, go) {
  if (page.total <= page.limit && page.offset === 0) return null;
  const last = Math.min(page.offset + page.items.length, page.total);
  return h(
    "nav",
    { class: "pager", "aria-label": "More rollouts" },
    h("button", { type: "button", disabled: page.offset === 0, onclick: () => go(Math.max(0, page.offset - page.limit)) }, "Newer"),
    h("span", {}, `${page.total ? page.offset + 1 : 0}–${last} of ${page.total}`),
    h("button", { type: "button", disabled: page.offset + page.limit >= page.total, onclick: () => go(page.offset + page.limit) }, "Older"),
  );
}

route("/rollouts", "rollouts", async (root, params, query) => {
  const envName = env();
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const show = ["running", "finished"].includes(query.get("show")) ? query.get("show") : "all";
  const filter = new URLSearchParams({ limit: String(LIST_LIMIT), offset: String(offset) });
  if (envName) filter.set("env", envName);
  if (show !== "all") filter.set("active", show === "running" ? "true" : "false");
  const page = await api(`/rollouts?${filter}`);
  document.title = "Rollouts · llmship";
  const go = (changes) => {
    const next = { show, offset: String(offset), ...changes };
    if (next.show === "all") delete next.show;
    if (next.offset === "0") delete next.offset;
    navigate(href("/rollouts", next));
  };
  const select = h(
    "select",
    { id: "rollouts-show", onchange: (event) => go({ show: event.target.value, offset: "0" }) },
    [
      ["all", "All rollouts"],
      ["running", "Running"],
      ["finished", "Finished"],
    ].map(([value, text]) => h("option", { value, selected: value === show }, text)),
  );
  const columns = [
    ["Rollout", (r) => [rolloutLink(r), h("span", { class: "muted" }, ` #${r.id}`)]],
    ["Phase", (r) => h("span", { class: phaseClass(r.phase) }, r.phase)],
    ["Strategy", (r) => r.strategy],
    ["Candidate", (r) => releaseLink(r.candidate)],
    ["Stable", (r) => releaseLink(r.stable)],
    ["Started", (r) => [time(r.created_at), h("div", { class: "muted" }, `by ${r.created_by}`)]],
    ["Updated", (r) => fmt.ago(r.updated_at)],
  ];
  root.replaceChildren(
    h("h1", {}, envName ? `Rollouts in ${envName}` : "Rollouts"),
    h("div", { class: "filters" }, h("label", { for: "rollouts-show" }, "Show", select)),
    page.items.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { "data-testid": "rollouts", class: "stack" },
            h("thead", {}, h("tr", {}, columns.map(([name]) => h("th", { scope: "col" }, name)))),
            h("tbody", {}, page.items.map((r) => h("tr", { "data-id": r.id, class: r.active ? "active" : null }, columns.map(([name, cell]) => h("td", { "data-label": name }, h("div", {}, cell(r))))))),
          ),
        )
      : empty(
          show === "finished" ? `No rollout has finished in ${envName || "this environment"} yet.` : `No rollout ${show === "running" ? "is running" : "yet"} in ${envName || "this environment"}. Start one:`,
          startCommand(envName || "ENV"),
        ),
    pager(page, (next) => go({ offset: String(next) })) || "",
  );
});

route("/rollouts/:id", "rollouts", async (root, params) => rolloutPage(root, params.id));
