// The wallboard / supervisor page: sign-in, the header (connection state, clock, language),
// and the board fed by the live WebSocket. Agent commands only for users with the
// agent_commands permission; Listen / Whisper / Barge (ring my phone) with monitor, and for
// users with a SIP phone a browser phone to be rung on (sup_phone.js).

import * as api from "./api.js";
import { LiveFeed, liveUrl } from "./live.js";
import {
  t,
  language,
  setLanguage,
  onLanguageChange,
  applyStaticLabels,
  formatClock,
  formatDate,
} from "./i18n.js";
import { renderKpis, renderQueues, renderWaiting, renderAlerts, renderAgents, tick } from "./board.js";
import { renderIntervals, resizeChart, resetChart } from "./chart.js";
import { initSupervisorPhone, setSession } from "./sup_phone.js";

const $ = (id) => document.getElementById(id);

const page = {
  session: null,
  model: null,
  feed: null,
  status: { state: "connecting" },
  /// server clock minus ours, from each message's `at`
  skewMs: 0,
};

/// A message's `at` is never later than the server's clock when we get it, so the largest
/// recent (at - our clock) is the best estimate of the offset between the two clocks.
const skewSamples = [];

function noteServerTime(at) {
  skewSamples.push(at - Date.now());
  if (skewSamples.length > 20) skewSamples.shift();
  page.skewMs = Math.max(...skewSamples);
}

function serverNow() {
  return Date.now() + page.skewMs;
}

function canCommand() {
  return !!page.session && (page.session.permissions || []).includes("agent_commands");
}

function canMonitor() {
  return !!page.session && (page.session.permissions || []).includes("monitor");
}

function showSignIn(message) {
  page.session = null;
  setSession(null);
  if (page.feed) page.feed.stop();
  page.feed = null;
  page.model = null;
  resetChart();
  $("board").hidden = true;
  $("connection").hidden = true;
  $("sign-out").hidden = true;
  $("who-user").textContent = "";
  $("sign-in-view").hidden = false;
  const err = $("sign-in-error");
  err.hidden = !message;
  err.textContent = message || "";
  const user = $("sign-in-user");
  if (!user.value) user.value = rememberedUser();
  (user.value ? $("sign-in-password") : user).focus();
}

const USER_KEY = "ccswitch.user";

function rememberedUser() {
  try {
    return localStorage.getItem(USER_KEY) || "";
  } catch {
    return "";
  }
}

function showBoard(session) {
  try {
    localStorage.setItem(USER_KEY, session.user);
  } catch {
    // not remembered
  }
  page.session = session;
  setSession(session);
  $("sign-in-view").hidden = true;
  $("board").hidden = false;
  $("connection").hidden = false;
  $("sign-out").hidden = false;
  renderWho();
  page.feed = new LiveFeed({
    url: liveUrl(),
    onModel: (model) => {
      if (typeof model.at === "number") noteServerTime(model.at);
      page.model = model;
      renderAll();
    },
    onStatus: (status) => {
      page.status = status;
      renderConnection();
    },
    checkSession: async () => {
      try {
        const s = await api.currentSession();
        if (s === null) {
          showSignIn(t("signin.expired"));
          return false;
        }
        return true;
      } catch {
        return null; // the switch is unreachable: keep retrying
      }
    },
  });
  page.feed.start();
}

function renderWho() {
  const s = page.session;
  $("who-user").textContent = s ? `${s.user} · ${t(`role.${s.role}`)}` : "";
}

function renderConnection() {
  const c = $("connection");
  const s = page.status;
  c.dataset.state = s.state;
  if (s.state === "live") c.textContent = t("conn.live");
  else if (s.state === "waiting") {
    const left = Math.max(0, Math.ceil((s.since + s.retryInMs - Date.now()) / 1000));
    c.textContent = t("conn.reconnecting", { secs: `${left} s` });
  } else c.textContent = t("conn.connecting");
}

function renderAll() {
  const m = page.model;
  if (!m) return;
  renderKpis(m);
  renderQueues(m);
  renderWaiting(m);
  renderAlerts(m);
  renderAgents(m, canCommand() ? { onCommand } : null, canMonitor() ? { onMonitor } : null);
  renderIntervals(m);
  tick(serverNow());
  renderClock();
}

function renderClock() {
  const tz = page.model ? page.model.time_zone : undefined;
  $("clock-time").textContent = formatClock(serverNow(), tz);
  $("clock-date").textContent = formatDate(serverNow(), tz);
}

async function onCommand(extension, state, reason, button) {
  const err = $("agent-error");
  err.hidden = true;
  button.disabled = true;
  try {
    await api.setAgentState(extension, state, reason);
  } catch (e) {
    if (e.status === 401) {
      showSignIn(t("signin.expired"));
      return;
    }
    err.textContent = t("agents.command_failed", { detail: e.detail || e.title || e.message });
    err.hidden = false;
    button.disabled = false;
  }
  // on success the feed brings the new state and re-renders the card
}

/// Asks the switch to ring the supervisor's phone; says so, or why not.
async function onMonitor(callId, mode, button) {
  const status = $("monitor-status");
  status.hidden = true;
  status.classList.remove("error");
  button.disabled = true;
  try {
    const r = await api.monitorCall(callId, mode);
    status.textContent = t("monitor.ringing", { extension: r.extension, mode: t(`monitor.${mode}`) });
  } catch (e) {
    if (e.status === 401) {
      showSignIn(t("signin.expired"));
      return;
    }
    status.textContent = t("monitor.failed", { detail: e.detail || e.title || e.message });
    status.classList.add("error");
  }
  status.hidden = false;
  button.disabled = false;
}

function wireHeader() {
  $("lang-toggle").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
  $("sign-out").addEventListener("click", async () => {
    try {
      await api.signOut();
    } catch {
      // signed out locally either way
    }
    showSignIn();
  });
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = $("sign-in-submit");
    submit.disabled = true;
    try {
      const session = await api.signIn($("sign-in-user").value.trim(), $("sign-in-password").value);
      $("sign-in-password").value = "";
      showBoard(session);
    } catch (e) {
      showSignIn(`${t("signin.failed")}: ${e.detail || e.title || e.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  onLanguageChange(() => {
    renderWho();
    renderConnection();
    renderAll();
    renderClock();
  });
  window.addEventListener("resize", () => resizeChart());
}

async function boot() {
  applyStaticLabels();
  wireHeader();
  initSupervisorPhone();
  setInterval(() => {
    renderClock();
    tick(serverNow());
    if (page.status.state === "waiting") renderConnection();
  }, 1000);
  renderClock();
  let session = null;
  try {
    session = await api.currentSession();
  } catch {
    session = null;
  }
  if (session) showBoard(session);
  else showSignIn();
}

boot();
