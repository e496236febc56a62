// The dashboard pages' script: every number on screen comes from the admin JSON API.
// Plain ES2020, no build step; Chart.js (vendor/chart.umd.min.js) draws the time series,
// i18n.js (loaded first) gives the messages and the locale numbers and dates are shown in.
(() => {
  "use strict";

  const I18N = window.llmI18n;
  const t = I18N.t;
  const body = document.body;
  const urls = {
    stats: body.dataset.apiStats,
    usage: body.dataset.apiUsage,
    export: body.dataset.apiExport,
    dashboard: body.dataset.dashboardUrl,
    usagePage: body.dataset.usageUrl,
    login: body.dataset.loginUrl,
  };
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  // --- the API ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(kind, message, status) {
      super(message);
      this.kind = kind; // "expired" (401), "api" (any other error answer), "network"
      this.status = status;
    }
  }

  // One request to the API (GET by default; init adds a method, headers, a body): its JSON
  // answer (null for 204 No Content), or an ApiError.
  async function requestJSON(url, init = {}) {
    let response;
    try {
      response = await fetch(url, {
        ...init,
        headers: { Accept: "application/json", ...(init.headers || {}) },
        credentials: "same-origin",
      });
    } catch (err) {
      throw new ApiError("network", t("status.unreachable", { message: err.message }), 0);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      // A proxy's HTML error page, say: reported below by status alone.
    }
    if (response.status === 401) {
      throw new ApiError("expired", (data && data.error) || "authentication required", 401);
    }
    if (!response.ok) {
      const message = (data && data.error) || `HTTP ${response.status} ${response.statusText}`;
      throw new ApiError("api", message, response.status);
    }
    return data;
  }

  function getJSON(url) {
    return requestJSON(url);
  }

  // --- formatting ---------------------------------------------------------------------

  // Intl formatters are built once per locale (the language switch changes it).
  const formatters = new Map();
  function formatter(kind, make) {
    const key = `${I18N.locale}\u0000${kind}`;
    if (!formatters.has(key)) formatters.set(key, make(I18N.locale));
    return formatters.get(key);
  }

  function fmtInt(n) {
    if (n === null || n === undefined) return "—";
    return formatter("int", (l) => new Intl.NumberFormat(l, { maximumFractionDigits: 0 }))
      .format(n);
  }

  function fmtMs(n) {
    return n === null || n === undefined ? "—" : t("ms", { n: fmtInt(n) });
  }

  function fmtShare(x) {
    if (x === null || x === undefined) return "—";
    return formatter("share", (l) => new Intl.NumberFormat(l, {
      style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1,
    })).format(x);
  }

  // The one money rule, for every figure on every page (cards, tables, chart axis and
  // tooltips, row detail): US dollars with exactly four decimals, rounded half up, in the
  // page's locale ($1,234.5650 in English, US$1,234.5650 in Chinese). LLM calls cost
  // fractions of a cent, so four places are the fewest that show one call; the same number
  // of places everywhere keeps a column comparable at a glance. A non-zero amount that
  // rounds to nothing reads <$0.0001 (never $0.0000, which means free), no cost at all
  // reads "unpriced".
  const MONEY_PLACES = 4;

  // Money arrives as an exact decimal string; it is rounded on the string itself (no
  // float) so "$0.0072" on a card is the API's "0.007215000", not a binary approximation.
  function roundDecimal(text, places) {
    const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(String(text).trim());
    if (!m || (m[2] || m[3] || "") === "") return null;
    const frac = (m[3] || "").padEnd(places + 1, "0");
    let n = BigInt((m[2] || "0") + frac.slice(0, places));
    if (frac[places] >= "5") n += 1n;
    const digits = n.toString().padStart(places + 1, "0");
    return {
      negative: m[1] === "-" && n !== 0n,
      intPart: digits.slice(0, digits.length - places),
      fracPart: digits.slice(digits.length - places),
      isZero: n === 0n,
      exactZero: /^[+-]?0*(\.0*)?$/.test(String(text).trim()),
    };
  }

  // Intl formats a decimal string exactly (no float on the way), so the rounded digits are
  // the ones shown; it only adds the locale's grouping and currency sign.
  function moneyFormat() {
    return formatter("usd", (l) => new Intl.NumberFormat(l, {
      style: "currency", currency: "USD",
      minimumFractionDigits: MONEY_PLACES, maximumFractionDigits: MONEY_PLACES,
    }));
  }

  function fmtUSD(text) {
    if (text === null || text === undefined) return t("unpriced");
    const r = roundDecimal(text, MONEY_PLACES);
    if (r === null) return String(text);
    if (r.isZero && !r.exactZero) {
      return `<${moneyFormat().format(`0.${"0".repeat(MONEY_PLACES - 1)}1`)}`;
    }
    return moneyFormat().format(`${r.negative ? "-" : ""}${r.intPart}.${r.fracPart}`);
  }

  // A chart tick is a float: its decimal text (never exponent notation) gets the same rule.
  function fmtUSDNumber(value) {
    return fmtUSD(Number(value).toFixed(MONEY_PLACES + 2));
  }

  // Hover text: the API's exact value, for anyone who needs more than four places.
  function fmtExactUSD(text) {
    return text === null || text === undefined ? null : t("money.exact", { value: text });
  }

  function toFloat(text) {
    return text === null || text === undefined ? null : Number.parseFloat(text);
  }

  function fmtTime(iso, zone) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    try {
      return formatter(`time ${zone}`, (l) => new Intl.DateTimeFormat(l, {
        timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      })).format(date);
    } catch (err) {
      return iso; // an unknown zone: the API reports it; show the UTC value meanwhile
    }
  }

  // A bucket is the API's local start with its offset ("2026-11-27T00:00:00+05:45"): its
  // wall-clock digits are read as they are and formatted as UTC, so the label is the
  // zone's own day or hour whatever the browser's time zone data says.
  function wallClock(iso) {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?/.exec(iso);
    if (!m) return null;
    return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0)));
  }

  const BUCKET_FORMATS = {
    day: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      hourCycle: "h23" },
    month: { month: "short", day: "numeric" },
    year: { year: "numeric", month: "short" },
  };

  function fmtBucket(iso, granularity) {
    const date = wallClock(iso);
    const options = BUCKET_FORMATS[granularity];
    if (!date || !options) return iso;
    return formatter(`bucket ${granularity}`, (l) => new Intl.DateTimeFormat(l,
      { ...options, timeZone: "UTC" })).format(date);
  }

  function dayFormat() {
    return formatter("day", (l) => new Intl.DateTimeFormat(l,
      { dateStyle: "medium", timeZone: "UTC" }));
  }

  function fmtDay(ymd) {
    const date = wallClock(ymd);
    return date ? dayFormat().format(date) : ymd;
  }

  function fmtDayRange(start, end) {
    const a = wallClock(start);
    const b = wallClock(end);
    if (!a || !b) return `${start} – ${end}`;
    if (start === end) return dayFormat().format(a);
    return a < b ? dayFormat().formatRange(a, b) : `${dayFormat().format(a)} – ${
      dayFormat().format(b)}`;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // --- status line --------------------------------------------------------------------

  const statusBox = document.getElementById("status");

  function showStatus(kind, ...content) {
    statusBox.className = `status ${kind}`;
    statusBox.replaceChildren(...content);
  }

  function clearStatus() {
    showStatus("");
  }

  function showError(err) {
    if (err.kind === "expired") {
      const next = location.pathname + location.search;
      const login = `${urls.login}?next=${encodeURIComponent(next)}`;
      showStatus("error expired", t("status.expired"),
        el("a", { href: login }, t("status.login_again")), t("status.to_see"));
      // The top bar was rendered while the session lived: it must not claim it still does.
      const who = document.querySelector(".topbar .who");
      if (who) {
        who.replaceChildren(`${t("who.not_logged_in")} · `,
          el("a", { href: login }, t("who.login")));
      }
      return;
    }
    const prefix = err.kind === "network" ? t("status.network") : t("status.api");
    showStatus("error", prefix, el("span", { class: "message" }, err.message));
  }

  // --- one load, the same on every page -----------------------------------------------

  // Responses can arrive out of order when filters change quickly; only the latest counts.
  let requestSeq = 0;

  // Run fetcher() (one or more API requests) and draw the answer with render(data), after
  // clearing the status line (render sets it again to say a result is empty). An error goes
  // to the status line (an expired session with its login link) and failed() hides what
  // the page can no longer show. data-state and data-loads tell tests (and anyone
  // curious) that a load has finished.
  async function loadPage(fetcher, render, failed = () => {}) {
    const seq = ++requestSeq;
    body.dataset.state = "loading";
    const { data, error } = await fetcher().then(
      (answer) => ({ data: answer }), (err) => ({ error: err }));
    if (seq !== requestSeq) return;
    if (error && !(error instanceof ApiError)) throw error;
    if (error) {
      showError(error);
      failed();
    } else {
      clearStatus();
      render(data);
    }
    updateScrollHints();
    body.dataset.state = error ? "error" : "ready";
    body.dataset.loads = String(Number(body.dataset.loads || 0) + 1);
  }

  // --- tables: sortable headers, scroll hints -----------------------------------------

  // A column: key (what it sorts by), label (message key), kind ("text", "int", "money",
  // "share", or "none" for a column that does not sort), cell(row) -> the <td>'s children,
  // value(row) -> the sort value (default row[key]).
  const sortState = new Map(); // table id -> {key, dir}
  const tableRows = new WeakMap(); // table -> {columns, rows, rowAttrs}

  function compareValues(a, b, kind) {
    if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
    if (b === null || b === undefined) return -1;
    if (kind === "text") return String(a).localeCompare(String(b), I18N.locale);
    return Number(a) - Number(b);
  }

  function sortedRows(table) {
    const { columns, rows } = tableRows.get(table);
    const state = sortState.get(table.id);
    const column = state && columns.find((c) => c.key === state.key);
    if (!column) return rows;
    const value = column.value || ((row) => row[column.key]);
    const keyed = rows.map((row, i) => ({ row, i, v: value(row) }));
    keyed.sort((x, y) => {
      // The folded "others" group stays last, whatever the order.
      if (x.row.others !== y.row.others) return x.row.others ? 1 : -1;
      const nullX = x.v === null || x.v === undefined;
      const nullY = y.v === null || y.v === undefined;
      if (nullX || nullY) return compareValues(x.v, y.v, column.kind) || x.i - y.i;
      const c = compareValues(x.v, y.v, column.kind);
      return (state.dir === "asc" ? c : -c) || x.i - y.i;
    });
    return keyed.map((k) => k.row);
  }

  function renderHead(table) {
    const { columns } = tableRows.get(table);
    const state = sortState.get(table.id);
    table.querySelector("thead tr").replaceChildren(...columns.map((c) => {
      const num = c.kind !== "text" && c.kind !== "none";
      const th = el("th", { class: num ? "num" : null, dataset: { key: c.key } });
      if (c.kind === "none") {
        th.textContent = t(c.label);
        return th;
      }
      const sorted = state && state.key === c.key;
      th.setAttribute("aria-sort", sorted ? (state.dir === "asc" ? "ascending" : "descending")
        : "none");
      th.append(el("button", { type: "button", class: "sort", title: t("sort.hint"),
        dataset: { sort: c.key } }, t(c.label)));
      return th;
    }));
  }

  function renderBody(table) {
    const { columns, rowAttrs } = tableRows.get(table);
    table.querySelector("tbody").replaceChildren(...sortedRows(table).map((row) => el("tr",
      rowAttrs(row), ...columns.map((c) => {
        const cell = c.cell(row);
        if (cell instanceof Node && cell.tagName === "TD") return cell;
        const num = c.kind !== "text" && c.kind !== "none";
        return el("td", { class: num ? "num" : null }, cell);
      }))));
  }

  function renderTable(table, columns, rows, rowAttrs) {
    tableRows.set(table, { columns, rows, rowAttrs });
    renderHead(table);
    renderBody(table);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("th button.sort");
    if (!button) return;
    const table = button.closest("table");
    const { columns } = tableRows.get(table);
    const column = columns.find((c) => c.key === button.dataset.sort);
    const state = sortState.get(table.id);
    // First click: biggest first for figures, A to Z for names; again: the other way.
    let dir = column.kind === "text" ? "asc" : "desc";
    if (state && state.key === column.key) dir = state.dir === "asc" ? "desc" : "asc";
    sortState.set(table.id, { key: column.key, dir });
    renderHead(table);
    renderBody(table);
    table.querySelector(`th[data-key="${column.key}"] button`).focus();
  });

  // A table wider than its panel scrolls inside it (never the page): the container's
  // shadows (CSS) and a line of text under it say there is more to the side.
  function updateScrollHints() {
    for (const box of document.querySelectorAll("[data-scroll]")) {
      const hint = box.nextElementSibling;
      const table = box.querySelector("table");
      const overflowing = !table.hidden && box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("overflowing", overflowing);
      if (hint && hint.classList.contains("scroll-hint")) hint.hidden = !overflowing;
    }
  }
  window.addEventListener("resize", updateScrollHints);

  function moneyCell(text) {
    return el("td", { class: `num${text === null ? " unpriced" : ""}`,
      title: fmtExactUSD(text) }, fmtUSD(text));
  }

  // --- filter forms kept in the URL ---------------------------------------------------

  // The URL is the state: forms write it, loads read it, so any view can be bookmarked.
  function currentParams(defaults) {
    const params = new URLSearchParams(location.search);
    for (const [key, value] of [...params]) {
      if (value.trim() === "") params.delete(key);
    }
    params.delete("lang"); // the page's language, not a filter (i18n.js reads it)
    for (const [key, value] of Object.entries(defaults)) {
      if (!params.has(key)) params.set(key, value);
    }
    return params;
  }

  function fillForm(form, values) {
    for (const field of form.elements) {
      if (!field.name) continue;
      const value = values.get(field.name);
      if (field.tagName === "SELECT") {
        const known = value !== null && [...field.options].some((o) => o.value === value);
        if (value !== null && !known && field.name === "user_id") {
          // A user id the user table does not know (rows may carry any id) stays selectable.
          field.append(el("option", { value }, t("filters.unknown_user", { id: value })));
        }
        field.value = value !== null && (known || field.name === "user_id") ? value
          : field.dataset.default;
      } else {
        field.value = value || "";
      }
    }
  }

  function formParams(form) {
    const params = new URLSearchParams();
    for (const field of form.elements) {
      if (!field.name) continue;
      const value = field.value.trim();
      if (value !== "") params.set(field.name, value);
    }
    return params;
  }

  // The address for new filters, keeping a ?lang= the page was opened with.
  function pushParams(params) {
    const lang = new URLSearchParams(location.search).get("lang");
    if (lang) params.set("lang", lang);
    const query = params.toString();
    history.pushState(null, "", query ? `?${query}` : location.pathname);
  }

  function setupFilters(form, load, toParams = formParams) {
    for (const field of form.elements) {
      if (field.tagName === "SELECT") field.dataset.default = field.value;
    }
    const zones = typeof Intl.supportedValuesOf === "function"
      ? Intl.supportedValuesOf("timeZone") : [];
    const list = document.getElementById("tz-list");
    if (list) list.replaceChildren(...zones.map((z) => el("option", { value: z })));

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      pushParams(toParams(form));
      load();
    });
    for (const field of form.elements) {
      if (field.tagName === "SELECT" || field.type === "date") {
        field.addEventListener("change", () => form.requestSubmit());
      }
    }
    form.querySelector("[data-action=reset]").addEventListener("click", () => {
      pushParams(new URLSearchParams());
      load();
    });
    window.addEventListener("popstate", load);
    I18N.onChange(load);
    load();
  }

  // In-page links (drill-downs) load without leaving the page; a modified click (new tab)
  // or a middle click follows the link as usual.
  function followInPage(event, load) {
    const link = event.target.closest("a[data-in-page]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey
      || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    history.pushState(null, "", link.getAttribute("href"));
    load();
  }

  // --- dashboard: the period ----------------------------------------------------------

  const PERIODS = ["today", "7d", "30d", "this_month", "last_month", "all", "custom"];
  const DEFAULT_PERIOD = "30d";
  const STACKS = ["model", "user", "node"];
  // Filters a drill-down sets: the dimension's query name, and the chip's label.
  const DRILL_KEYS = ["user_id", "node_name", "model_exact", "provider", "source_type"];
  const LIMIT = 10; // groups in a breakdown panel and keys in a stacked chart (then others)
  const EPOCH = "1970-01-01"; // "all time" charts start at the first month with calls

  // Today's date in zone, as YYYY-MM-DD (en-CA writes dates that way).
  function todayIn(zone) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit" };
    let parts;
    try {
      parts = new Intl.DateTimeFormat("en-CA", { ...options, timeZone: zone })
        .formatToParts(new Date());
    } catch (err) {
      // An unknown zone: the API says so; the dates are the browser's meanwhile.
      parts = new Intl.DateTimeFormat("en-CA", options).formatToParts(new Date());
    }
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}`;
  }

  function ymd(date) {
    return date.toISOString().slice(0, 10);
  }

  function addDays(day, n) {
    const date = wallClock(day);
    date.setUTCDate(date.getUTCDate() + n);
    return ymd(date);
  }

  function daysBetween(a, b) {
    return Math.round((wallClock(b) - wallClock(a)) / 86_400_000);
  }

  // A preset's first and last day (both inclusive; the API's date-only end_date covers its
  // whole day), in the zone the stats are asked for: the browser's unless another is set.
  function presetRange(period, zone) {
    const today = todayIn(zone);
    if (period === "today") return { start: today, end: today };
    if (period === "7d") return { start: addDays(today, -6), end: today };
    if (period === "30d") return { start: addDays(today, -29), end: today };
    if (period === "this_month") return { start: `${today.slice(0, 8)}01`, end: today };
    if (period === "last_month") {
      const firstThisMonth = `${today.slice(0, 8)}01`;
      const end = addDays(firstThisMonth, -1);
      return { start: `${end.slice(0, 8)}01`, end };
    }
    return { start: null, end: null }; // all time
  }

  // Hourly for a day or so, daily up to about a quarter, monthly beyond.
  function autoGranularity(period, start, end, zone) {
    if (period === "today") return "day";
    if (!start) return "year";
    const days = daysBetween(start, end || todayIn(zone)) + 1;
    if (days <= 3) return "day";
    if (days <= 93) return "month";
    return "year";
  }

  function dashboardState() {
    const params = currentParams({ tz: browserZone });
    let period = params.get("period");
    if (!PERIODS.includes(period)) {
      // An old bookmark (?start_date=...) is a custom period.
      period = params.has("start_date") || params.has("end_date") ? "custom" : DEFAULT_PERIOD;
    }
    const zone = params.get("tz");
    const range = period === "custom"
      ? { start: params.get("start_date"), end: params.get("end_date") }
      : presetRange(period, zone);
    const granularity = params.get("granularity") || "";
    const stack = STACKS.includes(params.get("stack")) ? params.get("stack") : "";
    const filters = {};
    for (const key of DRILL_KEYS) {
      if (params.get(key)) filters[key] = params.get(key);
    }
    return {
      params, period, zone, ...range, granularity, stack, filters,
      step: granularity || autoGranularity(period, range.start, range.end, zone),
    };
  }

  // The stats' query for the state: its range, zone and drill-down filters.
  function statsQuery(state, extra = {}) {
    const query = new URLSearchParams({ tz: state.zone });
    if (state.start) query.set("start_date", state.start);
    if (state.end) query.set("end_date", state.end);
    for (const [key, value] of Object.entries(state.filters)) query.set(key, value);
    for (const [key, value] of Object.entries(extra)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, value);
    }
    return query;
  }

  // The usage list of this period and these filters (plus extra), for "rows" links.
  function usageHref(state, extra) {
    const query = new URLSearchParams({ tz: state.zone });
    if (state.start) query.set("start_date", state.start);
    if (state.end) query.set("end_date", state.end);
    for (const [key, value] of Object.entries({ ...state.filters, ...extra })) {
      query.set(key, value);
    }
    return `${urls.usagePage}?${query}`;
  }

  // This dashboard drilled down to key=value, everything else kept.
  function drillHref(key, value) {
    const params = new URLSearchParams(location.search);
    params.set(key, value);
    return `${urls.dashboard}?${params}`;
  }

  function dashboardFormParams(form) {
    const params = formParams(form);
    // A preset is kept by name (a bookmark of "last 7 days" stays the last 7 days); its
    // dates are in the form only to be seen and edited.
    if (params.get("period") !== "custom") {
      params.delete("start_date");
      params.delete("end_date");
    }
    return params;
  }

  // --- dashboard: data ----------------------------------------------------------------

  function charted(series) {
    return (series || []).reduce((sum, b) => sum + b.total_calls, 0);
  }

  async function fetchDashboard(state) {
    const main = statsQuery(state, {
      granularity: state.step, group_by: "user", limit: LIMIT, series_by: state.stack,
    });
    const nodes = statsQuery(state, { group_by: "node", limit: LIMIT });
    const [stats, nodeStats] = await Promise.all([
      getJSON(`${urls.stats}?${main}`), getJSON(`${urls.stats}?${nodes}`)]);
    const result = {
      summary: stats.summary,
      byModel: stats.by_model,
      byUser: stats.breakdown,
      byNode: nodeStats.breakdown,
      series: stats.series,
      seriesBreakdown: stats.series_breakdown || null,
      anyCalls: stats.summary.total_calls > 0,
    };
    if (!state.start) await chartFromTheFirstCall(result, state, main);
    if (!result.anyCalls && (state.start || state.end || Object.keys(state.filters).length)) {
      // Nothing here: is there anything at all? (Says which empty message fits.)
      const everything = await getJSON(`${urls.stats}?${new URLSearchParams({
        tz: state.zone })}`);
      result.anyCalls = everything.summary.total_calls > 0;
    }
    result.outside = result.summary.total_calls - charted(result.series);
    return result;
  }

  // Without a start (all time, or a custom period with only an end) the API's series is its
  // default window (the last 24 hours, 31 days or 12 months). When calls are older, the
  // chart is asked again from 1970 by month to find the first month with calls, and (for
  // hourly or daily steps) once more from that month. Empty buckets before the first call
  // are dropped, so the chart covers exactly the calls the cards count.
  async function chartFromTheFirstCall(result, state, main) {
    if (charted(result.series) < result.summary.total_calls) {
      const monthly = new URLSearchParams(main);
      monthly.delete("group_by");
      monthly.delete("limit");
      monthly.set("start_date", EPOCH);
      monthly.set("granularity", "year");
      if (state.stack) monthly.set("limit", LIMIT);
      let wide = await getJSON(`${urls.stats}?${monthly}`);
      const first = wide.series.find((b) => b.total_calls > 0);
      if (first && state.step !== "year") {
        monthly.set("start_date", first.bucket.slice(0, 10));
        monthly.set("granularity", state.step);
        wide = await getJSON(`${urls.stats}?${monthly}`);
      }
      result.series = wide.series;
      result.seriesBreakdown = wide.series_breakdown || null;
    }
    const skip = result.series.findIndex((b) => b.total_calls > 0);
    if (skip > 0) {
      result.series = result.series.slice(skip);
      if (result.seriesBreakdown) {
        result.seriesBreakdown = {
          ...result.seriesBreakdown, series: result.seriesBreakdown.series.slice(skip) };
      }
    }
  }

  // --- dashboard: drawing -------------------------------------------------------------

  const MONEY_KEYS = new Set(["total_cost_usd", "cache_savings_usd"]);
  const LATENCY_KEYS = new Set(["latency_ms_p50", "latency_ms_p95"]);
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#17becf"];
  const OTHERS_COLOR = "#bab0ac";
  let chart = null;

  function userName(id) {
    const option = document.querySelector(
      `select[name=user_id] option[value="${CSS.escape(String(id))}"]`);
    return (option && option.dataset.username) || `#${id}`;
  }

  // What a group (or a stacked chart's key) is called on screen.
  function groupLabel(dimension, group) {
    if (group.others) return t("group.others", { n: fmtInt(group.group_count ?? 0) });
    if (group.key === null || group.key === undefined) {
      return t(dimension === "user" ? "group.no_user"
        : dimension === "node" ? "group.no_node" : "group.no_value");
    }
    // A user id no user has comes labelled with the id itself: shown as the list does.
    if (dimension === "user") {
      return group.label === null || group.label === group.key ? `#${group.key}` : group.label;
    }
    return group.label ?? group.key;
  }

  function rangeText(state) {
    if (state.start && state.end) return fmtDayRange(state.start, state.end);
    if (state.start) return t("range.since", { start: fmtDay(state.start) });
    if (state.end) return t("range.until", { end: fmtDay(state.end) });
    return t("range.all");
  }

  function renderCards(summary) {
    for (const card of document.querySelectorAll("#cards .card")) {
      const key = card.dataset.key;
      const value = summary[key] ?? null;
      const out = card.querySelector(".value");
      out.dataset.value = value === null ? "null" : String(value);
      if (MONEY_KEYS.has(key)) out.textContent = fmtUSD(value);
      else if (LATENCY_KEYS.has(key)) out.textContent = fmtMs(value);
      else out.textContent = fmtInt(value);
      card.classList.toggle("unpriced", MONEY_KEYS.has(key) && value === null);
      card.classList.toggle("warn", (key === "failed_calls" || key === "unpriced_calls")
        && value > 0);
      card.title = (MONEY_KEYS.has(key) && fmtExactUSD(value)) || "";
    }
    document.getElementById("cards").hidden = false;
  }

  function chartScales(stacked) {
    const money = { beginAtZero: true,
      title: { display: true, text: t("chart.axis_cost") },
      // Steps of at least $0.0001, so no two ticks print the same four decimals.
      ticks: { precision: MONEY_PLACES, callback: (v) => fmtUSDNumber(v) } };
    const x = { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 12 } };
    if (stacked) return { x, y1: { ...money, stacked: true, position: "left" } };
    return {
      x,
      y: { stacked: true, beginAtZero: true, title: { display: true,
        text: t("chart.axis_tokens") }, ticks: { callback: (v) => fmtInt(v) } },
      y1: { ...money, position: "right", grid: { drawOnChartArea: false } },
    };
  }

  function tokenChart(series, step) {
    const costs = series.map((b) => b.total_cost_usd);
    return {
      data: {
        labels: series.map((b) => fmtBucket(b.bucket, step)),
        datasets: [
          { type: "bar", label: t("chart.prompt"),
            data: series.map((b) => b.total_prompt_tokens),
            backgroundColor: "#4e79a7", stack: "tokens", yAxisID: "y", order: 2 },
          { type: "bar", label: t("chart.completion"),
            data: series.map((b) => b.total_completion_tokens),
            backgroundColor: "#a0cbe8", stack: "tokens", yAxisID: "y", order: 2 },
          { type: "line", label: t("chart.cost"),
            // Floats only for drawing; tooltips show the exact decimal string.
            data: costs.map(toFloat),
            borderColor: "#e15759", backgroundColor: "#e15759", yAxisID: "y1",
            pointRadius: series.length > 60 ? 0 : 2, tension: 0, order: 1, spanGaps: false },
        ],
      },
      scales: chartScales(false),
      tooltip: {
        label: (ctx) => (ctx.dataset.yAxisID === "y1"
          ? t("chart.tooltip_cost", { value: fmtUSD(costs[ctx.dataIndex]) })
          : `${ctx.dataset.label}: ${fmtInt(ctx.parsed.y)}`),
      },
    };
  }

  function stackedChart(series, breakdown, step) {
    const dimension = breakdown.dimension;
    const rows = breakdown.series;
    return {
      data: {
        labels: rows.map((b) => fmtBucket(b.bucket, step)),
        datasets: breakdown.keys.map((key, j) => ({
          type: "bar",
          label: groupLabel(dimension, key),
          data: rows.map((b) => toFloat(b.groups[j].total_cost_usd)),
          backgroundColor: key.others ? OTHERS_COLOR : PALETTE[j % PALETTE.length],
          stack: "cost",
          yAxisID: "y1",
        })),
      },
      scales: chartScales(true),
      tooltip: {
        // A key without calls in the bucket says nothing; the total closes the list.
        filter: (item) => rows[item.dataIndex].groups[item.datasetIndex].total_calls > 0,
        label: (ctx) => `${ctx.dataset.label}: ${
          fmtUSD(rows[ctx.dataIndex].groups[ctx.datasetIndex].total_cost_usd)}`,
        footer: (items) => (items.length ? t("chart.tooltip_total",
          { value: fmtUSD(series[items[0].dataIndex].total_cost_usd) }) : ""),
      },
    };
  }

  function renderChart(result, state) {
    const box = document.getElementById("chart-box");
    const empty = document.getElementById("chart-empty");
    const note = document.getElementById("chart-note");
    const step = t(`step.${state.step}`);
    const caption = t("chart.caption", { step, range: rangeText(state) });
    document.getElementById("chart-caption").textContent = step;
    const series = result.series || [];
    note.hidden = result.outside <= 0;
    note.textContent = result.outside > 0 ? t("range.outside", { n: fmtInt(result.outside) })
      : "";
    if (charted(series) === 0) {
      if (chart) chart.destroy();
      chart = null;
      box.hidden = true;
      empty.textContent = t("chart.empty", { caption });
      empty.hidden = false;
      return;
    }
    empty.hidden = true;
    box.hidden = false;
    const breakdown = state.stack && result.seriesBreakdown;
    const spec = breakdown ? stackedChart(series, breakdown, state.step)
      : tokenChart(series, state.step);
    const options = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: spec.scales,
      plugins: {
        legend: { labels: { boxWidth: 12 } },
        tooltip: { filter: spec.tooltip.filter, callbacks: {
          label: spec.tooltip.label, footer: spec.tooltip.footer } },
      },
    };
    body.dataset.chart = breakdown ? `cost-by-${breakdown.dimension}` : "tokens";
    if (chart) chart.destroy(); // a new set of axes: a new chart
    chart = new Chart(document.getElementById("chart"), { data: spec.data, options });
  }

  function rowsLink(state, extra, name) {
    return el("a", { class: "rows", href: usageHref(state, extra),
      title: t("rows.title", { name }) }, t("rows.link"));
  }

  function drillLink(key, value, name) {
    return el("a", { class: "drill-link", href: drillHref(key, value), title: t("drill.title",
      { name }), dataset: { inPage: "", drill: key } }, name);
  }

  const DIMENSION_FILTER = { user: "user_id", node: "node_name" };

  function renderBreakdown(dimension, breakdown, state) {
    const id = dimension === "user" ? "by-user" : "by-node";
    const table = document.getElementById(id);
    const empty = document.getElementById(`${id}-empty`);
    const panel = document.getElementById(`${id}-panel`);
    const filter = DIMENSION_FILTER[dimension];
    // Drilled down to one user (or feature), its own panel has nothing left to compare.
    panel.hidden = filter in state.filters;
    const groups = breakdown ? breakdown.groups : [];
    const name = (g) => groupLabel(dimension, g);
    const reachable = (g) => !g.others && g.key !== null && g.key !== undefined;
    renderTable(table, [
      { key: "label", label: `col.${dimension}`, kind: "text", value: name,
        cell: (g) => (reachable(g) ? drillLink(filter, g.key, name(g))
          : el("span", { class: "muted" }, name(g))) },
      { key: "total_cost_usd", label: "col.cost", kind: "money",
        value: (g) => toFloat(g.total_cost_usd), cell: (g) => moneyCell(g.total_cost_usd) },
      { key: "cost_share", label: "col.share", kind: "share",
        cell: (g) => {
          const fill = el("span", { class: "fill" });
          fill.style.width = `${Math.max(0, Math.min(1, g.cost_share || 0)) * 100}%`;
          return el("td", { class: "num share" }, el("span", { class: "bar" }, fill),
            fmtShare(g.cost_share));
        } },
      { key: "total_calls", label: "col.calls", kind: "int", cell: (g) => fmtInt(g.total_calls) },
      { key: "total_tokens", label: "col.tokens", kind: "int",
        cell: (g) => fmtInt(g.total_tokens) },
      { key: "rows", label: "col.rows", kind: "none",
        cell: (g) => (reachable(g) ? rowsLink(state, { [filter]: g.key }, name(g)) : "") },
    ], groups, (g) => ({
      dataset: g.others ? { others: "" } : { key: g.key === null ? "" : g.key },
      class: g.others ? "others" : null,
    }));
    table.hidden = groups.length === 0;
    empty.hidden = groups.length !== 0;
    empty.textContent = t(`${dimension === "user" ? "by_user" : "by_node"}.empty`);
  }

  function renderByModel(rows, state) {
    const table = document.getElementById("by-model");
    const empty = document.getElementById("by-model-empty");
    const int = (key, label) => ({ key, label, kind: "int", cell: (r) => fmtInt(r[key]) });
    const ms = (key, label) => ({ key, label, kind: "int", cell: (r) => fmtMs(r[key]) });
    renderTable(table, [
      { key: "model", label: "col.model", kind: "text",
        // Exactly this model: a substring would also count every longer name containing it.
        cell: (r) => drillLink("model_exact", r.model, r.model) },
      int("total_calls", "col.calls"),
      int("total_prompt_tokens", "col.prompt"),
      int("total_completion_tokens", "col.completion"),
      int("total_cached_tokens", "col.cached"),
      int("total_reasoning_tokens", "col.reasoning"),
      int("total_tokens", "col.total_tokens"),
      { key: "total_cost_usd", label: "col.cost", kind: "money",
        value: (r) => toFloat(r.total_cost_usd), cell: (r) => moneyCell(r.total_cost_usd) },
      int("unpriced_calls", "col.unpriced"),
      ms("latency_ms_p50", "col.p50"),
      ms("latency_ms_p95", "col.p95"),
      { key: "rows", label: "col.rows", kind: "none",
        cell: (r) => rowsLink(state, { model_exact: r.model }, r.model) },
    ], rows, (r) => ({ dataset: { model: r.model } }));
    table.hidden = rows.length === 0;
    empty.hidden = rows.length !== 0;
    empty.textContent = t("by_model.empty");
  }

  function drillValueText(key, value) {
    return key === "user_id" ? userName(value) : value;
  }

  function renderDrill(state) {
    const box = document.getElementById("drill");
    const chips = Object.entries(state.filters).map(([key, value]) => el("span",
      { class: "chip", dataset: { key } },
      el("span", { class: "chip-label" }, t(`drill.${key}`)), " ",
      el("strong", {}, drillValueText(key, value)),
      el("button", { type: "button", class: "secondary", dataset: { remove: key },
        "aria-label": t("drill.remove"), title: t("drill.remove") }, "×")));
    document.getElementById("drill-chips").replaceChildren(...chips);
    box.hidden = chips.length === 0;
    const heading = document.getElementById("heading");
    heading.textContent = state.filters.user_id
      ? t("dash.h1_user", { name: userName(state.filters.user_id) }) : t("dash.h1");
  }

  function renderDashboard(result, state) {
    renderDrill(state);
    renderCards(result.summary);
    const note = document.getElementById("range-note");
    note.textContent = `${rangeText(state)} · ${state.zone}`;
    Object.assign(note.dataset, { start: state.start || "", end: state.end || "",
      zone: state.zone, granularity: state.step });
    renderChart(result, state);
    renderBreakdown("user", result.byUser, state);
    renderBreakdown("node", result.byNode, state);
    renderByModel(result.byModel, state);
    const filtered = Object.keys(state.filters).length > 0;
    if (result.summary.total_calls === 0 && !result.anyCalls) {
      showStatus("empty", t("status.no_calls_yet"));
    } else if (result.summary.total_calls === 0) {
      showStatus("empty", t(filtered ? "status.no_match" : "status.no_calls_period"));
    }
  }

  function hideDashboard(state) {
    renderDrill(state);
    document.getElementById("cards").hidden = true;
    document.getElementById("chart-box").hidden = true;
    document.getElementById("chart-note").hidden = true;
    for (const id of ["by-model", "by-user", "by-node"]) {
      document.getElementById(id).hidden = true;
      const noTable = document.getElementById(`${id}-empty`);
      noTable.textContent = t("table.failed");
      noTable.hidden = false;
    }
    document.getElementById("range-note").textContent = "";
    const empty = document.getElementById("chart-empty");
    empty.textContent = t("chart.failed");
    empty.hidden = false;
  }

  function initDashboard() {
    const form = document.getElementById("filters");
    for (const option of form.elements.user_id.options) {
      if (option.value) option.dataset.username = option.textContent.replace(/ \(#\d+\)$/, "");
    }
    const load = () => {
      const state = dashboardState();
      const values = new URLSearchParams(state.params);
      values.set("period", state.period);
      values.set("start_date", state.start || "");
      values.set("end_date", state.end || "");
      fillForm(form, values);
      return loadPage(() => fetchDashboard(state), (data) => renderDashboard(data, state),
        () => hideDashboard(state));
    };
    // Editing a date makes the period a custom one (from the preset's dates shown).
    for (const name of ["start_date", "end_date"]) {
      form.elements[name].addEventListener("change", () => {
        form.elements.period.value = "custom";
      });
    }
    document.addEventListener("click", (event) => followInPage(event, load));
    const removeFilters = (keys) => {
      const params = currentParams({});
      for (const key of keys) params.delete(key);
      pushParams(params);
      load();
    };
    document.getElementById("drill").addEventListener("click", (event) => {
      const remove = event.target.closest("[data-remove]");
      if (remove) removeFilters([remove.dataset.remove]);
      if (event.target.closest("[data-action=clear-drill]")) removeFilters(DRILL_KEYS);
    });
    setupFilters(form, load, dashboardFormParams);
  }

  // --- usage list ---------------------------------------------------------------------

  const FILTER_KEYS = ["user_id", "model", "model_exact", "node_name", "provider",
    "source_type", "success", "priced", "start_date", "end_date"];

  function renderUsage(data, params) {
    const table = document.getElementById("usage");
    const empty = document.getElementById("usage-empty");
    const zone = params.get("tz");
    table.querySelector("tbody").replaceChildren(...data.results.map((r) => el("tr",
      { dataset: { id: r.id }, class: r.success ? null : "failed" },
      el("td", {}, el("a", { href: `${urls.usagePage}/${encodeURIComponent(r.id)}?${
        new URLSearchParams({ tz: zone })}` }, fmtTime(r.created_at, zone))),
      el("td", {}, r.username ?? (r.user_id === null ? "—" : `#${r.user_id}`)),
      el("td", {}, r.model),
      el("td", {}, r.node_name ?? "—"),
      el("td", { class: "num" }, fmtInt(r.prompt_tokens)),
      el("td", { class: "num" }, fmtInt(r.completion_tokens)),
      el("td", { class: "num" }, fmtInt(r.total_tokens)),
      moneyCell(r.cost_usd),
      el("td", { class: "num" }, fmtMs(r.latency_ms ?? null)),
      el("td", { title: r.error }, r.success ? t("usage.ok") : t("usage.row_failed")))));

    const pages = Math.max(1, Math.ceil(data.total / data.page_size));
    const filtered = FILTER_KEYS.some((k) => params.get(k));
    table.hidden = data.results.length === 0;
    empty.hidden = data.results.length !== 0;
    if (data.total === 0) {
      empty.textContent = filtered ? t("usage.no_rows_match") : t("usage.no_rows_yet");
    } else if (data.results.length === 0) {
      empty.textContent = t("usage.past_end", { page: fmtInt(data.page), pages: fmtInt(pages) });
    }
    document.getElementById("pager").hidden = data.total === 0;
    document.getElementById("page-info").textContent = t("usage.page_info",
      { page: fmtInt(data.page), pages: fmtInt(pages), total: fmtInt(data.total) });
    const pageLink = (link, target, enabled) => {
      const query = new URLSearchParams(params);
      query.set("page", String(target));
      link.href = `?${query}`;
      link.classList.toggle("disabled", !enabled);
      if (enabled) link.removeAttribute("aria-disabled");
      else link.setAttribute("aria-disabled", "true");
    };
    pageLink(document.getElementById("prev"), data.page - 1, data.page > 1);
    pageLink(document.getElementById("next"), data.page + 1, data.page < pages);
  }

  function hideUsage() {
    document.getElementById("usage").hidden = true;
    document.getElementById("pager").hidden = true;
    const empty = document.getElementById("usage-empty");
    empty.textContent = t("usage.failed_load");
    empty.hidden = false;
  }

  function initUsage() {
    const form = document.getElementById("filters");
    const pager = document.getElementById("pager");
    const exportLink = document.getElementById("export");
    const chips = [...form.querySelectorAll("[data-chip-for]")];

    const load = () => {
      const params = currentParams({ tz: browserZone });
      fillForm(form, params);
      // Exact filters from the dashboard's links (one model, one feature...): shown, and
      // removable.
      for (const chip of chips) {
        const value = params.get(chip.dataset.chipFor);
        chip.querySelector("code").textContent = value || "";
        chip.hidden = !value;
      }
      const exportParams = new URLSearchParams(params);
      exportParams.delete("page");
      exportParams.delete("page_size");
      exportLink.href = `${urls.export}${exportParams.size ? `?${exportParams}` : ""}`;
      return loadPage(() => getJSON(`${urls.usage}?${params}`),
        (data) => renderUsage(data, params), hideUsage);
    };

    for (const chip of chips) {
      chip.querySelector("[data-action=clear-chip]").addEventListener("click", () => {
        form.elements[chip.dataset.chipFor].value = "";
        form.requestSubmit();
      });
    }
    for (const link of pager.querySelectorAll("a")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        if (link.classList.contains("disabled")) return;
        pushParams(new URLSearchParams(link.getAttribute("href").slice(1)));
        load();
      });
    }
    setupFilters(form, load);
  }

  // --- one row ------------------------------------------------------------------------

  const DETAIL_FIELDS = ["id", "created_at", "username", "model", "requested_model",
    "deployment", "provider", "node_name", "source_type", "success", "error",
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "input_cost_usd",
    "output_cost_usd", "cache_savings_usd", "price_source", "latency_ms", "ttft_ms"];

  function detailValue(key, row, zone) {
    const value = row[key];
    if (key === "created_at") return `${fmtTime(value, zone)} ${zone} (${value})`;
    if (key === "username") {
      if (row.user_id === null) return "—";
      return value === null ? t("detail.not_in_table", { id: row.user_id })
        : `${value} (#${row.user_id})`;
    }
    if (key === "success") return value ? t("detail.succeeded") : t("detail.failed");
    if (key === "latency_ms" || key === "ttft_ms") return fmtMs(value);
    if (key === "cost_usd" && value === null) return t("unpriced");
    if (key.endsWith("_usd")) return value === null ? "—" : fmtUSD(value);
    if (key.endsWith("_tokens")) return fmtInt(value);
    return value === null || value === "" ? "—" : String(value);
  }

  function renderDetail(row) {
    const known = new Set(DETAIL_FIELDS.concat(["user_id", "metadata"]));
    const extra = Object.keys(row).filter((key) => !known.has(key)).sort();
    // The zone the list showed (carried in the row's link), else the browser's.
    const zone = new URLSearchParams(location.search).get("tz") || browserZone;
    document.getElementById("fields").replaceChildren(
      ...DETAIL_FIELDS.concat(extra).filter((key) => key in row).map((key) =>
        el("div", { dataset: { key } },
          el("dt", {}, DETAIL_FIELDS.includes(key) ? t(`field.${key}`) : key),
          el("dd", { title: key.endsWith("_usd") ? fmtExactUSD(row[key]) : null },
            detailValue(key, row, zone)))));
    document.getElementById("metadata").textContent = JSON.stringify(row.metadata, null, 2);
    const back = document.getElementById("back");
    if (document.referrer.startsWith(`${location.origin}${urls.usagePage}?`)) {
      back.href = document.referrer; // back to the filtered list the row was opened from
    }
    document.getElementById("detail").hidden = false;
  }

  function initDetail() {
    const load = () => loadPage(() => getJSON(document.getElementById("detail").dataset.api),
      renderDetail);
    I18N.onChange(load);
    load();
  }

  // --- the budget-alert banner, on every page -----------------------------------------

  // The alerts of the budgets' current periods (GET budget-alerts/?current=true), one line
  // per budget and scope key (its most serious alert: blocked, else the highest threshold
  // crossed), each a link to the budgets page. No alerts, or an answer that is not a list
  // of alerts (a session ended, an older server): no banner, and nothing else changes.
  const banner = document.getElementById("budget-banner");
  let bannerAlerts = [];
  const userLabels = new Map(); // user id -> username, from the budgets' status

  function fmtPercent(x) {
    return formatter("percent", (l) => new Intl.NumberFormat(l, {
      style: "percent", maximumFractionDigits: 1,
    })).format(x);
  }

  function alertScope(alert) {
    if (alert.scope === "global" || alert.scope_key === null || alert.scope_key === undefined) {
      return "";
    }
    const value = alert.scope === "user"
      ? alert.label || userLabels.get(String(alert.scope_key)) || `#${alert.scope_key}`
      : alert.scope_key;
    return t("banner.scope", { what: t(`banner.scope_${alert.scope}`), value });
  }

  // A block budget used up (a call refused, or its 100 % crossed) refuses calls until it
  // resets; any other alert is a threshold reached.
  function blocks(alert) {
    return alert.reason === "blocked"
      || (alert.action === "block" && Number(alert.threshold) >= 1);
  }

  function severity(alert) {
    return blocks(alert) ? Infinity : Number(alert.threshold);
  }

  function bannerLines(alerts) {
    const worst = new Map();
    for (const alert of alerts) {
      const key = `${alert.budget_id}\u0000${alert.scope_key ?? ""}`;
      if (!worst.has(key) || severity(alert) > severity(worst.get(key))) worst.set(key, alert);
    }
    return [...worst.values()];
  }

  function bannerText(alert) {
    const vars = { name: alert.budget, scope: alertScope(alert),
      period: t(`banner.period_${alert.period}`), pct: fmtPercent(Number(alert.threshold)) };
    return t(blocks(alert) ? "banner.blocked" : "banner.threshold", vars);
  }

  const BANNER_MAX = 5;

  function renderBanner() {
    if (!banner) return;
    const lines = bannerLines(bannerAlerts);
    const shown = lines.slice(0, BANNER_MAX);
    const items = shown.map((a) => el("li", { dataset: { budgetId: a.budget_id,
      scopeKey: a.scope_key ?? "", kind: blocks(a) ? "blocked" : "threshold" },
    class: blocks(a) ? "blocked" : null },
    el("a", { href: banner.dataset.budgetsUrl }, bannerText(a))));
    if (lines.length > shown.length) {
      items.push(el("li", { class: "more" }, el("a", { href: banner.dataset.budgetsUrl },
        t("banner.more", { n: fmtInt(lines.length - shown.length) }))));
    }
    banner.replaceChildren(el("span", { class: "banner-label" }, t("banner.label")),
      el("ul", {}, ...items));
    banner.classList.toggle("blocked", shown.some(blocks));
    banner.hidden = lines.length === 0;
  }

  async function fetchBanner() {
    const answer = await getJSON(banner.dataset.api);
    const alerts = answer && Array.isArray(answer.alerts) ? answer.alerts : [];
    const unnamed = alerts.some((a) => a.scope === "user" && a.scope_key !== null
      && !a.label && !userLabels.has(String(a.scope_key)));
    if (unnamed && banner.dataset.apiBudgets) {
      // Alerts name a user by id; the budgets' status carries the username (without it,
      // the line names the id).
      const list = await getJSON(banner.dataset.apiBudgets).catch((err) => {
        if (err instanceof ApiError) return null;
        throw err;
      });
      for (const budget of (list && list.budgets) || []) {
        for (const s of budget.status || []) {
          if (s.label && s.scope_key !== null) userLabels.set(String(s.scope_key), s.label);
        }
      }
    }
    return alerts;
  }

  async function refreshBanner() {
    if (!banner) return;
    let alerts = [];
    try {
      alerts = await fetchBanner();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
    }
    bannerAlerts = alerts;
    renderBanner();
    banner.dataset.loads = String(Number(banner.dataset.loads || 0) + 1);
  }

  if (banner) {
    I18N.onChange(renderBanner);
    refreshBanner();
  }

  const init = {
    dashboard: initDashboard,
    usage: initUsage,
    detail: initDetail,
  }[body.dataset.page];
  if (init) init();

  // For tests and the console: the same formatting the pages use; and for the budgets
  // page's script (budgets.js), the same API calls, status line and loads.
  window.llmTracker = {
    fmtUSD, fmtInt, fmtTime, fmtBucket, fmtShare, fmtMs, fmtPercent, fmtExactUSD,
    ApiError, requestJSON, getJSON, el, showStatus, showError, clearStatus, loadPage,
    browserZone, refreshBanner,
  };
})();
