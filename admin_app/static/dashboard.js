// The dashboard pages' script: every number on screen comes from the admin JSON API.
// Plain ES2020, no build step; Chart.js (vendor/chart.umd.min.js) draws the time series.
(() => {
  "use strict";

  const body = document.body;
  const urls = {
    stats: body.dataset.apiStats,
    usage: body.dataset.apiUsage,
    export: body.dataset.apiExport,
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

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
    } catch (err) {
      throw new ApiError("network", `could not reach the server (${err.message})`, 0);
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

  // --- formatting ---------------------------------------------------------------------

  const intFormat = new Intl.NumberFormat("en-US");

  function fmtInt(n) {
    return n === null || n === undefined ? "—" : intFormat.format(n);
  }

  function groupThousands(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // The one money rule, for every figure on every page (cards, tables, chart axis and
  // tooltips, row detail): dollars with exactly four decimals, thousands grouped, rounded
  // half up ($1.3100, $0.6915, $1,234.5650). LLM calls cost fractions of a cent, so four
  // places are the fewest that show one call; the same number of places everywhere keeps a
  // column comparable at a glance. A non-zero amount that rounds to nothing reads <$0.0001
  // (never $0.0000, which means free), no cost at all reads "unpriced".
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

  function fmtUSD(text) {
    if (text === null || text === undefined) return "unpriced";
    const r = roundDecimal(text, MONEY_PLACES);
    if (r === null) return String(text);
    if (r.isZero && !r.exactZero) return `<$0.${"0".repeat(MONEY_PLACES - 1)}1`;
    return `${r.negative ? "-" : ""}$${groupThousands(r.intPart)}.${r.fracPart}`;
  }

  // A chart tick is a float: its decimal text (never exponent notation) gets the same rule.
  function fmtUSDNumber(value) {
    return fmtUSD(Number(value).toFixed(MONEY_PLACES + 2));
  }

  // Hover text: the API's exact value, for anyone who needs more than four places.
  function fmtExactUSD(text) {
    return text === null || text === undefined ? null : `$${text} exactly`;
  }

  function fmtTime(iso, zone) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    let parts;
    try {
      parts = new Intl.DateTimeFormat("en-CA", {
        timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      }).formatToParts(date);
    } catch (err) {
      return iso; // an unknown zone: the API reports it; show the UTC value meanwhile
    }
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
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
      showStatus("error expired", "Your session has expired. ",
        el("a", { href: login }, "Log in again"), " to see this page.");
      // The top bar was rendered while the session lived: it must not claim it still does.
      const who = document.querySelector(".topbar .who");
      if (who) who.replaceChildren("Not logged in · ", el("a", { href: login }, "Log in"));
      return;
    }
    const prefix = err.kind === "network" ? "Network error: " : "Error from the API: ";
    showStatus("error", prefix, el("span", { class: "message" }, err.message));
  }

  // --- one load, the same on every page -----------------------------------------------

  // Responses can arrive out of order when filters change quickly; only the latest counts.
  let requestSeq = 0;

  // Fetch url and draw the answer with render(data), after clearing the status line (render
  // sets it again to say a result is empty). An error goes to the status line (an expired
  // session with its login link) and failed() hides what the page can no longer show.
  // data-state and data-loads tell tests (and anyone curious) that a load has finished.
  async function loadPage(url, render, failed = () => {}) {
    const seq = ++requestSeq;
    body.dataset.state = "loading";
    const { data, error } = await getJSON(url).then(
      (answer) => ({ data: answer }), (err) => ({ error: err }));
    if (seq !== requestSeq) return;
    if (error) {
      showError(error);
      failed();
    } else {
      clearStatus();
      render(data);
    }
    body.dataset.state = error ? "error" : "ready";
    body.dataset.loads = String(Number(body.dataset.loads || 0) + 1);
  }

  // --- filter forms kept in the URL ---------------------------------------------------

  // The URL is the state: forms write it, loads read it, so any view can be bookmarked.
  function currentParams(defaults) {
    const params = new URLSearchParams(location.search);
    for (const [key, value] of [...params]) {
      if (value.trim() === "") params.delete(key);
    }
    for (const [key, value] of Object.entries(defaults)) {
      if (!params.has(key)) params.set(key, value);
    }
    return params;
  }

  function fillForm(form, params) {
    for (const field of form.elements) {
      if (!field.name) continue;
      const value = params.get(field.name);
      if (field.tagName === "SELECT") {
        if (value !== null && ![...field.options].some((o) => o.value === value)) {
          // A user id the user table does not know (rows may carry any id) stays selectable.
          field.append(el("option", { value }, `user #${value}`));
        }
        field.value = value !== null ? value : field.dataset.default;
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

  function setupFilters(form, load) {
    for (const field of form.elements) {
      if (field.tagName === "SELECT") field.dataset.default = field.value;
    }
    const zones = typeof Intl.supportedValuesOf === "function"
      ? Intl.supportedValuesOf("timeZone") : [];
    const list = document.getElementById("tz-list");
    if (list) list.replaceChildren(...zones.map((z) => el("option", { value: z })));

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = formParams(form).toString();
      history.pushState(null, "", query ? `?${query}` : location.pathname);
      load();
    });
    for (const field of form.querySelectorAll("select, input[type=date]")) {
      field.addEventListener("change", () => form.requestSubmit());
    }
    form.querySelector("[data-action=reset]").addEventListener("click", () => {
      history.pushState(null, "", location.pathname);
      load();
    });
    window.addEventListener("popstate", load);
    load();
  }

  // --- dashboard ----------------------------------------------------------------------

  const MONEY_KEYS = new Set(["total_cost_usd", "cache_savings_usd"]);
  const GRANULARITY_TEXT = {
    day: ["hourly", "the last 24 hours"],
    month: ["daily", "the last 31 days"],
    year: ["monthly", "the last 12 months"],
  };
  let chart = null;

  function bucketLabel(bucket, granularity) {
    // The bucket is the API's local start with its offset: slicing keeps it in that zone.
    if (granularity === "day") return `${bucket.slice(5, 10)} ${bucket.slice(11, 16)}`;
    if (granularity === "month") return bucket.slice(0, 10);
    return bucket.slice(0, 7);
  }

  function renderCards(summary) {
    for (const card of document.querySelectorAll("#cards .card")) {
      const key = card.dataset.key;
      const value = summary[key];
      const out = card.querySelector(".value");
      out.dataset.value = value === null ? "null" : String(value);
      out.textContent = MONEY_KEYS.has(key) ? fmtUSD(value) : fmtInt(value);
      card.classList.toggle("unpriced", MONEY_KEYS.has(key) && value === null);
      card.classList.toggle("warn", (key === "failed_calls" || key === "unpriced_calls")
        && value > 0);
      card.title = (MONEY_KEYS.has(key) && fmtExactUSD(value)) || "";
    }
    document.getElementById("cards").hidden = false;
  }

  function renderChart(series, granularity, caption) {
    const box = document.getElementById("chart-box");
    const empty = document.getElementById("chart-empty");
    document.getElementById("chart-caption").textContent = caption;
    const calls = series.reduce((sum, b) => sum + b.total_calls, 0);
    if (calls === 0) {
      if (chart) chart.destroy();
      chart = null;
      box.hidden = true;
      empty.textContent = `No calls in this period (${caption}).`;
      empty.hidden = false;
      return;
    }
    empty.hidden = true;
    box.hidden = false;
    const data = {
      labels: series.map((b) => bucketLabel(b.bucket, granularity)),
      datasets: [
        { type: "bar", label: "Prompt tokens", data: series.map((b) => b.total_prompt_tokens),
          backgroundColor: "#4e79a7", stack: "tokens", yAxisID: "y", order: 2 },
        { type: "bar", label: "Completion tokens",
          data: series.map((b) => b.total_completion_tokens),
          backgroundColor: "#a0cbe8", stack: "tokens", yAxisID: "y", order: 2 },
        { type: "line", label: "Cost (USD)",
          // Floats only for drawing; tooltips show the exact decimal string.
          data: series.map((b) => (b.total_cost_usd === null ? null
            : Number.parseFloat(b.total_cost_usd))),
          borderColor: "#e15759", backgroundColor: "#e15759", yAxisID: "y1",
          pointRadius: series.length > 60 ? 0 : 2, tension: 0, order: 1, spanGaps: false },
      ],
    };
    const costs = series.map((b) => b.total_cost_usd);
    const options = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "tokens" },
          ticks: { callback: (v) => fmtInt(v) } },
        y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
          title: { display: true, text: "cost (USD)" },
          // Steps of at least $0.0001, so no two ticks print the same four decimals.
          ticks: { precision: MONEY_PLACES, callback: (v) => fmtUSDNumber(v) } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (ctx) => (ctx.dataset.yAxisID === "y1"
              ? `Cost: ${fmtUSD(costs[ctx.dataIndex])}`
              : `${ctx.dataset.label}: ${fmtInt(ctx.parsed.y)}`),
          },
        },
      },
    };
    if (chart) {
      chart.data = data;
      chart.options = options;
      chart.update();
    } else {
      chart = new Chart(document.getElementById("chart"), { data, options });
    }
  }

  function renderByModel(rows, params) {
    const table = document.getElementById("by-model");
    const empty = document.getElementById("by-model-empty");
    const tbody = table.querySelector("tbody");
    tbody.replaceChildren(...rows.map((r) => {
      const query = new URLSearchParams(params);
      query.delete("granularity");
      // Exactly this model: a substring would also list every longer name containing it.
      query.set("model_exact", r.model);
      return el("tr", { dataset: { model: r.model } },
        el("td", {}, el("a", { href: `${urls.usagePage}?${query}` }, r.model)),
        el("td", { class: "num" }, fmtInt(r.total_calls)),
        el("td", { class: "num" }, fmtInt(r.total_prompt_tokens)),
        el("td", { class: "num" }, fmtInt(r.total_completion_tokens)),
        el("td", { class: "num" }, fmtInt(r.total_cached_tokens)),
        el("td", { class: "num" }, fmtInt(r.total_reasoning_tokens)),
        el("td", { class: "num" }, fmtInt(r.total_tokens)),
        el("td", { class: `num${r.total_cost_usd === null ? " unpriced" : ""}`,
          title: fmtExactUSD(r.total_cost_usd) }, fmtUSD(r.total_cost_usd)),
        el("td", { class: "num" }, fmtInt(r.unpriced_calls)));
    }));
    table.hidden = rows.length === 0;
    empty.hidden = rows.length !== 0;
    empty.textContent = "No calls, so no models.";
  }

  function hideDashboard() {
    document.getElementById("cards").hidden = true;
    document.getElementById("chart-box").hidden = true;
    document.getElementById("by-model").hidden = true;
    const noTable = document.getElementById("by-model-empty");
    noTable.textContent = "No table: the data could not be loaded.";
    noTable.hidden = false;
    document.getElementById("range-note").textContent = "";
    const empty = document.getElementById("chart-empty");
    empty.textContent = "No chart: the data could not be loaded (see the message above).";
    empty.hidden = false;
  }

  function renderDashboard(data, params) {
    const granularity = params.get("granularity");
    const start = params.get("start_date");
    const end = params.get("end_date");
    const zone = params.get("tz");
    const filtered = start || end || params.get("user_id");
    const [step, window] = GRANULARITY_TEXT[granularity] || [granularity, ""];
    let span = window;
    if (start && end) span = `${start} to ${end}`;
    else if (start) span = `since ${start}`;
    else if (end) span = `${window.replace("the last", "the")} up to ${end}`;
    renderCards(data.summary);
    document.getElementById("range-note").textContent = start || end
      ? `Totals for ${start || "the beginning"} to ${end || "now"}, ${zone}.`
      : `Totals for all recorded calls; dates in ${zone}.`;
    renderChart(data.series || [], granularity, `${step}, ${span}, ${zone}`);
    renderByModel(data.by_model, params);
    if (data.summary.total_calls === 0 && !filtered) {
      showStatus("empty", "No LLM calls recorded yet. Rows appear here as soon as your "
        + "application records calls (UsageHandler, call_and_track or record_usage).");
    } else if (data.summary.total_calls === 0) {
      showStatus("empty", "No calls match these filters.");
    }
  }

  function initDashboard() {
    const form = document.getElementById("filters");
    setupFilters(form, () => {
      const params = currentParams({ granularity: "month", tz: browserZone });
      fillForm(form, params);
      return loadPage(`${urls.stats}?${params}`, (data) => renderDashboard(data, params),
        hideDashboard);
    });
  }

  // --- usage list ---------------------------------------------------------------------

  const FILTER_KEYS = ["user_id", "model", "model_exact", "success", "priced", "start_date",
    "end_date"];

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
      el("td", { class: `num${r.cost_usd === null ? " unpriced" : ""}`,
        title: fmtExactUSD(r.cost_usd) }, fmtUSD(r.cost_usd)),
      el("td", { class: "num" }, r.latency_ms === null ? "—" : `${fmtInt(r.latency_ms)} ms`),
      el("td", { title: r.error }, r.success ? "ok" : "failed"))));

    const pages = Math.max(1, Math.ceil(data.total / data.page_size));
    const filtered = FILTER_KEYS.some((k) => params.get(k));
    table.hidden = data.results.length === 0;
    empty.hidden = data.results.length !== 0;
    if (data.total === 0) {
      empty.textContent = filtered ? "No rows match these filters."
        : "No LLM calls recorded yet.";
    } else if (data.results.length === 0) {
      empty.textContent = `Page ${data.page} is past the end (${pages} pages).`;
    }
    document.getElementById("pager").hidden = data.total === 0;
    document.getElementById("page-info").textContent =
      `Page ${fmtInt(data.page)} of ${fmtInt(pages)} · ${fmtInt(data.total)} rows`;
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
    empty.textContent = "No rows: the list could not be loaded (see the message above).";
    empty.hidden = false;
  }

  function initUsage() {
    const form = document.getElementById("filters");
    const pager = document.getElementById("pager");
    const exportLink = document.getElementById("export");
    const exactChip = document.getElementById("model-exact");

    const load = () => {
      const params = currentParams({ tz: browserZone });
      fillForm(form, params);
      // The dashboard's model links filter on one exact name: shown, and removable.
      const exact = params.get("model_exact");
      exactChip.querySelector("code").textContent = exact || "";
      exactChip.hidden = !exact;
      const exportParams = new URLSearchParams(params);
      exportParams.delete("page");
      exportParams.delete("page_size");
      exportLink.href = `${urls.export}${exportParams.size ? `?${exportParams}` : ""}`;
      return loadPage(`${urls.usage}?${params}`, (data) => renderUsage(data, params), hideUsage);
    };

    exactChip.querySelector("[data-action=clear-model-exact]").addEventListener("click", () => {
      form.elements.model_exact.value = "";
      form.requestSubmit();
    });
    for (const link of pager.querySelectorAll("a")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        if (link.classList.contains("disabled")) return;
        history.pushState(null, "", link.getAttribute("href"));
        load();
      });
    }
    setupFilters(form, load);
  }

  // --- one row ------------------------------------------------------------------------

  const DETAIL_FIELDS = [
    ["id", "Id"], ["created_at", "Time"], ["username", "User"], ["model", "Model"],
    ["requested_model", "Requested model"], ["deployment", "Deployment"],
    ["provider", "Provider"], ["node_name", "Node"], ["success", "Status"],
    ["error", "Error"], ["prompt_tokens", "Prompt tokens"],
    ["completion_tokens", "Completion tokens"], ["total_tokens", "Total tokens"],
    ["cached_tokens", "Cached tokens"], ["cache_write_tokens", "Cache write tokens"],
    ["reasoning_tokens", "Reasoning tokens"], ["cost_usd", "Cost"],
    ["input_cost_usd", "Input cost"], ["output_cost_usd", "Output cost"],
    ["cache_savings_usd", "Cache savings"], ["price_source", "Price source"],
    ["latency_ms", "Latency"],
  ];

  function detailValue(key, row, zone) {
    const value = row[key];
    if (key === "created_at") return `${fmtTime(value, zone)} ${zone} (${value})`;
    if (key === "username") {
      if (row.user_id === null) return "—";
      return value === null ? `#${row.user_id} (not in the user table)` : `${value} (#${row.user_id})`;
    }
    if (key === "success") return value ? "succeeded" : "failed";
    if (key === "latency_ms") return value === null ? "—" : `${fmtInt(value)} ms`;
    if (key === "cost_usd" && value === null) return "unpriced";
    if (key.endsWith("_usd")) return value === null ? "—" : fmtUSD(value);
    if (key.endsWith("_tokens")) return fmtInt(value);
    return value === null || value === "" ? "—" : String(value);
  }

  function renderDetail(row) {
    const known = new Set(DETAIL_FIELDS.map(([key]) => key).concat(["user_id", "metadata"]));
    const extra = Object.keys(row).filter((key) => !known.has(key)).sort()
      .map((key) => [key, key]);
    // The zone the list showed (carried in the row's link), else the browser's.
    const zone = new URLSearchParams(location.search).get("tz") || browserZone;
    document.getElementById("fields").replaceChildren(
      ...DETAIL_FIELDS.concat(extra).filter(([key]) => key in row).map(([key, label]) =>
        el("div", { dataset: { key } }, el("dt", {}, label),
          el("dd", { title: key.endsWith("_usd") ? fmtExactUSD(row[key]) : null },
            detailValue(key, row, zone)))));
    document.getElementById("metadata").textContent = JSON.stringify(row.metadata, null, 2);
    const back = document.getElementById("back");
    if (document.referrer.startsWith(`${location.origin}${urls.usagePage}?`)) {
      back.href = document.referrer; // back to the filtered list the row was opened from
    }
    document.getElementById("detail").hidden = false;
  }

  const init = {
    dashboard: initDashboard,
    usage: initUsage,
    detail: () => loadPage(document.getElementById("detail").dataset.api, renderDetail),
  }[body.dataset.page];
  if (init) init();

  // For tests and the console: the same formatting the pages use.
  window.llmTracker = { fmtUSD, fmtInt, fmtTime };
})();
