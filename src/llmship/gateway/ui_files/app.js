// The dashboard's shell: the API client, the admin token, routing, and small DOM helpers.
// Pages live in their own modules and register with route(); main.js starts the app.

const TOKEN_KEY = "llmship.token";
const WHO_KEY = "llmship.who";
const routes = [];
let cleanups = [];
let current = { env: null, environments: [], gatewayEnv: null };

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// -- the admin token ------------------------------------------------------

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Keep a token and who it is (`GET /api/v1/whoami`: name and role) for this session. */
export function setToken(value, who = null) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    sessionStorage.setItem(WHO_KEY, JSON.stringify(who || {}));
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
  }
  showAccess();
}

/** The signed-in token's `{actor, role}`, or {} without one. */
export function who() {
  try {
    return JSON.parse(sessionStorage.getItem(WHO_KEY) || "{}");
  } catch {
    return {};
  }
}

/** Whether the token may act (role operator or admin; read tokens only read). */
export function canAct() {
  return token() !== "" && ["operator", "admin"].includes(who().role);
}

/** Why the buttons are off: no token, or a token that only reads. */
export function cannotActReason() {
  return token() ? `Your token (${who().actor || "?"}) may only read: acting needs an operator or admin token` : "Sign in with the admin token to act";
}

function showAccess() {
  const badge = document.getElementById("access");
  const button = document.getElementById("token-button");
  if (!badge) return;
  if (token()) {
    const { actor = "?", role = "?" } = who();
    badge.textContent = `${actor} (${role})`;
    badge.className = canAct() ? "badge ok" : "badge";
    button.textContent = "Change token";
  } else {
    badge.textContent = "Read-only";
    badge.className = "badge";
    button.textContent = "Sign in with the admin token";
  }
}

// -- the API ----------------------------------------------------------------

/** GET (or `method`) `/api/v1${path}`; the parsed JSON, or an ApiError. */
export async function api(path, { method = "GET", body = undefined, text = false } = {}) {
  const headers = { Accept: text ? "text/html" : "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const raw = await response.text();
  let data = raw;
  if (!text) {
    try {
      data = raw ? JSON.parse(raw) : null;
    } catch {
      data = { error: { message: raw } };
    }
  }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || `HTTP ${response.status}`;
    if (response.status === 401 || response.status === 403) tokenProblem(response.status, message);
    if (response.status === 403 && method === "GET" && headers.Authorization) {
      // a token the gateway no longer has: forget it and read as everyone may
      setToken("");
      return api(path, { method, body, text });
    }
    throw new ApiError(response.status, message, data);
  }
  return data;
}

function tokenProblem(status, message) {
  const text =
    status === 403
      ? "The admin token is wrong (the gateway does not know it, or it may not do this): signed out; sign in again with a token of the gateway."
      : "This needs the admin token: sign in with the gateway's token.";
  banner(`${text} (${message})`);
}

export function banner(text) {
  const el = document.getElementById("banner");
  if (!el) return;
  el.replaceChildren(h("span", {}, text), h("button", { type: "button", onclick: () => (el.hidden = true), "aria-label": "Dismiss" }, "×"));
  el.hidden = false;
}

// -- DOM ----------------------------------------------------------------------

/** h("a", {href: "/ui", class: "x"}, "text", child, ...): an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A link inside the dashboard (navigates without a reload). */
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

/** A table: `columns` is [[heading, row => cell], ...]. */
export function table(columns, rows, { caption = null, rowAttrs = null } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([name]) => h("th", { scope: "col" }, name)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map(([, cell]) => h("td", {}, cell(row))))),
      ),
    ),
  );
}

/** An empty state: what is missing, and the command that fills it. */
export function empty(message, command = null) {
  return h("div", { class: "empty" }, h("p", {}, message), command ? h("pre", {}, h("code", {}, command)) : null);
}

/** The 404 page. */
export function notFound(root, what) {
  document.title = "Not found · llmship";
  root.replaceChildren(
    h("h1", {}, "404: not found"),
    h("p", {}, what),
    h("p", {}, link("/ui", "Back to the overview")),
  );
}

/** An error from the API, shown in place of the page. */
export function failed(root, error) {
  if (error instanceof ApiError && error.status === 404) return notFound(root, error.message);
  root.replaceChildren(h("h1", {}, "Could not load this page"), h("p", { class: "error", role: "alert" }, error.message || String(error)));
}

export const fmt = {
  time(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString();
  },
  ago(iso) {
    if (!iso) return "—";
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },
  num(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    const v = Number(value);
    if (Math.abs(v) >= 10 ** digits) return String(Math.round(v));
    return String(Number(v.toPrecision(digits)));
  },
  pct(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return `${(100 * value).toFixed(digits)}%`;
  },
  ms(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    return `${Math.round(seconds * 1000)} ms`;
  },
  secs(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
  },
};

// -- the environment ------------------------------------------------------

/** The environment the pages show (the switcher's value; the gateway's own at first). */
export function env() {
  return current.env;
}

/** The environments the registry knows, as `GET /api/v1/environments` lists them. */
export function environments() {
  return current.environments;
}

/** The environment this gateway serves (live figures are this gateway's). */
export function gatewayEnv() {
  return current.gatewayEnv;
}

async function loadEnvironments() {
  const select = document.getElementById("env-select");
  try {
    const data = await api("/environments");
    current.environments = data.items;
    current.gatewayEnv = data.current;
  } catch (error) {
    current.environments = [];
    current.gatewayEnv = null;
  }
  const wanted = new URLSearchParams(location.search).get("env");
  const names = current.environments.map((e) => e.name);
  current.env = wanted && names.includes(wanted) ? wanted : current.gatewayEnv || names[0] || null;
  select.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === current.env }, n)));
  select.onchange = () => {
    current.env = select.value;
    const url = new URL(location.href);
    url.searchParams.set("env", current.env);
    navigate(url.pathname + url.search, { replace: true });
  };
}

// -- routing ----------------------------------------------------------------

/**
 * Register a page: `pattern` like "/rollouts/:id" (under /ui), `render(root, params, query)`
 * async; it may call onLeave(fn) for what to stop when the user goes elsewhere.
 */
export function route(pattern, nav, render) {
  const names = [];
  const regex = new RegExp(
    "^" + pattern.replace(/:([a-z]+)/g, (_, name) => (names.push(name), "([^/]+)")) + "/?$",
  );
  routes.push({ regex, names, nav, render });
}

/** Run `fn` when the page is left (stop polling, close streams). */
export function onLeave(fn) {
  cleanups.push(fn);
}

/** Call `fn` now and every `ms` until the page is left; errors show in the banner once. */
export function poll(fn, ms = 1500) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

/** The URL of a dashboard page, keeping the chosen environment. */
export function href(path, params = {}) {
  const query = new URLSearchParams(params);
  if (current.env && current.env !== current.gatewayEnv && !query.has("env")) query.set("env", current.env);
  const text = query.toString();
  return `/ui${path}${text ? `?${text}` : ""}`;
}

let shownPath = null;

/** After a move to another page (not a filter on the same one), focus its heading, as a
 * page load would put a screen reader's reading there. */
function focusHeading(root, path) {
  const moved = shownPath !== null && shownPath !== path;
  shownPath = path;
  const heading = root.querySelector("h1");
  if (!moved || !heading) return;
  heading.tabIndex = -1;
  heading.focus({ preventScroll: true });
}

async function render() {
  for (const fn of cleanups) fn();
  cleanups = [];
  const root = document.getElementById("main");
  const path = location.pathname.replace(/^\/ui/, "") || "/";
  const query = new URLSearchParams(location.search);
  const wanted = query.get("env");
  if (wanted && wanted !== current.env && current.environments.some((e) => e.name === wanted)) {
    current.env = wanted;
    document.getElementById("env-select").value = wanted;
  }
  for (const { regex, names, nav, render: page } of routes) {
    const match = regex.exec(path);
    if (!match) continue;
    const params = Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(match[i + 1])]));
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    root.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      await page(root, params, query);
    } catch (error) {
      failed(root, error);
    }
    focusHeading(root, path);
    return;
  }
  notFound(root, `There is no dashboard page at ${location.pathname}.`);
  focusHeading(root, path);
}

// -- start ------------------------------------------------------------------------

function tokenDialog() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  document.getElementById("token-button").onclick = () => {
    input.value = "";
    error.hidden = true;
    dialog.showModal();
    input.focus();
  };
  document.getElementById("token-cancel").onclick = () => dialog.close();
  document.getElementById("token-forget").onclick = () => {
    setToken("");
    dialog.close();
    render();
  };
  document.getElementById("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    const response = await fetch("/api/v1/whoami", { headers: { Authorization: `Bearer ${value}` } });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      error.textContent =
        response.status === 403
          ? "This token is wrong: the gateway knows no such token."
          : (body.error && body.error.message) || `The gateway answered ${response.status}.`;
      error.hidden = false;
      return;
    }
    setToken(value, await response.json());
    document.getElementById("banner").hidden = true;
    dialog.close();
    render();
  });
}

export async function start() {
  showAccess();
  tokenDialog();
  document.body.addEventListener("click", (event) => {
    const a = event.target.closest("a[data-link]");
    if (!a || event.metaKey || event.ctrlKey || event.shiftKey || a.target) return;
    event.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", render);
  await loadEnvironments();
  await render();
}
