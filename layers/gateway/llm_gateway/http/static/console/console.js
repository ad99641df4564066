// llm-gateway console (API.md section 8): plain JavaScript, no framework, no build step.
// Everything goes through the gateway's public platform routes with the key the user signed in
// with; the key lives in this tab's sessionStorage and travels only as `Authorization: Bearer`.
// Text from the gateway is always set with textContent, never parsed as HTML.
"use strict";

(() => {
  const KEY_SLOT = "llm-gateway.console.key";
  const VIEWS = ["overview", "usage", "rates", "keys"];
  const DAY_MS = 86400000;
  const MAX_CHART_DAYS = 400;

  // The API sits where the console does: /console -> /, /prod/console -> /prod/ (an API Gateway stage).
  const API_ROOT = location.pathname.replace(/\/console\/?$/, "/").replace(/\/?$/, "/");

  const state = {
    key: null,
    admin: null, // true / false once known
    keys: [], // the admin's keys as listed (masked)
    rates: null,
    usage: { filters: null, cursors: [null], page: 0, next: null },
  };

  // --- small helpers -------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function mask(key) {
    return key.length > 12 ? `${key.slice(0, 8)}...${key.slice(-4)}` : key;
  }

  // "2026-12-01T10:20:30.123456Z" -> "2026-12-01 10:20:30 UTC"
  function when(iso) {
    if (!iso) return "—";
    return iso.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") + " UTC";
  }

  function dayOf(date) {
    return date.toISOString().slice(0, 10);
  }

  function addDays(day, n) {
    return dayOf(new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS));
  }

  const integer = new Intl.NumberFormat("en-US");

  function money(amount, currency) {
    return amount === null || amount === undefined ? "—" : `${amount}${currency ? ` ${currency}` : ""}`;
  }

  function plural(n, word) {
    return `${integer.format(n)} ${word}${n === 1 ? "" : "s"}`;
  }

  // --- messages ------------------------------------------------------------------------------

  function say(text, kind) {
    $("message-text").textContent = text;
    $("message").className = `message ${kind}`;
    show($("message"), true);
  }

  function sayError(error) {
    say(describe(error), "error");
  }

  function clearMessage() {
    show($("message"), false);
  }

  // A mistake in what the user entered, said as it is.
  class Problem extends Error {}

  function describe(error) {
    if (error instanceof Problem) return error.message;
    if (error instanceof ApiError) {
      const lead = {
        401: "The gateway refused this key",
        403: "This key may not do that",
        404: "Not found",
        429: "Too many requests",
      }[error.status] || (error.status ? `The gateway answered ${error.status}` : "");
      const wait = error.status === 429 && error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      return `${lead ? `${lead}: ` : ""}${error.message}${wait}`;
    }
    return `Something went wrong in the console: ${error && error.message ? error.message : error}`;
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, type, retryAfter) {
      super(message);
      this.status = status;
      this.type = type || null;
      this.retryAfter = retryAfter || 0;
    }
  }

  async function api(method, path, { query, body, key } = {}) {
    const url = new URL(API_ROOT + path, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Authorization: `Bearer ${key || state.key}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
      });
    } catch (_) {
      throw new ApiError(0, "Could not reach the gateway. Check the connection and try again.");
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      const message = (payload && (payload.message || (payload.error && payload.error.message)))
        || `${response.status} ${response.statusText || "error"} from the gateway.`;
      const retry = Number.parseInt(response.headers.get("retry-after") || "0", 10) || 0;
      throw new ApiError(response.status, message, payload && payload.errorType, retry);
    }
    if (!payload || typeof payload !== "object" || !("data" in payload)) {
      throw new ApiError(response.status, "The gateway sent an answer the console cannot read.");
    }
    return payload.data;
  }

  // A refusal of the key itself (disabled, deleted, expired) ends the session.
  function handle(error) {
    if (error instanceof ApiError && error.status === 401 && state.key) {
      signOut();
      say(`${describe(error)} Sign in with a key that works.`, "error");
      return;
    }
    sayError(error);
  }

  // --- signing in and out --------------------------------------------------------------------

  async function signIn(key, quiet) {
    // Any key may read its usage: one record is the cheapest proof that the key works.
    await api("GET", "api/v1/user/usage", { query: { pageSize: 1 }, key });
    state.key = key;
    try {
      sessionStorage.setItem(KEY_SLOT, key);
    } catch (_) {
      // storage refused (private mode): the session lasts until a reload
    }
    state.admin = null;
    state.rates = null;
    state.keys = [];
    $("who").textContent = mask(key);
    show($("who"), true);
    show($("sign-out"), true);
    show($("nav"), true);
    show($("view-sign-in"), false);
    if (!quiet) clearMessage();
    await learnRole();
    route();
  }

  async function learnRole() {
    try {
      state.balance = await api("POST", "api/v1/user/admin/balance", { body: {} });
      state.admin = true;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 403) throw error;
      state.admin = false;
    }
    show(document.querySelector('#nav a[data-view="keys"]'), state.admin);
  }

  function signOut() {
    state.key = null;
    state.admin = null;
    try {
      sessionStorage.removeItem(KEY_SLOT);
    } catch (_) {
      // nothing kept
    }
    for (const name of VIEWS) show($(`view-${name}`), false);
    show($("nav"), false);
    show($("who"), false);
    show($("sign-out"), false);
    show($("new-key"), false);
    $("new-key-value").value = "";
    show($("view-sign-in"), true);
    $("key-input").value = "";
    $("key-input").focus();
  }

  async function onSignIn(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      say("Paste an API key first.", "error");
      $("key-input").focus();
      return;
    }
    const button = $("sign-in-button");
    button.disabled = true;
    try {
      await signIn(key);
    } catch (error) {
      sayError(error);
      $("key-input").select();
    } finally {
      button.disabled = false;
    }
  }

  // --- views ---------------------------------------------------------------------------------

  function currentView() {
    const name = location.hash.replace(/^#/, "");
    if (name === "keys" && !state.admin) return "overview";
    return VIEWS.includes(name) ? name : "overview";
  }

  function route() {
    if (!state.key) return;
    const name = currentView();
    for (const view of VIEWS) show($(`view-${view}`), view === name);
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const load = { overview: loadOverview, usage: loadUsage, rates: loadRates, keys: loadKeys }[name];
    load().catch(handle);
  }

  function onHashChange() {
    if (!state.key) return;
    route();
    const heading = $(`${currentView()}-title`);
    if (heading) heading.focus();
  }

  function cards(list, items) {
    list.replaceChildren(...items.map(([term, value]) => el("div", {}, el("dt", { text: term }), el("dd", { text: value }))));
  }

  // --- overview ------------------------------------------------------------------------------

  async function loadOverview() {
    const today = dayOf(new Date());
    const since = `${addDays(today, -29)}T00:00:00Z`;
    const usage = api("GET", "api/v1/user/usage/summary", { query: { since } });
    if (state.admin) {
      const [balance, membership] = await Promise.all([
        api("POST", "api/v1/user/admin/balance", { body: {} }),
        api("POST", "api/v1/user/admin/get-membership-expire-date", { body: {} }),
      ]);
      state.balance = balance;
      cards($("overview-account"), [
        ["Balance", money(balance.balance, balance.currency)],
        ["Tier", membership.tier],
        ["Effective tier", membership.effective_tier],
        ["Membership expires", membership.membership_expire_date ? when(membership.membership_expire_date) : "never"],
      ]);
    } else {
      $("overview-account").replaceChildren();
    }
    show($("overview-admin-note"), !state.admin);
    const sum = (await usage).sum;
    const currency = state.balance ? state.balance.currency : "";
    cards($("overview-usage"), [
      ["Spend", money(sum.cost, currency)],
      ["Requests", integer.format(sum.requests)],
      ["Input tokens", integer.format(sum.input_tokens)],
      ["Output tokens", integer.format(sum.output_tokens)],
    ]);
  }

  // --- usage ---------------------------------------------------------------------------------

  function usageFilters() {
    const from = $("usage-from").value;
    const to = $("usage-to").value;
    if (!from || !to) throw new Problem("Choose both days of the range.");
    if (from > to) throw new Problem("The range ends before it starts: swap the two days.");
    return {
      from, to,
      since: `${from}T00:00:00Z`,
      until: `${addDays(to, 1)}T00:00:00Z`,
      model: $("usage-model").value.trim(),
      group: $("usage-group").value,
      pageSize: $("usage-size").value,
    };
  }

  async function loadUsage() {
    if (!$("usage-from").value) {
      const today = dayOf(new Date());
      $("usage-to").value = today;
      $("usage-from").value = addDays(today, -29);
    }
    await showUsage();
  }

  async function showUsage() {
    const filters = usageFilters();
    state.usage = { filters, cursors: [null], page: 0, next: null };
    const { since, until, model, group } = filters;
    const [summary] = await Promise.all([
      api("GET", "api/v1/user/usage/summary", { query: { since, until, model, group } }),
      showRecords(),
      fillModelChoices(),
    ]);
    const currency = state.balance ? state.balance.currency : "";
    cards($("usage-sum"), [
      ["Spend", money(summary.sum.cost, currency)],
      ["Requests", integer.format(summary.sum.requests)],
      ["Input tokens", integer.format(summary.sum.input_tokens)],
      ["Output tokens", integer.format(summary.sum.output_tokens)],
    ]);
    drawCharts(summary, filters, currency);
    groupTable(summary, group);
  }

  async function fillModelChoices() {
    if (!state.rates) state.rates = await api("GET", "api/v1/pay/model-rates");
    const list = $("usage-models");
    if (!list.children.length) list.append(...Object.keys(state.rates).map((name) => el("option", { value: name })));
  }

  function groupTable(summary, group) {
    const head = el("tr", {},
      el("th", { text: group === "day" ? "Day (UTC)" : "Model", scope: "col" }),
      el("th", { text: "Requests", className: "num", scope: "col" }),
      el("th", { text: "Input tokens", className: "num", scope: "col" }),
      el("th", { text: "Output tokens", className: "num", scope: "col" }),
      el("th", { text: "Spend", className: "num", scope: "col" }));
    const rows = summary.groups.map((g) => el("tr", {},
      el("td", { text: g.key }),
      el("td", { text: integer.format(g.requests), className: "num" }),
      el("td", { text: integer.format(g.input_tokens), className: "num" }),
      el("td", { text: integer.format(g.output_tokens), className: "num" }),
      el("td", { text: g.cost, className: "num" })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, className: "empty", text: "No usage in this range." })));
    $("usage-groups").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  function drawCharts(summary, filters, currency) {
    const box = $("usage-charts");
    let groups = summary.groups;
    if (filters.group === "day") {
      // every day of the range, a day without usage as an empty bar (the latest days when the range is long)
      const byDay = new Map(groups.map((g) => [g.key, g]));
      const days = [];
      for (let day = filters.from; day <= filters.to; day = addDays(day, 1)) days.push(day);
      groups = days.slice(-MAX_CHART_DAYS).map((day) => byDay.get(day)
        || { key: day, requests: 0, input_tokens: 0, output_tokens: 0, cost: "0" });
    } else {
      groups = [...groups].sort((a, b) => Number(b.cost) - Number(a.cost) || b.requests - a.requests);
    }
    const per = filters.group === "day" ? "per day" : "per model";
    const unit = currency ? ` (${currency})` : "";
    box.replaceChildren(
      chart(`Spend ${per}${unit}`, "spend", groups, (g) => Number(g.cost), (g) => `${g.key}: ${money(g.cost, currency)}`),
      chart(`Requests ${per}`, "requests", groups, (g) => g.requests, (g) => `${g.key}: ${plural(g.requests, "request")}`),
    );
  }

  // One bar chart in SVG: a bar per group, its value in a <title> (the tooltip, and what a screen
  // reader reads); the table below the charts has the same figures.
  function chart(caption, kind, groups, value, label) {
    const width = 640;
    const height = 220;
    const pad = { top: 16, right: 8, bottom: 34, left: 8 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const values = groups.map(value);
    const top = Math.max(...values, 0);
    const slot = groups.length ? plotW / groups.length : plotW;
    const bar = Math.max(1, slot * 0.8);
    const figure = el("figure", { className: "chart" }, el("figcaption", { text: caption }));
    const total = values.reduce((a, b) => a + b, 0);
    const picture = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": kind,
      "aria-label": `${caption}: ${groups.length ? `${groups.length} bars, the highest ${top}` : "no data"}`,
    });
    const baseline = pad.top + plotH;
    picture.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: baseline, y2: baseline }));
    groups.forEach((g, i) => {
      const h = top > 0 ? Math.max(values[i] > 0 ? 2 : 0, (values[i] / top) * plotH) : 0;
      const rect = svg("rect", {
        class: kind, x: (pad.left + i * slot + (slot - bar) / 2).toFixed(2), y: (baseline - h).toFixed(2),
        width: bar.toFixed(2), height: h.toFixed(2), "data-key": g.key, "data-value": values[i],
      }, svg("title", {}));
      rect.firstChild.textContent = label(g);
      picture.append(rect);
    });
    const text = (x, y, anchor, content) => {
      const t = svg("text", { x, y, "text-anchor": anchor });
      t.textContent = content;
      return t;
    };
    picture.append(text(pad.left, pad.top - 4, "start", `max ${top > 0 ? formatNumber(top) : 0}`));
    picture.append(text(width - pad.right, pad.top - 4, "end", `total ${formatNumber(total)}`));
    if (groups.length) {
      picture.append(text(pad.left, height - 10, "start", shorten(groups[0].key)));
      if (groups.length > 1) picture.append(text(width - pad.right, height - 10, "end", shorten(groups[groups.length - 1].key)));
    } else {
      picture.append(text(width / 2, pad.top + plotH / 2, "middle", "No usage in this range"));
    }
    figure.append(picture);
    return figure;
  }

  function formatNumber(n) {
    return Number.isInteger(n) ? integer.format(n) : String(Number(n.toPrecision(6)));
  }

  function shorten(text) {
    return text.length > 28 ? `${text.slice(0, 27)}…` : text;
  }

  async function showRecords() {
    const u = state.usage;
    const { since, until, model, pageSize } = u.filters;
    const cursor = u.cursors[u.page];
    const page = await api("GET", "api/v1/user/usage", { query: { since, until, model, pageSize, cursor } });
    u.next = page.next_cursor;
    const head = el("tr", {}, ...[
      ["Time (UTC)"], ["Model"], ["Route"], ["Key"], ["Input", "num"], ["Output", "num"], ["Spend", "num"],
      ["Latency", "num"], ["Status"],
    ].map(([name, cls]) => el("th", { text: name, className: cls, scope: "col" })));
    const rows = page.records.map((r) => el("tr", {},
      el("td", { text: when(r.created_at), className: "mono" }),
      el("td", { text: r.model }),
      el("td", { text: r.route || "—" }),
      el("td", { text: r.key_id, className: "mono" }),
      el("td", { text: integer.format(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens), className: "num" }),
      el("td", { text: integer.format(r.output_tokens), className: "num" }),
      el("td", { text: r.cost, className: "num" }),
      el("td", { text: `${integer.format(r.latency_ms)} ms`, className: "num" }),
      el("td", { text: r.status })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 9, className: "empty", text: "No records match." })));
    $("usage-records").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    const size = Number(pageSize);
    const first = u.page * size + 1;
    $("records-page").textContent = page.records.length
      ? `${integer.format(first)}–${integer.format(first + page.records.length - 1)} of ${integer.format(page.total)}`
      : `0 of ${integer.format(page.total)}`;
    $("records-newer").disabled = u.page === 0;
    $("records-older").disabled = !u.next;
  }

  async function turnPage(step) {
    const u = state.usage;
    if (!u.filters) return;
    if (step > 0) {
      if (!u.next) return;
      u.cursors[u.page + 1] = u.next;
      u.page += 1;
    } else {
      if (u.page === 0) return;
      u.page -= 1;
    }
    try {
      await showRecords();
    } catch (error) {
      handle(error);
    }
  }

  async function onUsageFilters(event) {
    event.preventDefault();
    clearMessage();
    try {
      await showUsage();
    } catch (error) {
      handle(error);
    }
  }

  // --- model rates ---------------------------------------------------------------------------

  async function loadRates() {
    state.rates = await api("GET", "api/v1/pay/model-rates");
    filterRates();
  }

  function extras(rate) {
    const out = [];
    if (rate.audio_input) out.push(`audio in ${rate.audio_input}/1M`);
    if (rate.audio_output) out.push(`audio out ${rate.audio_output}/1M`);
    if (rate.per_request && typeof rate.per_request === "object") {
      out.push(`per request ${Object.entries(rate.per_request).map(([pool, p]) => `${pool} ${p}`).join(", ")}`);
    } else if (rate.per_request) {
      out.push(`per request ${rate.per_request}`);
    }
    if (rate.per_image) out.push(`per image ${Object.entries(rate.per_image).map(([size, p]) => `${size} ${p}`).join(", ")}`);
    if (rate.per_1m_chars) out.push(`${rate.per_1m_chars}/1M characters`);
    return out.join("; ") || "—";
  }

  function filterRates() {
    if (!state.rates) return;
    const words = $("rates-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const all = Object.entries(state.rates);
    const shown = all.filter(([name, r]) => {
      const text = `${name} ${r.provider} ${r.kind}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
    const head = el("tr", {}, ...[
      ["Model"], ["Kind"], ["Provider"], ["Input /1M", "num"], ["Output /1M", "num"], ["Cache read /1M", "num"],
      ["Cache write /1M", "num"], ["Other"],
    ].map(([name, cls]) => el("th", { text: name, className: cls, scope: "col" })));
    const rows = shown.map(([name, r]) => el("tr", {},
      el("td", { text: name, className: "mono" }),
      el("td", { text: r.kind || "—" }),
      el("td", { text: r.provider || "—" }),
      el("td", { text: r.input ?? "—", className: "num" }),
      el("td", { text: r.output ?? "—", className: "num" }),
      el("td", { text: r.cache_read ?? "—", className: "num" }),
      el("td", { text: r.cache_write ?? "—", className: "num" }),
      el("td", { text: extras(r) })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8, className: "empty", text: "No model matches." })));
    $("rates-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    $("rates-count").textContent = `${plural(shown.length, "model")} of ${integer.format(all.length)}`;
  }

  // --- keys (admin) --------------------------------------------------------------------------

  async function loadKeys(attempt = 0) {
    try {
      state.keys = await api("POST", "api/v1/user/admin/get-api-tokens", { body: {} });
    } catch (error) {
      // the listing is limited to one a second per user: wait it out once, quietly
      if (error instanceof ApiError && error.status === 429 && attempt < 2) {
        say("The key list can be read once a second; reading it again in a moment…", "info");
        await new Promise((resolve) => setTimeout(resolve, 1000 * Math.max(1, error.retryAfter)));
        clearMessage();
        return loadKeys(attempt + 1);
      }
      throw error;
    }
    drawKeys();
    return undefined;
  }

  function isMine(k) {
    return state.key && k.key === mask(state.key);
  }

  function drawKeys() {
    const head = el("tr", {}, ...[
      ["Key"], ["Remark"], ["Models"], ["RPM", "num"], ["Cap", "num"], ["Spent", "num"], ["Calls", "num"],
      ["Expires"], ["State"], ["Actions"],
    ].map(([name, cls]) => el("th", { text: name, className: cls, scope: "col" })));
    const rows = state.keys.map((k) => {
      const label = `${k.key}${k.remark ? ` (${k.remark})` : ""}`;
      const mine = isMine(k);
      const actions = el("td", { className: "actions" },
        el("button", { type: "button", className: "secondary", text: "Edit", "aria-label": `Edit ${label}`,
          onclick: () => openEdit(k) }));
      if (!mine) {  // never lock oneself out from here
        actions.append(
          el("button", { type: "button", className: "secondary", text: k.is_disabled ? "Enable" : "Disable",
            "aria-label": `${k.is_disabled ? "Enable" : "Disable"} ${label}`, onclick: () => setDisabled(k, !k.is_disabled) }),
          el("button", { type: "button", className: "secondary", text: "Delete", "aria-label": `Delete ${label}`,
            onclick: () => askDelete(k) }));
      }
      const flags = [k.is_disabled ? "disabled" : "active", k.is_admin ? "admin" : null, mine ? "this key" : null];
      return el("tr", { className: k.is_disabled ? "disabled" : null, "data-key-id": k.key_id },
        el("td", { text: k.key, className: "mono" }),
        el("td", { text: k.remark || "—" }),
        el("td", { text: k.permissions.length ? k.permissions.join(", ") : "all" }),
        el("td", { text: k.rpm ?? "—", className: "num" }),
        el("td", { text: k.max_fee ?? "—", className: "num" }),
        el("td", { text: k.used_fee, className: "num" }),
        el("td", { text: integer.format(k.used_times), className: "num" }),
        el("td", { text: k.expired_at ? when(k.expired_at) : "never" }),
        el("td", { text: flags.filter(Boolean).join(", ") }),
        actions);
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 10, className: "empty", text: "No keys." })));
    $("keys-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  function permissionsOf(text) {
    return text.split(",").map((p) => p.trim()).filter(Boolean);
  }

  // The fields of a create or an update form; `clear` sends null for an emptied field (update only).
  function keyFields(prefix, clear) {
    const fields = { remark: $(`${prefix}-remark`).value.trim(), permissions: permissionsOf($(`${prefix}-permissions`).value) };
    const rpm = $(`${prefix}-rpm`).value.trim();
    const cap = $(`${prefix}-max-fee`).value.trim();
    const expiry = $(`${prefix}-expiry`).value;
    if (rpm || clear) fields.rpm = rpm ? Number(rpm) : null;
    if (cap || clear) fields.max_fee = cap || null;
    if (expiry || clear) fields.expired_at = expiry ? `${expiry}T00:00:00Z` : null;
    return fields;
  }

  function replaceKey(updated) {
    const at = state.keys.findIndex((k) => k.key_id === updated.key_id);
    if (at >= 0) state.keys[at] = updated;
    else state.keys.push(updated);
    drawKeys();
  }

  async function onCreate(event) {
    event.preventDefault();
    clearMessage();
    const form = event.currentTarget;
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const created = await api("POST", "api/v1/user/admin/new-api-token", { body: keyFields("create", false) });
      $("new-key-value").value = created.key;
      $("new-key-status").textContent = "";
      show($("new-key"), true);
      replaceKey({ ...created, key: mask(created.key) });
      form.reset();
      $("new-key-copy").focus();
    } catch (error) {
      handle(error);
    } finally {
      button.disabled = false;
    }
  }

  async function copyNewKey() {
    const field = $("new-key-value");
    let copied = false;
    try {
      await navigator.clipboard.writeText(field.value);
      copied = true;
    } catch (_) {
      field.select();
      try {
        copied = document.execCommand("copy");
      } catch (__) {
        copied = false;
      }
    }
    $("new-key-status").textContent = copied
      ? "Copied to the clipboard."
      : "The browser would not copy it: the key is selected, press Ctrl+C (⌘C) to copy it.";
    if (!copied) field.select();
  }

  function forgetNewKey() {
    $("new-key-value").value = "";
    show($("new-key"), false);
    $("create-remark").focus();
  }

  async function setDisabled(k, disabled) {
    clearMessage();
    try {
      replaceKey(await api("POST", "api/v1/user/admin/update-api-token", { body: { key_id: k.key_id, is_disabled: disabled } }));
      say(`Key ${k.key} is ${disabled ? "disabled: requests with it are refused" : "enabled again"}.`, "info");
    } catch (error) {
      handle(error);
    }
  }

  let editing = null;

  function openEdit(k) {
    editing = k;
    $("key-edit-which").textContent = `${k.key}${k.remark ? ` — ${k.remark}` : ""}`;
    $("edit-remark").value = k.remark || "";
    $("edit-permissions").value = k.permissions.join(", ");
    $("edit-rpm").value = k.rpm ?? "";
    $("edit-max-fee").value = k.max_fee ?? "";
    $("edit-expiry").value = k.expired_at ? k.expired_at.slice(0, 10) : "";
    show($("key-edit-error"), false);
    $("key-edit").showModal();
    $("edit-remark").focus();
  }

  async function onEditSave(event) {
    event.preventDefault();
    if (!editing) return;
    try {
      replaceKey(await api("POST", "api/v1/user/admin/update-api-token",
        { body: { key_id: editing.key_id, ...keyFields("edit", true) } }));
      $("key-edit").close();
      say(`Key ${editing.key} saved.`, "info");
      editing = null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        $("key-edit").close();
        handle(error);
        return;
      }
      $("key-edit-error").textContent = describe(error);
      show($("key-edit-error"), true);
    }
  }

  let deleting = null;

  function askDelete(k) {
    deleting = k;
    $("key-delete-which").textContent = `${k.key}${k.remark ? ` — ${k.remark}` : ""}`;
    $("key-delete").returnValue = "";
    $("key-delete").showModal();
    $("key-delete-cancel").focus();
  }

  async function onDeleteClosed() {
    const k = deleting;
    deleting = null;
    if (!k || $("key-delete").returnValue !== "delete") return;
    clearMessage();
    try {
      await api("POST", "api/v1/user/admin/del-api-token", { body: { key_id: k.key_id } });
      state.keys = state.keys.filter((other) => other.key_id !== k.key_id);
      drawKeys();
      say(`Key ${k.key} deleted.`, "info");
    } catch (error) {
      handle(error);
    }
  }

  // --- start ---------------------------------------------------------------------------------

  function wire() {
    $("sign-in-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", () => {
      signOut();
      clearMessage();
    });
    $("message-close").addEventListener("click", clearMessage);
    $("usage-filters").addEventListener("submit", onUsageFilters);
    $("records-newer").addEventListener("click", () => turnPage(-1));
    $("records-older").addEventListener("click", () => turnPage(1));
    $("rates-search").addEventListener("input", filterRates);
    $("key-create").addEventListener("submit", onCreate);
    $("new-key-copy").addEventListener("click", () => copyNewKey().catch(sayError));
    $("new-key-done").addEventListener("click", forgetNewKey);
    $("key-edit-form").addEventListener("submit", (event) => onEditSave(event).catch(sayError));
    $("key-edit-cancel").addEventListener("click", () => $("key-edit").close());
    $("key-delete").addEventListener("close", () => onDeleteClosed().catch(sayError));
    window.addEventListener("hashchange", onHashChange);
  }

  async function start() {
    show($("loading"), false);
    wire();
    let kept = null;
    try {
      kept = sessionStorage.getItem(KEY_SLOT);
    } catch (_) {
      kept = null;
    }
    if (!kept) {
      signOut();
      return;
    }
    try {
      await signIn(kept, true);
    } catch (error) {
      signOut();
      sayError(error);
    }
  }

  // Never a blank page: whatever escapes is shown in words.
  window.addEventListener("error", (event) => say(describe(event.error || event.message), "error"));
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    handle(event.reason);
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => start());
  else start();
})();
