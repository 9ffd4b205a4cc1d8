// HITA cache console. Reads GET /v1.0/cache/stats with an admin's token, as
// any client would, every POLL_MS, and draws it; calls the admin actions the
// API has. No framework, no build step, nothing loaded from elsewhere; text is
// set with textContent only. The token lives in sessionStorage (this tab) and
// travels only in the Authorization header, never in a URL.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "hita.console.token";
// Paths relative to this page (/v1.0/cache/console), so a proxy's prefix is kept.
const URLS = {
  login: "../auth/login",
  stats: "stats",
  clear: "clear",
  clearUser: (id) => "clear/user/" + encodeURIComponent(id),
  warm: "warm",
};

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let timer = null;
let previous = null; // the last sample: {t, types, requests, counts}
const series = { types: new Map(), tiers: new Map() }; // name -> [{t, v}]
let rateText = "–";
let p99Text = "–";

// -- talking to the service -----------------------------------------------------

async function call(method, path) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, {
    method, headers, cache: "no-store", credentials: "omit", redirect: "error",
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, body };
}

async function login(username, password) {
  const response = await fetch(URLS.login, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ username, password }),
    cache: "no-store", credentials: "omit", redirect: "error",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || !body.access_token) {
    throw new Error((body && body.error) || "Login failed (" + response.status + ")");
  }
  return body.access_token;
}

// -- screens --------------------------------------------------------------------------

function showLogin(message) {
  stop();
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("status").textContent = "";
  const line = $("login-message");
  line.textContent = message || "";
  line.className = "message" + (message ? " bad" : "");
}

function showConsole() {
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
}

function useToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
  previous = null;
  series.types.clear();
  series.tiers.clear();
  poll();
}

function logOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

function stop() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
}

async function poll() {
  stop();
  let answer;
  try {
    answer = await call("GET", URLS.stats);
  } catch (error) {
    $("status").textContent = "The service cannot be reached: " + error.message;
    timer = setTimeout(poll, POLL_MS);
    return;
  }
  if (!token) return; // logged out meanwhile
  if (answer.status === 401 || answer.status === 403) {
    logOut("This console needs an admin's or a superadmin's token.");
    return;
  }
  showConsole();
  if (answer.status === 200 && answer.body) {
    render(answer.body);
  } else if (answer.body && answer.body.instance) { // 503: Redis away; what we see of it
    renderUnavailable(answer.body);
  } else {
    $("status").textContent = "Answer " + answer.status + ": " + ((answer.body && answer.body.error) || "");
  }
  timer = setTimeout(poll, POLL_MS);
}

// -- drawing the numbers ----------------------------------------------------------------

function valueAt(body, path) {
  return path.split(".").reduce((node, part) => (node == null ? undefined : node[part]), body);
}

function formatted(value, format) {
  if (value === null || value === undefined) return "–";
  switch (format) {
    case "bytes": return value === 0 ? "0 B (none)" : bytes(value);
    case "percent": return value.toFixed(2) + " %";
    case "seconds": return value.toFixed(1) + " s";
    case "ms": return value.toFixed(1) + " ms";
    case "ago": return ago(value);
    default: return String(value);
  }
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return seconds < 90 ? Math.round(seconds) + " s ago" : Math.round(seconds / 60) + " min ago";
}

// Every element with data-field shows that field of the answer; data-value keeps the raw value.
function fill(body, root) {
  for (const element of root.querySelectorAll("[data-field]")) {
    const value = valueAt(body, element.dataset.field);
    element.textContent = formatted(value, element.dataset.format);
    element.dataset.value = JSON.stringify(value === undefined ? null : value);
  }
}

function render(body) {
  const instance = body.instance;
  $("console").dataset.at = String(instance.at);
  fill(body, document);
  const state = instance.breaker.state;
  const big = document.querySelector('[data-field="instance.breaker.state"]');
  big.className = "big state-" + state;
  $("status").textContent = "Updated " + new Date(instance.at * 1000).toLocaleTimeString() +
    " · breaker " + state + " · " + instance.topology.mode;
  list($("transitions"), instance.breaker.transitions.map((t) => ago(t.at) + "  " + t.transition),
    "no transition since start");
  list($("servers"), instance.topology.servers.map((s) => s.role + "  " + s.address), "");
  table(body);
  families(body);
  sample(body);
  $("request-rate").textContent = rateText;
  $("request-p99").textContent = p99Text;
}

function renderUnavailable(body) {
  const instance = body.instance;
  $("console").dataset.at = String(instance.at);
  fill({ instance }, document);
  $("status").textContent = "Redis cache not available · breaker " + instance.breaker.state;
  list($("transitions"), instance.breaker.transitions.map((t) => ago(t.at) + "  " + t.transition),
    "no transition since start");
}

function list(element, lines, empty) {
  element.replaceChildren(...(lines.length ? lines : empty ? [empty] : []).map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
}

function table(body) {
  const byType = body.service_statistics.by_type;
  const l1 = body.instance.l1.by_type;
  const names = Object.keys(body.key_counts)
    .filter((k) => k.endsWith("_keys") && k !== "total_keys")
    .map((k) => k.slice(0, -"_keys".length));
  const rows = names.map((name) => {
    const row = document.createElement("tr");
    row.dataset.type = name;
    const counters = byType[name] || {};
    const cells = [
      [name, null],
      [body.key_counts[name + "_keys"], "key_counts." + name + "_keys"],
      [counters.hits ?? 0, null],
      [counters.l1_hits ?? 0, null],
      [counters.misses ?? 0, null],
      [formatted(counters.hit_rate ?? 0, "percent"), null],
      [(l1[name] || {}).entries ?? 0, null],
      [bytes((l1[name] || {}).bytes ?? 0), null],
    ];
    for (const [text, field] of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(text);
      if (field) {
        cell.dataset.field = field;
        cell.dataset.value = JSON.stringify(valueAt(body, field));
      }
      row.append(cell);
    }
    return row;
  });
  document.querySelector("#types tbody").replaceChildren(...rows);
}

function families(body) {
  const select = $("family");
  const names = Object.keys(body.key_counts)
    .filter((k) => k.endsWith("_keys") && k !== "total_keys")
    .map((k) => k.slice(0, -"_keys".length));
  if (select.options.length === names.length) return;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
}

// -- over time: per-poll ratios, request rate and p99 -----------------------------------

function sample(body) {
  const now = body.instance.at * 1000;
  const types = {};
  for (const [name, c] of Object.entries(body.service_statistics.by_type)) {
    types[name] = { hits: c.hits, misses: c.misses, l1: c.l1_hits };
  }
  const http = body.instance.http;
  const current = { t: now, types, requests: http.requests, counts: http.latency_counts };
  if (previous && now > previous.t) {
    let reads = 0, hits = 0, l1 = 0;
    for (const [name, c] of Object.entries(types)) {
      const before = previous.types[name] || { hits: 0, misses: 0, l1: 0 };
      const dHits = c.hits - before.hits, dReads = dHits + c.misses - before.misses;
      const dL1 = c.l1 - before.l1;
      if (dReads > 0 && dHits >= 0) {
        push(series.types, name, now, dHits / dReads);
        reads += dReads; hits += dHits; l1 += dL1;
      }
    }
    if (reads > 0) {
      push(series.tiers, "L1", now, l1 / reads);
      push(series.tiers, "Redis", now, (hits - l1) / reads);
    }
    const seconds = (now - previous.t) / 1000;
    const served = http.requests - previous.requests;
    rateText = served >= 0 ? (served / seconds).toFixed(1) + " /s" : "–";
    p99Text = quantile(0.99, http.latency_buckets_s, previous.counts, http.latency_counts);
  }
  previous = current;
  plot($("plot-types"), $("legend-types"), series.types, now);
  plot($("plot-tiers"), $("legend-tiers"), series.tiers, now);
}

// -- actions, each confirmed first ---------------------------------------------------------

function confirmThen(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "yes") action();
  }, { once: true });
  dialog.showModal();
}

async function act(method, path, what) {
  const line = $("action-result");
  line.className = "message";
  line.textContent = what + "…";
  try {
    const answer = await call(method, path);
    if (answer.status === 401 || answer.status === 403) {
      logOut("This console needs an admin's or a superadmin's token.");
      return;
    }
    const ok = answer.status >= 200 && answer.status < 300;
    line.className = "message " + (ok ? "ok" : "bad");
    const body = answer.body || {};
    line.textContent = ok ? body.message + (body.keys_deleted !== undefined ? " (" + body.keys_deleted + " keys)" : "")
      : "Failed (" + answer.status + "): " + (body.error || "");
  } catch (error) {
    line.className = "message bad";
    line.textContent = "Failed: " + error.message;
  }
  poll();
}

// -- wiring -------------------------------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    useToken(await login($("username").value, $("password").value));
    $("password").value = "";
  } catch (error) {
    showLogin(error.message);
  }
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  $("token").value = "";
  if (value) useToken(value);
});

$("logout").addEventListener("click", () => logOut(""));

$("clear-family-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const family = $("family").value;
  confirmThen("Remove every key of the " + family + " family from Redis?", () =>
    act("POST", URLS.clear + "?family=" + encodeURIComponent(family), "Clearing " + family));
});

$("clear-user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("user-id").value.trim();
  confirmThen("Remove the cached details of user " + id + "?", () =>
    act("POST", URLS.clearUser(id), "Clearing user " + id));
});

$("warm-form").addEventListener("submit", (event) => {
  event.preventDefault();
  confirmThen("Fill the essential caches now?", () => act("POST", URLS.warm, "Warming"));
});

if (token) poll(); else showLogin("");
