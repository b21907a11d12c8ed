// Renders the live model: KPI tiles, queues, waiting callers, alerts and the agent grid.
// Elements that show "time since" carry data-since (server epoch ms); tick() refreshes them
// every second without a new message. Text goes in with textContent only, never as HTML.

import {
  t,
  formatNumber,
  formatPercent,
  formatSeconds,
  formatDuration,
  formatLanguageName,
  stateLabel,
  reasonLabel,
} from "./i18n.js";

/// The tiles: snapshot field, target field, whether higher is better, and the format.
export const KPIS = [
  { key: "service_level_pct", label: "kpi.service_level", higher: true, kind: "pct" },
  { key: "asa_secs", label: "kpi.asa", higher: false, kind: "secs" },
  { key: "frt_secs", label: "kpi.frt", higher: false, kind: "secs" },
  { key: "aht_secs", label: "kpi.aht", higher: false, kind: "secs" },
  { key: "abandon_pct", label: "kpi.abandon", higher: false, kind: "pct" },
  { key: "containment_pct", label: "kpi.containment", higher: true, kind: "pct" },
  { key: "three_ring_pct", label: "kpi.three_ring", higher: true, kind: "pct" },
  { key: "csat_pct", label: "kpi.csat", higher: true, kind: "pct" },
  { key: "response_rate_pct", label: "kpi.response_rate", higher: true, kind: "pct" },
];

/// "good" when the target is met, "warn" within 10 % of it, "bad" beyond, "none" with no
/// figure or no target.
export function kpiStatus(value, target, higherIsBetter) {
  if (value === null || value === undefined || target === null || target === undefined) {
    return "none";
  }
  if (higherIsBetter ? value >= target : value <= target) return "good";
  const margin = Math.abs(target) * 0.1;
  const near = higherIsBetter ? value >= target - margin : value <= target + margin;
  return near ? "warn" : "bad";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function formatKpi(value, kind) {
  return kind === "pct" ? formatPercent(value) : formatSeconds(value);
}

function ticking(since, extra = {}) {
  return el("span", { class: "tick", dataset: { since: String(since) }, ...extra });
}

export function renderKpis(model) {
  const totals = model.totals || {};
  const targets = model.targets || {};
  const tiles = KPIS.map((k) => {
    const target = targets[k.key];
    const status = kpiStatus(totals[k.key], target, k.higher);
    return el(
      "div",
      { class: `tile kpi-${status}`, dataset: { kpi: k.key, status } },
      el("div", { class: "tile-label", text: t(k.label, { secs: targets.service_level_secs ?? 20 }) }),
      el("div", { class: "tile-value", text: formatKpi(totals[k.key], k.kind) }),
      el("div", {
        class: "tile-target",
        text: target === undefined || target === null ? "" : t("kpi.target", { value: formatKpi(target, k.kind) }),
      }),
    );
  });
  tiles.unshift(
    el(
      "div",
      { class: "tile kpi-none", dataset: { kpi: "calls" } },
      el("div", { class: "tile-label", text: t("kpi.calls") }),
      el("div", { class: "tile-value", text: formatNumber(totals.offered ?? 0) }),
      el("div", {
        class: "tile-target",
        text: t("kpi.calls_detail", {
          answered: formatNumber(totals.answered ?? 0),
          abandoned: formatNumber(totals.abandoned ?? 0),
        }),
      }),
    ),
  );
  document.getElementById("kpi-tiles").replaceChildren(...tiles);
}

const QUEUE_COLUMNS = [
  "queues.queue",
  "queues.waiting",
  "queues.longest",
  "state.ready",
  "state.reserved",
  "state.on_call",
  "state.wrap_up",
  "state.not_ready",
  "queues.logged_in",
  "queues.needed",
  "queues.sl",
  "queues.offered",
  "queues.answered",
  "queues.abandoned",
];

export function renderQueues(model) {
  const targets = model.targets || {};
  document
    .getElementById("queue-head")
    .replaceChildren(...QUEUE_COLUMNS.map((k, i) => el("th", { class: i ? "num" : "", text: t(k) })));
  const rows = (model.queues || []).map((q) => {
    const a = q.agents || {};
    const today = q.today || {};
    const needed = q.staffing ? q.staffing.needed : null;
    const short = needed !== null && needed !== undefined && (a.logged_in ?? 0) < needed;
    const sl = kpiStatus(today.service_level_pct, targets.service_level_pct, true);
    return el(
      "tr",
      { dataset: { queue: q.name } },
      el("th", { scope: "row", text: q.label || q.name }),
      el("td", { class: `num${q.waiting > 0 ? " hot" : ""}`, dataset: { col: "waiting" }, text: formatNumber(q.waiting ?? 0) }),
      el("td", { class: "num" }, q.longest_wait_since ? ticking(q.longest_wait_since) : "—"),
      ...["ready", "reserved", "on_call", "wrap_up", "not_ready"].map((s) =>
        el("td", { class: `num state-text-${s}`, text: formatNumber(a[s] ?? 0) }),
      ),
      el("td", { class: `num${short ? " kpi-text-bad" : ""}`, text: formatNumber(a.logged_in ?? 0) }),
      el("td", { class: "num", text: formatNumber(needed) }),
      el("td", { class: `num kpi-text-${sl}`, text: formatPercent(today.service_level_pct) }),
      el("td", { class: "num", text: formatNumber(today.offered ?? 0) }),
      el("td", { class: "num", text: formatNumber(today.answered ?? 0) }),
      el("td", { class: "num", text: formatNumber(today.abandoned ?? 0) }),
    );
  });
  document.getElementById("queue-rows").replaceChildren(...rows);
}

export function renderWaiting(model) {
  const waiting = [...(model.waiting || [])].sort(
    (a, b) => (a.queue || "").localeCompare(b.queue || "") || a.position - b.position,
  );
  const cols = ["waiting.position", "waiting.number", "waiting.language", "waiting.queue", "waiting.wait"];
  document
    .getElementById("waiting-head")
    .replaceChildren(...cols.map((k) => el("th", { class: k === "waiting.wait" || k === "waiting.position" ? "num" : "", text: t(k) })));
  const rows = waiting.map((w) =>
    el(
      "tr",
      { class: w.vip ? "vip" : "", dataset: { callId: w.call_id } },
      el("td", { class: "num", text: formatNumber(w.position) }),
      el(
        "td",
        { class: "number" },
        w.number || "—",
        w.vip ? el("span", { class: "vip-mark", title: t("waiting.vip"), text: ` ★ ${t("waiting.vip")}` }) : null,
      ),
      el("td", { text: formatLanguageName(w.language) }),
      el("td", { text: queueLabel(model, w.queue) }),
      el("td", { class: "num" }, ticking(w.since, { class: "tick wait" })),
    ),
  );
  document.getElementById("waiting-rows").replaceChildren(...rows);
  document.getElementById("waiting-count").textContent = formatNumber(waiting.length);
  document.getElementById("waiting-none").hidden = waiting.length > 0;
  document.getElementById("waiting-table").hidden = waiting.length === 0;
}

function queueLabel(model, name) {
  if (!name) return "—";
  const q = (model.queues || []).find((x) => x.name === name);
  return (q && q.label) || name;
}

function agentLabel(model, ext) {
  const a = (model.agents || []).find((x) => x.extension === ext);
  return a && a.name ? `${a.name} (${ext})` : ext;
}

/// Time-based alerts carry no value: their duration is now - since, shown ticking.
const TIMED_ALERTS = new Set(["wait_over_frt", "agent_not_ready_long"]);
const SLOT = "\u0000";

function alertValue(kind, v) {
  if (v === null || v === undefined) return "—";
  return kind === "service_level_low" ? formatPercent(v) : formatDuration(v);
}

/// The alert's sentence; a time-based alert's {value} is a ticking duration.
function alertText(model, a) {
  const timed = TIMED_ALERTS.has(a.kind) && (a.value === null || a.value === undefined);
  const text = t(`alert.${a.kind}`, {
    queue: a.queue ? queueLabel(model, a.queue) : t("alert.all_queues"),
    agent: a.agent ? agentLabel(model, a.agent) : "",
    value: timed ? SLOT : alertValue(a.kind, a.value),
    threshold: TIMED_ALERTS.has(a.kind) ? formatDuration(a.threshold) : alertValue(a.kind, a.threshold),
  });
  const [before, after] = text.split(SLOT);
  if (after === undefined) return [before];
  return [before, ticking(a.since, { class: "tick alert-value" }), after];
}

export function renderAlerts(model) {
  const alerts = model.alerts || [];
  const items = alerts.map((a) =>
    el(
      "li",
      { class: `alert alert-${a.kind}`, dataset: { kind: a.kind } },
      el("span", { class: "alert-text" }, ...alertText(model, a)),
      a.since && !TIMED_ALERTS.has(a.kind) ? ticking(a.since, { class: "tick alert-since" }) : null,
    ),
  );
  document.getElementById("alert-list").replaceChildren(...items);
  document.getElementById("alerts-count").textContent = alerts.length ? formatNumber(alerts.length) : "";
  document.getElementById("alerts-none").hidden = alerts.length > 0;
}

/// The monitoring modes, in button order.
export const MONITOR_MODES = ["listen", "whisper", "barge"];

/// The call a supervisor may monitor from this agent's card: the one the agent is talking
/// on (not while it is offered or in wrap-up), else null.
export function monitorCallId(agent) {
  if (!agent || agent.state !== "on_call" || !agent.call) return null;
  return agent.call.call_id || null;
}

/// `commands`: null for viewers, else {onCommand(extension, state, reason)}; `monitor`: null
/// without the monitor permission, else {onMonitor(callId, mode, button)}.
export function renderAgents(model, commands, monitor = null) {
  const notReadyMax = (model.targets || {}).not_ready_max_secs;
  const agents = [...(model.agents || [])].sort((a, b) => a.extension.localeCompare(b.extension, undefined, { numeric: true }));
  const cards = agents.map((a) => {
    const call = a.call
      ? el(
          "div",
          { class: "agent-call" },
          el("span", { text: `☎ ${queueLabel(model, a.call.queue)} ` }),
          ticking(a.call.since, { class: "tick call-duration" }),
        )
      : el("div", { class: "agent-call empty" });
    const buttons = commands
      ? el(
          "div",
          { class: "agent-actions" },
          commandButton(a, "ready", null, "agents.ready", commands),
          commandButton(a, "not_ready", "break", "agents.break", commands),
          commandButton(a, "logged_out", null, "agents.logout", commands),
        )
      : null;
    const callId = monitor ? monitorCallId(a) : null;
    const monitorButtons = callId
      ? el("div", { class: "agent-monitor" }, ...MONITOR_MODES.map((mode) => monitorButton(callId, mode, monitor)))
      : null;
    return el(
      "article",
      {
        class: `agent state-${a.state}`,
        dataset: { extension: a.extension, state: a.state, notReadyMax: a.state === "not_ready" && notReadyMax ? String(notReadyMax) : undefined },
      },
      el(
        "header",
        {},
        el("span", { class: "agent-name", text: a.name || a.extension }),
        el("span", { class: "agent-ext", text: a.extension }),
      ),
      el(
        "div",
        { class: "agent-state" },
        el("span", { class: "state-badge", text: stateLabel(a.state) }),
        a.reason ? el("span", { class: "agent-reason", text: reasonLabel(a.reason) }) : null,
        a.since ? ticking(a.since, { class: "tick in-state", title: t("agents.in_state") }) : null,
      ),
      call,
      el(
        "dl",
        { class: "agent-today" },
        el("dt", { text: t("agents.calls_today") }),
        el("dd", { text: formatNumber(a.calls_today ?? 0) }),
        el("dt", { text: t("agents.aht_today") }),
        el("dd", { text: formatDuration(a.aht_secs_today) }),
      ),
      buttons,
      monitorButtons,
    );
  });
  document.getElementById("agent-grid").replaceChildren(...cards);
  document.getElementById("agents-none").hidden = agents.length > 0;
}

function commandButton(agent, state, reason, label, commands) {
  const current = agent.state === state && (state !== "not_ready" || agent.reason === reason);
  // A logged-out agent has no registered phone: only the agent can log in.
  const b = el("button", {
    type: "button",
    class: `cmd cmd-${state}`,
    dataset: { cmd: state },
    text: t(label),
    disabled: current || agent.state === "logged_out",
  });
  b.addEventListener("click", () => commands.onCommand(agent.extension, state, reason, b));
  return b;
}

function monitorButton(callId, mode, monitor) {
  const label = t(`monitor.${mode}`);
  const b = el("button", {
    type: "button",
    class: `monitor monitor-${mode}`,
    dataset: { monitor: mode, callId },
    text: label,
    title: t("monitor.title", { mode: label }),
  });
  b.addEventListener("click", () => monitor.onMonitor(callId, mode, b));
  return b;
}

/// Refreshes every ticking element against the server's clock (`nowMs`).
export function tick(nowMs) {
  for (const node of document.querySelectorAll(".tick[data-since]")) {
    const secs = (nowMs - Number(node.dataset.since)) / 1000;
    node.textContent = formatDuration(secs);
  }
  for (const card of document.querySelectorAll(".agent[data-not-ready-max]")) {
    const since = card.querySelector(".in-state");
    if (!since) continue;
    const secs = (nowMs - Number(since.dataset.since)) / 1000;
    card.classList.toggle("overdue", secs > Number(card.dataset.notReadyMax));
  }
}
