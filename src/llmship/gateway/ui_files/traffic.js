// The traffic split as a bar: one segment per release with its share of ordinary traffic,
// `<span data-ref="REF" data-weight="N">REF N%</span>`, and the notes the bar cannot show
// (a blue-green preview, a shadow that gets copies). Used by the overview and a rollout.

import { h } from "./app.js";
import { COLOURS } from "./charts.js";

/** A weight as the page writes it: 20, 33.33 (no trailing zeros). */
export function percent(value) {
  return String(Number(Number(value).toFixed(2)));
}

/**
 * The segments of a split: `weights` maps a release (NAME@VERSION), or a role of the
 * traffic policy ("stable", "canary", an experiment's variant), to a percent; the
 * policy (`traffic`) says which release plays each role. [{ref, role, weight}].
 */
export function shares(weights, traffic) {
  const policy = traffic || {};
  const variants = new Map(((policy.experiment && policy.experiment.variants) || []).map((v) => [v.name, v.release]));
  const roles = new Map();
  if (policy.stable) roles.set(policy.stable, "stable");
  if (policy.canary) roles.set(policy.canary.release, "canary");
  for (const [name, ref] of variants) roles.set(ref, name);
  return Object.entries(weights || {}).map(([key, weight]) => {
    if (key.includes("@")) return { ref: key, role: roles.get(key) || null, weight: Number(weight) };
    if (key === "stable") return { ref: policy.stable || key, role: "stable", weight: Number(weight) };
    if (key === "canary") return { ref: (policy.canary && policy.canary.release) || key, role: "canary", weight: Number(weight) };
    return { ref: variants.get(key) || key, role: key, weight: Number(weight) };
  });
}

/** The colour of a segment: stable blue, the canary red, an experiment's arms in order. */
function colour(share, index) {
  if (share.role === "stable") return COLOURS[0];
  if (share.role === "canary") return COLOURS[1];
  return COLOURS[index % COLOURS.length]; // an experiment's arms, as the live charts colour them
}

/** An empty element for the split (`data-testid="weights"`); fill it with drawWeights. */
export function weightsBar() {
  return h("div", { class: "split" }, h("div", { class: "weights", "data-testid": "weights", role: "group", "aria-label": "Traffic split" }), h("ul", { class: "split-legend" }), h("p", { class: "split-notes muted" }));
}

/** Draw `weights` (see shares) into an element made by weightsBar; unchanged input draws nothing. */
export function drawWeights(el, weights, traffic) {
  const key = JSON.stringify([weights, traffic]);
  if (el.dataset.drawn === key) return;
  el.dataset.drawn = key;
  const bar = el.querySelector(".weights");
  const legend = el.querySelector(".split-legend");
  const notes = el.querySelector(".split-notes");
  const list = shares(weights, traffic);
  if (!list.length) {
    bar.replaceChildren(h("span", { class: "none" }, "no traffic policy"));
    legend.replaceChildren();
  } else {
    bar.replaceChildren(
      ...list.map((share, i) =>
        h(
          "span",
          {
            "data-ref": share.ref,
            "data-weight": percent(share.weight),
            title: `${share.role ? `${share.role}: ` : ""}${share.ref} ${percent(share.weight)}%`,
            style: `flex: ${share.weight} 1 0; background: ${colour(share, i)}`,
          },
          `${share.ref} ${percent(share.weight)}%`,
        ),
      ),
    );
    legend.replaceChildren(
      ...list.map((share, i) =>
        h("li", {}, h("i", { style: `background: ${colour(share, i)}` }), share.role ? `${share.role}: ` : "", h("strong", {}, share.ref), ` · ${percent(share.weight)}%`),
      ),
    );
  }
  const policy = traffic || {};
  const extra = [];
  if (policy.preview) extra.push(`Preview: ${policy.preview} answers requests sent with X-Llmship-Variant: preview.`);
  if (policy.shadow) extra.push(`Shadow: ${policy.shadow.release} gets a copy of ${percent(policy.shadow.percent)}% of requests (its answers are not returned).`);
  notes.textContent = extra.join(" ");
  notes.hidden = extra.length === 0;
}
