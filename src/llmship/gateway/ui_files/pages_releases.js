// Releases: the list with each environment's aliases and their history, one release
// (its spec as YAML, where it is aliased, its gate runs), and the diff of two releases.

import { api, empty, env, fmt, h, href, link, route, table } from "./app.js";
import { facts, field, paged, plain, query, refLink, runLink, splitRef, verdict } from "./pages_parts.js";

const RELEASE_COMMAND = "llmship release models/chat.yaml -r \"what changed\"";

function releasePath(ref) {
  const [name, version] = splitRef(ref);
  return `/releases/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
}

function diffHref(a, b) {
  return href("/releases/diff", { a, b });
}

// -- the list --------------------------------------------------------------------

route("/releases", "releases", async (root) => {
  document.title = "Releases · llmship";
  const here = env();
  const releases = paged({
    name: "Releases pages",
    load: (limit, offset) => api(`/releases${query({ limit, offset })}`),
    none: () => empty("No release is registered yet. Register one from a release spec:", RELEASE_COMMAND),
    render: (items) =>
      table(
        [
          ["Release", (r) => refLink(r.ref)],
          ["Backend", (r) => r.backend],
          ["Model", (r) => r.model],
          ["Digest", (r) => h("code", { title: r.digest }, String(r.digest || "").slice(0, 12))],
          ["Registered", (r) => h("time", { datetime: r.created_at, title: fmt.time(r.created_at) }, fmt.ago(r.created_at))],
          ["By", (r) => r.created_by],
          ["Changes", (r) => previousLink(r, items)],
        ],
        items,
      ),
  });
  const aliases = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.replaceChildren(
    h("h1", {}, "Releases"),
    h("p", {}, link(href("/releases/diff"), "Compare two releases")),
    releases.element,
    h("h2", {}, here ? `Aliases in ${here}` : "Aliases"),
    aliases,
  );
  await releases.show(0);
  await showAliases(aliases, here);
});

/** "Diff" against the next older version of the same name on this page, if any. */
function previousLink(release, items) {
  const older = items.slice(items.indexOf(release) + 1).find((r) => r.name === release.name);
  return older ? link(diffHref(older.ref, release.ref), `Diff with ${older.version}`) : "—";
}

async function showAliases(box, here) {
  const page = await api(`/aliases${query({ env: here, limit: 500 })}`);
  if (!page.items.length) {
    const where = here ? ` --env ${here}` : "";
    box.replaceChildren(
      empty(`No alias in ${here || "any environment"} yet. Point one at a release:`, `llmship alias set production NAME@VERSION${where}`),
    );
    return;
  }
  const parts = [
    table(
      [
        ["Alias", (a) => h("a", { href: `#history-${a.env}-${a.alias}` }, a.alias)],
        ["Environment", (a) => a.env],
        ["Release", (a) => refLink(a.ref)],
        ["Moved", (a) => h("time", { datetime: a.updated_at, title: fmt.time(a.updated_at) }, fmt.ago(a.updated_at))],
      ],
      page.items,
    ),
  ];
  const lists = [];
  for (const alias of page.items) {
    const list = paged({
      name: `History of ${alias.alias} pages`,
      limit: 20,
      load: (limit, offset) =>
        api(`/aliases/${encodeURIComponent(alias.env)}/${encodeURIComponent(alias.alias)}/history${query({ limit, offset })}`),
      none: () => empty(`${alias.alias} has not moved yet.`),
      render: (items) =>
        table(
          [
            ["When", (m) => h("time", { datetime: m.at }, fmt.time(m.at))],
            ["From", (m) => refLink(m.from_ref)],
            ["To", (m) => refLink(m.to_ref)],
            ["Who", (m) => m.actor],
            ["Why", (m) => m.reason || "—"],
            ["Diff", (m) => (m.from_ref && m.to_ref ? link(diffHref(m.from_ref, m.to_ref), "Diff") : "—")],
          ],
          items,
        ),
    });
    lists.push(list);
    parts.push(
      h(
        "section",
        { class: "alias-history", id: `history-${alias.env}-${alias.alias}` },
        h("h3", {}, `History of ${alias.alias} in ${alias.env}`),
        list.element,
      ),
    );
  }
  box.replaceChildren(...parts);
  await Promise.all(lists.map((list) => list.show(0)));
}

// -- one release ------------------------------------------------------------------

route("/releases/:name/:version", "releases", async (root, params) => {
  const name = encodeURIComponent(params.name);
  const release = await api(`/releases/${name}/${encodeURIComponent(params.version)}`);
  document.title = `Release ${release.ref} · llmship`;
  const versions = await api(`/releases${query({ name: release.name, limit: 500 })}`).catch(() => ({ items: [] }));
  const refs = versions.items.map((r) => r.ref);
  const older = refs[refs.indexOf(release.ref) + 1];
  const aliases = release.aliases || [];
  const runs = release.gate_runs || [];
  root.replaceChildren(
    h("h1", {}, `Release ${release.ref}`),
    facts([
      ["Backend", release.backend],
      ["Model", release.model],
      ["Digest", h("code", {}, release.digest)],
      ["Registered", `${fmt.time(release.created_at)} by ${release.created_by}`],
      ["Aliased as", aliases.length ? aliases.map((a, i) => [i ? ", " : "", h("strong", {}, a.alias), ` in ${a.env}`]) : "no alias points here"],
      ["Compare", older ? link(diffHref(older, release.ref), `Diff with ${older}`) : link(diffHref(release.ref, ""), "Diff with another release")],
    ]),
    h("h2", {}, "Gate runs"),
    runs.length
      ? table(
          [
            ["Run", (r) => runLink(r)],
            ["Kind", (r) => r.kind],
            ["Verdict", (r) => verdict(r.passed, r.forced)],
            ["Against", (r) => refLink(r.baseline_ref)],
            ["Environment", (r) => r.env],
            ["When", (r) => h("time", { datetime: r.created_at }, fmt.time(r.created_at))],
            ["By", (r) => r.created_by],
          ],
          runs,
        )
      : empty(
          `No gate has run on ${release.ref} yet. Run the eval and the load test:`,
          `llmship eval --dataset evals/smoke.jsonl --candidate ${release.ref}\nllmship loadtest --release ${release.ref} --users 2 --duration 30s`,
        ),
    h("h2", {}, "Spec"),
    h("pre", { class: "spec", tabindex: "0", "aria-label": `The spec of ${release.ref} as YAML` }, h("code", {}, release.spec_yaml)),
  );
});

// -- the diff of two releases ---------------------------------------------------------

route("/releases/diff", "releases", async (root, _params, q) => {
  document.title = "Compare releases · llmship";
  const all = await api("/releases?limit=500");
  const refs = all.items.map((r) => r.ref);
  const a = q.get("a") || "";
  const b = q.get("b") || "";
  if (refs.length < 2 && !a && !b) {
    root.replaceChildren(
      h("h1", {}, "Compare releases"),
      empty("A diff needs two releases; register the next version of a spec:", RELEASE_COMMAND),
    );
    return;
  }
  const from = select("diff-from", refs, a || refs[1] || "");
  const to = select("diff-to", refs, b || refs[0] || "");
  const result = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Releases to compare" },
    field("diff-from", "From", from),
    field("diff-to", "To", to),
    h("button", { type: "submit" }, "Compare"),
    h("button", { type: "button", onclick: () => ([from.value, to.value] = [to.value, from.value]) }, "Swap"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    history.pushState(null, "", diffHref(from.value, to.value));
    showDiff(result, from.value, to.value);
  });
  root.replaceChildren(h("h1", {}, "Compare releases"), form, result);
  if (a && b) await showDiff(result, a, b, { propagate: true });
  else result.replaceChildren(h("p", { class: "muted" }, "Choose two releases and press Compare."));
});

function select(id, refs, chosen) {
  const options = refs.includes(chosen) || !chosen ? refs : [chosen, ...refs];
  return h("select", { id, name: id }, options.map((ref) => h("option", { value: ref, selected: ref === chosen }, ref)));
}

async function showDiff(box, a, b, { propagate = false } = {}) {
  let diff;
  try {
    diff = await api(`/releases/diff${query({ a, b })}`);
  } catch (error) {
    if (propagate && error.status === 404) throw error;
    box.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    return;
  }
  document.title = `${diff.a} → ${diff.b} · llmship`;
  if (!diff.changes.length) {
    box.replaceChildren(h("h2", {}, `${diff.a} → ${diff.b}`), empty("The two specs are the same."));
    return;
  }
  box.replaceChildren(
    h("h2", {}, "Changes ", refLink(diff.a), " → ", refLink(diff.b)),
    table(
      [
        ["Field", (c) => h("code", {}, c.path)],
        [`From ${diff.a}`, (c) => h("code", { class: c.a === null ? "muted" : "" }, plain(c.a))],
        [`To ${diff.b}`, (c) => h("code", { class: c.b === null ? "muted" : "" }, plain(c.b))],
      ],
      diff.changes,
      { rowAttrs: (c) => ({ "data-path": c.path }) },
    ),
    h("h2", {}, "Unified diff"),
    unified(diff.unified),
  );
}

/** The unified diff with its added, removed and hunk lines marked (and coloured). */
function unified(text) {
  const lines = String(text || "").replace(/\n$/, "").split("\n");
  const kind = (line) => {
    if (line.startsWith("+++") || line.startsWith("---")) return "file";
    if (line.startsWith("@@")) return "hunk";
    if (line.startsWith("+")) return "add";
    if (line.startsWith("-")) return "del";
    return "same";
  };
  return h(
    "pre",
    { class: "diff", "data-testid": "unified-diff", tabindex: "0", "aria-label": "Unified diff of the two specs" },
    lines.map((line) => {
      const k = kind(line);
      return k === "add" ? h("ins", { class: k }, line) : k === "del" ? h("del", { class: k }, line) : h("span", { class: k }, line);
    }),
  );
}
