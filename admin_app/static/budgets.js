// The budgets page: one card per budget with a bar per scope key of its current period,
// and the form that adds, changes or removes one. Every figure is the admin API's
// (GET budgets/); writes go to the same API with the session's CSRF token. Loaded after
// dashboard.js, whose API calls, formatting, status line and loads it shares.
(() => {
  "use strict";

  const I18N = window.llmI18n;
  const t = I18N.t;
  const L = window.llmTracker;
  const { el, fmtUSD, fmtInt, fmtTime, fmtPercent, fmtExactUSD } = L;
  const body = document.body;

  const list = document.getElementById("budgets");
  const empty = document.getElementById("budgets-empty");
  const editor = document.getElementById("editor");
  const editorHome = document.getElementById("editor-home");
  const form = document.getElementById("budget-form");
  const formError = document.getElementById("form-error");
  const api = list.dataset.api;
  const csrfUrl = list.dataset.csrf;

  let budgets = []; // the last answer's budgets
  let editing = null; // the budget the form changes; null: the form adds one
  let initial = {}; // the form's values when it was opened (a change sends only the difference)

  function itemUrl(id) {
    return `${api}${encodeURIComponent(id)}/`;
  }

  // --- writes -------------------------------------------------------------------------

  // A write: a fresh CSRF token (it belongs to this session), then the JSON request.
  async function send(method, url, payload) {
    const { csrf_token: token } = await L.getJSON(csrfUrl);
    const init = { method, headers: { "X-CSRFToken": token } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return L.requestJSON(url, init);
  }

  // --- what a budget is, in words -----------------------------------------------------

  function userName(id) {
    const option = form.querySelector(
      `select[name=scope_user] option[value="${CSS.escape(String(id))}"]`);
    return (option && option.dataset.username) || `#${id}`;
  }

  function scopeText(b) {
    if (b.scope === "global") return t("budget.scope_global");
    if (b.scope_value === null || b.scope_value === undefined) return t(`budget.each_${b.scope}`);
    const label = b.scope === "user"
      ? (b.status.find((s) => s.label) || {}).label || userName(b.scope_value) : b.scope_value;
    return t("budget.scope_one", { what: t(`banner.scope_${b.scope}`), value: label });
  }

  function keyLabel(b, s) {
    if (b.scope === "global" || s.scope_key === null) return t("budget.key_all");
    if (b.scope === "user") return s.label || `#${s.scope_key}`;
    return s.scope_key;
  }

  function limitText(b) {
    const parts = [];
    if (b.limit_usd !== null) parts.push(fmtUSD(b.limit_usd));
    if (b.limit_tokens !== null) parts.push(t("budget.tokens", { n: fmtInt(b.limit_tokens) }));
    return t(`budget.limit_${b.period}`, { limit: parts.join(t("budget.and")) });
  }

  function badge(state) {
    return el("span", { class: `badge state-${state}`, dataset: { state } },
      t(`state.${state}`));
  }

  function toFloat(text) {
    return text === null || text === undefined ? 0 : Number.parseFloat(text);
  }

  // --- one scope key's bar and figures ------------------------------------------------

  // What part of the limit an amount is (over 1 when past it); the bar caps it at 1.
  function ratio(part, whole) {
    if (!(whole > 0)) return part > 0 ? 1 : 0;
    return Math.max(0, part / whole);
  }

  function share(part, whole) {
    return Math.min(1, ratio(part, whole));
  }

  // The bar: spent, then reserved (stacked), then what remains, against the limit; a tick
  // where the period would end at the burn rate so far.
  function meter(unit, limit, spent, reserved, projected) {
    const spentShare = share(spent, limit);
    const reservedShare = Math.min(1 - spentShare, share(reserved, limit));
    const spentBar = el("span", { class: "spent" });
    spentBar.style.width = `${spentShare * 100}%`;
    const reservedBar = el("span", { class: "reserved" });
    reservedBar.style.width = `${reservedShare * 100}%`;
    const tick = el("span", { class: "projected", title: t("budget.projected_tick") });
    tick.style.left = `${share(projected, limit) * 100}%`;
    tick.hidden = !(projected > spent);
    const used = share(spent + reserved, limit);
    return el("div", {
      class: `meter${used >= 1 ? " full" : ""}`,
      role: "img",
      "aria-label": t("budget.meter", { pct: fmtPercent(ratio(spent, limit)) }),
      dataset: { unit, spent: String(spentShare), reserved: String(reservedShare) },
    }, spentBar, reservedBar, tick);
  }

  function figure(field, label, text, raw, money = false) {
    return el("div", { dataset: { field, value: raw === null ? "null" : String(raw) } },
      el("dt", {}, t(label)),
      el("dd", { title: money ? fmtExactUSD(raw) : null }, text));
  }

  function usdUnit(b, s) {
    const hasLimit = b.limit_usd !== null;
    const money = (field, label) => figure(field, label,
      s[field] === null ? "—" : fmtUSD(s[field]), s[field], true);
    const figures = [money("spent_usd", "fig.spent"), money("reserved_usd", "fig.reserved")];
    if (hasLimit) figures.push(money("remaining_usd", "fig.remaining"));
    figures.push(money("projected_usd", "fig.projected"));
    return el("div", { class: "unit", dataset: { unit: "usd" } },
      el("div", { class: "unit-head" }, el("span", { class: "unit-label" }, t("unit.usd")),
        hasLimit ? el("span", { class: "of" }, t("budget.of", {
          pct: fmtPercent(ratio(toFloat(s.spent_usd), toFloat(b.limit_usd))),
          limit: fmtUSD(b.limit_usd) })) : null),
      hasLimit ? meter("usd", toFloat(b.limit_usd), toFloat(s.spent_usd),
        toFloat(s.reserved_usd), toFloat(s.projected_usd)) : null,
      el("dl", { class: "figures" }, ...figures));
  }

  function tokenUnit(b, s) {
    const int = (field, label) => figure(field, label, fmtInt(s[field]), s[field]);
    return el("div", { class: "unit", dataset: { unit: "tokens" } },
      el("div", { class: "unit-head" }, el("span", { class: "unit-label" }, t("unit.tokens")),
        el("span", { class: "of" }, t("budget.of", {
          pct: fmtPercent(ratio(s.spent_tokens, b.limit_tokens)),
          limit: fmtInt(b.limit_tokens) }))),
      meter("tokens", b.limit_tokens, s.spent_tokens, s.reserved_tokens, s.projected_tokens),
      el("dl", { class: "figures" }, int("spent_tokens", "fig.spent"),
        int("reserved_tokens", "fig.reserved"), int("remaining_tokens", "fig.remaining"),
        int("projected_tokens", "fig.projected")));
  }

  function keyRow(b, s) {
    const blocked = s.blocked_calls || 0;
    return el("div", { class: `key state-${s.state}`,
      dataset: { key: s.scope_key === null ? "" : s.scope_key, state: s.state } },
    el("div", { class: "key-head" },
      el("strong", { class: "key-label" }, keyLabel(b, s)), " ", badge(s.state)),
    usdUnit(b, s),
    b.limit_tokens !== null ? tokenUnit(b, s) : null,
    el("dl", { class: "figures meta" },
      figure("resets_at", "fig.resets_at", fmtTime(s.resets_at, L.browserZone), s.resets_at),
      figure("blocked_calls", "fig.blocked_calls", fmtInt(blocked), blocked)));
  }

  // --- one budget's card --------------------------------------------------------------

  function card(b) {
    const thresholds = (b.thresholds || []).map((x) => fmtPercent(x)).join(", ");
    const facts = [
      el("span", { dataset: { fact: "scope" } }, scopeText(b)),
      el("span", { dataset: { fact: "limit" } }, limitText(b)),
      el("span", { dataset: { fact: "tz" } }, b.tz),
      el("span", { dataset: { fact: "action" } }, t(`budget.action_${b.action}`)),
      el("span", { dataset: { fact: "thresholds" } },
        thresholds ? t("budget.alerts_at", { list: thresholds }) : t("budget.no_alerts")),
    ];
    if (b.webhook_url) {
      facts.push(el("span", { dataset: { fact: "webhook" } }, t("budget.webhook"), " ",
        el("code", {}, b.webhook_url)));
    }
    const keys = b.status.length
      ? b.status.map((s) => keyRow(b, s))
      : [el("p", { class: "no-keys" }, t("budget.no_keys"))];
    return el("article", { class: `panel budget state-${b.state}`,
      dataset: { id: b.id, name: b.name, state: b.state } },
    el("div", { class: "budget-head" },
      el("h2", {}, el("span", { class: "budget-name" }, b.name), " ", badge(b.state)),
      el("div", { class: "budget-actions" },
        el("button", { type: "button", class: "secondary", dataset: { action: "edit" } },
          t("budgets.edit")),
        el("button", { type: "button", class: "secondary danger",
          dataset: { action: "delete" } }, t("budgets.delete")))),
    el("p", { class: "facts" }, ...facts.flatMap((f, i) => (i ? [" · ", f] : [f]))),
    el("div", { class: "keys" }, ...keys));
  }

  function render(data) {
    budgets = (data && data.budgets) || [];
    editorHome.after(editor); // out of the card it may be in: the cards are drawn anew
    list.replaceChildren(...budgets.map(card));
    list.hidden = budgets.length === 0;
    empty.hidden = budgets.length !== 0;
    empty.textContent = t("budgets.empty");
    document.getElementById("budgets-note").textContent = t("budgets.note",
      { zone: L.browserZone });
    if (editing) {
      const fresh = budgets.find((b) => b.id === editing.id);
      if (fresh) placeEditor(fresh);
      else closeEditor(); // removed meanwhile (another tab, another admin)
    }
  }

  function hideList() {
    editorHome.after(editor);
    list.hidden = true;
    empty.textContent = t("budgets.failed");
    empty.hidden = false;
  }

  const load = () => L.loadPage(() => L.getJSON(api), render, hideList);

  // --- the form -----------------------------------------------------------------------

  function showScopeFields() {
    const scope = form.elements.scope.value;
    for (const field of form.querySelectorAll("[data-scope-field]")) {
      const which = field.dataset.scopeField;
      field.hidden = scope === "global" || (which === "user") !== (scope === "user");
    }
  }

  function trimZeros(text) {
    if (text === null || text === undefined) return "";
    const s = String(text);
    return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  }

  function fill(b) {
    const f = form.elements;
    f.name.value = b ? b.name : "";
    f.scope.value = b ? b.scope : "user";
    const value = b && b.scope_value !== null ? b.scope_value : "";
    if (b && b.scope === "user" && value && !f.scope_user.querySelector(
      `option[value="${CSS.escape(value)}"]`)) {
      f.scope_user.append(el("option", { value }, t("filters.unknown_user", { id: value })));
    }
    f.scope_user.value = b && b.scope === "user" ? value : "";
    f.scope_value.value = b && b.scope !== "user" ? value : "";
    f.period.value = b ? b.period : "day";
    f.tz.value = b ? b.tz : "UTC";
    f.limit_usd.value = b ? trimZeros(b.limit_usd) : "";
    f.limit_tokens.value = b && b.limit_tokens !== null ? String(b.limit_tokens) : "";
    f.action.value = b ? b.action : "block";
    f.thresholds.value = b ? b.thresholds.join(", ") : "0.8, 1";
    f.webhook_url.value = b && b.webhook_url ? b.webhook_url : "";
    f.active.checked = b ? b.active : true;
    showScopeFields();
  }

  // A number the user typed goes as a JSON number, anything else as typed: the API's
  // message then names the field and what is wrong with it.
  function numberOrText(text) {
    return /^\d+(\.\d+)?$|^\.\d+$/.test(text) ? Number(text) : text;
  }

  function collect() {
    const f = form.elements;
    const text = (name) => f[name].value.trim();
    const scope = f.scope.value;
    let value = null;
    if (scope === "user") value = f.scope_user.value || null;
    else if (scope !== "global") value = text("scope_value") || null;
    return {
      name: text("name"),
      scope,
      scope_value: value,
      period: f.period.value,
      tz: text("tz") || "UTC",
      limit_usd: text("limit_usd") || null,
      limit_tokens: text("limit_tokens") === "" ? null : numberOrText(text("limit_tokens")),
      action: f.action.value,
      thresholds: text("thresholds").split(/[\s,;]+/).filter(Boolean).map(numberOrText),
      webhook_url: text("webhook_url") || null,
      active: f.active.checked,
    };
  }

  function changes() {
    const now = collect();
    return Object.fromEntries(Object.entries(now).filter(([key, value]) =>
      JSON.stringify(value) !== JSON.stringify(initial[key])));
  }

  function setTitle(key, name) {
    const title = document.getElementById("editor-title");
    title.dataset.i18n = key;
    title.textContent = t(key);
    document.getElementById("editor-name").textContent = name || "";
  }

  function placeEditor(b) {
    const target = list.querySelector(`article.budget[data-id="${CSS.escape(String(b.id))}"]`);
    if (target) target.querySelector(".budget-head").after(editor);
  }

  function openEditor(b) {
    editing = b;
    fill(b);
    initial = collect();
    hideFormError();
    const save = document.getElementById("save");
    save.dataset.i18n = b ? "budgets.save" : "budgets.create";
    save.textContent = t(save.dataset.i18n);
    setTitle(b ? "budgets.edit_h2" : "budgets.add_h2", b ? b.name : "");
    editorHome.after(editor);
    if (b) placeEditor(b);
    editor.hidden = false;
    editor.dataset.mode = b ? "edit" : "add";
    editor.scrollIntoView({ block: "nearest" });
    (b ? form.elements.limit_usd : form.elements.name).focus();
  }

  function closeEditor() {
    editing = null;
    editor.hidden = true;
    delete editor.dataset.mode;
    hideFormError();
    editorHome.after(editor);
  }

  function hideFormError() {
    formError.hidden = true;
    formError.replaceChildren();
  }

  function showFormError(err) {
    const prefix = err.kind === "network" ? t("status.network")
      : err.kind === "expired" ? t("form.expired") : t("status.api");
    formError.replaceChildren(prefix, el("span", { class: "message" }, err.message));
    formError.hidden = false;
    if (err.kind === "expired") L.showError(err); // the status line's way to log in again
  }

  // After a write: the list again (with its new status) and the banner (a limit raised
  // ends an alert's line only with the next period, but a removed budget's goes at once).
  async function saved() {
    await load();
    L.refreshBanner();
  }

  async function submit(event) {
    event.preventDefault();
    const save = document.getElementById("save");
    save.disabled = true;
    form.dataset.state = "saving";
    hideFormError();
    try {
      if (editing) await send("PATCH", itemUrl(editing.id), changes());
      else await send("POST", api, collect());
    } catch (err) {
      if (!(err instanceof L.ApiError)) throw err;
      showFormError(err);
      form.dataset.state = "error";
      save.disabled = false;
      return;
    }
    save.disabled = false;
    form.dataset.state = "saved";
    closeEditor();
    await saved();
  }

  async function remove(b) {
    if (!window.confirm(t("budgets.confirm_delete", { name: b.name }))) return;
    try {
      await send("DELETE", itemUrl(b.id));
    } catch (err) {
      if (!(err instanceof L.ApiError)) throw err;
      L.showError(err);
      return;
    }
    if (editing && editing.id === b.id) closeEditor();
    await saved();
  }

  function init() {
    const zones = typeof Intl.supportedValuesOf === "function"
      ? Intl.supportedValuesOf("timeZone") : [];
    document.getElementById("tz-list").replaceChildren(
      ...["UTC", ...zones.filter((z) => z !== "UTC")].map((z) => el("option", { value: z })));
    form.elements.scope.addEventListener("change", showScopeFields);
    form.addEventListener("submit", submit);
    form.querySelector("[data-action=cancel]").addEventListener("click", closeEditor);
    document.getElementById("add-budget").addEventListener("click", () => openEditor(null));
    list.addEventListener("click", (event) => {
      const button = event.target.closest(".budget-actions button[data-action]");
      const article = button && button.closest("article.budget");
      if (!article) return;
      const id = Number(article.dataset.id);
      const b = budgets.find((x) => x.id === id);
      if (!b) return;
      if (button.dataset.action === "edit") openEditor(b);
      if (button.dataset.action === "delete") remove(b);
    });
    I18N.onChange(load);
    load();
  }

  if (body.dataset.page === "budgets") init();
})();
