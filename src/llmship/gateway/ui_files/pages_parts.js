// Parts the release, eval, load-test and feedback pages share: a list that pages
// through the API, links to releases and gate runs, verdict badges, number formats.

import { api, h, href, link } from "./app.js";

/** "chat@1.1.0" → ["chat", "1.1.0"] (the version is after the last "@"). */
export function splitRef(ref) {
  const at = String(ref).lastIndexOf("@");
  return at < 0 ? [String(ref), ""] : [ref.slice(0, at), ref.slice(at + 1)];
}

/** A link to a release's page (plain text when there is no ref). */
export function refLink(ref) {
  if (!ref) return "—";
  const [name, version] = splitRef(ref);
  if (!version) return ref;
  return link(href(`/releases/${encodeURIComponent(name)}/${encodeURIComponent(version)}`), ref);
}

const RUN_PAGES = { eval: "evals", loadtest: "loadtests" };

/** A link to a gate run's page (eval, load test); other kinds have none. */
export function runLink(run, text = `#${run.id}`) {
  const page = RUN_PAGES[run.kind];
  return page ? link(href(`/${page}/${run.id}`), text) : text;
}

/** passed / failed (forced) as a badge. */
export function verdict(passed, forced = false) {
  if (passed === null || passed === undefined) return h("span", { class: "badge" }, "not gated");
  const text = (passed ? "passed" : "failed") + (forced ? " (forced)" : "");
  return h("span", { class: `badge ${passed ? "ok" : "bad"}${forced ? " warn" : ""}` }, text);
}

/** A number with `digits` significant digits, without trailing zeros ("100", "0.25", "—"). */
export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const x = Number(value);
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-4)) return x.toExponential(digits - 1);
  const text = x.toPrecision(Math.max(digits, Math.floor(Math.log10(Math.abs(x) || 1)) + 1));
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

/** A signed difference ("+0.12", "-3.4", "0"). */
export function signed(value, digits = 3) {
  if (value === null || value === undefined) return "—";
  const text = num(value, digits);
  return Number(value) > 0 ? `+${text}` : text;
}

/** A JSON value as one line of text (objects as JSON, absent as "—"). */
export function plain(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** A control (with `id`) and its label above it. */
export function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

/** A definition list of [term, value] pairs (pairs with a null value are left out). */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, value]) => value !== null && value !== undefined).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

/**
 * A list that pages through the API. `load(limit, offset)` returns a Page
 * ({items, total, limit, offset}); `render(items)` draws one page; `none()` the empty
 * state. The buttons ("Newer"/"Older" for newest-first lists) show only when the list
 * passes one page. `await list.show(0)` loads the first page (errors propagate, so an
 * API 404 reaches the page's `failed`); later pages show their errors in place.
 */
export function paged({ load, render, none, limit = 50, labels = ["Newer", "Older"], name = "pages" }) {
  const body = h("div", { class: "paged-body" });
  const status = h("span", { class: "muted", "aria-live": "polite" });
  const back = h("button", { type: "button" }, labels[0]);
  const forth = h("button", { type: "button" }, labels[1]);
  const nav = h("div", { class: "pager", role: "group", "aria-label": name }, back, status, forth);
  const element = h("div", { class: "paged" }, body, nav);
  let offset = 0;
  let latest = 0; // answers can come back out of order (a filter changed twice): the last asked wins

  async function show(to) {
    const asked = ++latest;
    const page = await load(limit, to);
    if (asked !== latest) return page;
    offset = page.offset;
    const count = page.items.length;
    if (page.total === 0) {
      body.replaceChildren(none());
      nav.hidden = true;
      return page;
    }
    body.replaceChildren(count ? render(page.items) : h("p", { class: "muted" }, "Nothing on this page."));
    status.textContent = count ? `${offset + 1}–${offset + count} of ${page.total}` : `of ${page.total}`;
    back.disabled = offset === 0;
    forth.disabled = offset + count >= page.total;
    nav.hidden = page.total <= limit && offset === 0;
    // A focused button that just became disabled would drop the focus to the page.
    if (document.activeElement === back && back.disabled) forth.focus();
    if (document.activeElement === forth && forth.disabled) back.focus();
    return page;
  }

  async function go(to) {
    const asked = latest + 1;
    try {
      await show(to);
    } catch (error) {
      if (asked !== latest) return;
      body.replaceChildren(h("p", { class: "error", role: "alert" }, error.message || String(error)));
    }
  }

  back.addEventListener("click", () => go(Math.max(0, offset - limit)));
  forth.addEventListener("click", () => go(offset + limit));
  return { element, show, reload: () => go(0) };
}

/** A query string from an object, leaving out empty values ("?a=1&b=x" or ""). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "" && value !== false) q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * The "Release" filter of a list of gate runs: a select of the registered releases,
 * its choice kept in the address (`?ref=`); `onChange()` runs when it changes.
 */
export async function releaseFilter(q, onChange) {
  const releases = await api("/releases?limit=500").catch(() => ({ items: [] }));
  const refs = releases.items.map((r) => r.ref);
  const wanted = q.get("ref") || "";
  if (wanted && !refs.includes(wanted)) refs.unshift(wanted);
  const select = h(
    "select",
    { id: "runs-release", name: "ref" },
    h("option", { value: "" }, "All releases"),
    refs.map((ref) => h("option", { value: ref }, ref)),
  );
  select.value = wanted;
  select.addEventListener("change", () => {
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("ref", select.value);
    else url.searchParams.delete("ref");
    history.replaceState(null, "", url.pathname + url.search);
    onChange();
  });
  return { element: h("div", { class: "filters" }, field("runs-release", "Release", select)), value: () => select.value };
}
