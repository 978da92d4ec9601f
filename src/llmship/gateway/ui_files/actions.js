// A rollout's action buttons: Promote, Pause, Resume, Abort, Retry and Undo, each a
// `<div class="action">` with its `<button>` and a `.why` beside it that says why it is
// disabled (the API's reason, or that the admin token is needed) or what it does. Abort
// and Undo ask for a reason inline first. A refusal shows the API's message in `.why`
// with role="alert". The buttons record intents; the controller applies them.

import { api, canAct, cannotActReason, h } from "./app.js";

const ACTIONS = [
  { name: "promote", label: "Promote", hint: "Go on past the current step (a pause, an analysis)." },
  { name: "pause", label: "Pause", hint: "Hold the rollout where it is; the weights stay." },
  { name: "resume", label: "Resume", hint: "Lift the pause and go on." },
  { name: "abort", label: "Abort", hint: "Put all traffic back on stable now.", reason: true, danger: true },
  { name: "retry", label: "Retry", hint: "Start the aborted rollout again from its first step." },
  { name: "undo", label: "Undo", hint: "Move production back to the release it pointed at before.", reason: true, danger: true },
];
export const NO_TOKEN = "Sign in with the admin token to act";
const NOTE_MS = 10000;

/**
 * The action panel of rollout `id`: `{el, update(detail)}`. update() sets each button
 * from `detail.actions` (call it with every fresh RolloutDetail); `changed(detail)` is
 * called with the rollout an action answered with.
 */
export function actionPanel(id, changed) {
  let detail = null;
  const items = ACTIONS.map((spec) => actionItem(id, spec, (rollout) => changed(rollout), () => update(detail)));
  const readOnly = h(
    "p",
    { class: "read-only" },
    "Read-only: the buttons need the gateway's admin token. ",
    h("button", { type: "button", onclick: () => document.getElementById("token-button").click() }, "Sign in"),
  );
  const el = h("div", { class: "action-panel" }, readOnly, h("div", { class: "actions", role: "group", "aria-label": "Actions" }, items.map((item) => item.el)));

  function update(fresh) {
    detail = fresh;
    readOnly.hidden = canAct();
    const offered = new Map(((detail && detail.actions) || []).map((a) => [a.action, a]));
    for (const item of items) item.update(offered.get(item.name));
  }
  return { el, update };
}

function actionItem(id, spec, changed, refresh) {
  const whyId = `why-${spec.name}`;
  const button = h("button", { type: "button", id: `action-${spec.name}`, class: spec.danger ? "danger" : null, "aria-describedby": whyId }, spec.label);
  const why = h("p", { class: "why", id: whyId, tabindex: "-1" });
  const full = spec.name === "promote" ? h("input", { type: "checkbox", id: "promote-full" }) : null;
  const fullLabel = full ? h("label", { class: "check", for: "promote-full" }, full, "Skip the remaining steps") : null;
  const reason = spec.reason ? h("input", { type: "text", id: `reason-${spec.name}`, name: "reason", maxlength: "500", autocomplete: "off" }) : null;
  const cancel = h("button", { type: "button" }, "Cancel");
  const form = spec.reason
    ? h(
        "form",
        { class: "confirm", id: `confirm-${spec.name}` },
        h("label", { for: `reason-${spec.name}` }, "Reason"),
        reason,
        h("div", { class: "buttons" }, h("button", { type: "submit", class: "danger" }, `Confirm ${spec.name}`), cancel),
      )
    : null;
  // the form is in the page only while it is open (one "Reason" field at a time)
  const el = h("div", { class: "action", "data-action": spec.name }, button, fullLabel, why);
  let note = null; // {text, alert, until}
  let busy = false;

  function update(info) {
    const acting = canAct();
    const allowed = Boolean(info && info.allowed);
    button.disabled = busy || !acting || !allowed;
    if (full) full.disabled = button.disabled;
    let text;
    let alert = false;
    if (note && (note.alert || note.until > Date.now())) {
      ({ text, alert } = note);
    } else if (!acting) {
      text = cannotActReason();
    } else if (!allowed) {
      text = (info && info.reason) || `${spec.label} is not offered for this rollout.`;
    } else {
      text = spec.hint;
    }
    if (why.textContent !== text) why.textContent = text;
    why.className = `why${alert ? " error" : allowed && acting && !note ? " hint" : ""}`;
    if (alert) why.setAttribute("role", "alert");
    else why.removeAttribute("role");
  }

  async function send(body) {
    busy = true;
    refresh();
    try {
      const answer = await api(`/rollouts/${encodeURIComponent(id)}/${spec.name}`, { method: "POST", body });
      note = { text: answer.message || `${spec.label} requested.`, alert: false, until: Date.now() + NOTE_MS };
      if (form) {
        form.remove();
        button.setAttribute("aria-expanded", "false");
      }
      busy = false;
      changed(answer.rollout);
      (button.disabled ? why : button).focus();
    } catch (error) {
      note = { text: error.message || String(error), alert: true, until: 0 };
      busy = false;
      refresh();
    }
  }

  button.addEventListener("click", () => {
    note = null;
    if (!form) {
      send(full && full.checked ? { full: true } : {});
      return;
    }
    if (!form.isConnected) el.append(form);
    button.setAttribute("aria-expanded", "true");
    refresh();
    reason.focus();
  });
  if (form) {
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", form.id);
    const close = () => {
      form.remove();
      button.setAttribute("aria-expanded", "false");
      button.focus();
    };
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = reason.value.trim();
      send(text ? { reason: text } : {});
    });
  }
  return { name: spec.name, el, update };
}
