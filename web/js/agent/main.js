// The agent desk (/agent): sign in with extension + SIP password, microphone, the browser
// phone (phone.js), the live feed for the agent's own state and queues, the screen pop and
// contact history (GET /api/v1/calls/{id}/history), wrap-up with dispositions, break and
// logout with reasons. Labels in English and Chinese (labels.js over i18n.js).

import "./labels.js";
import { ApiError, agentSignIn, apiRequest, currentSession, signOut } from "../api.js";
import {
  applyStaticLabels,
  formatClock,
  formatDuration,
  formatLanguageName,
  language,
  onLanguageChange,
  reasonLabel,
  setLanguage,
  stateLabel,
  t,
} from "../i18n.js";
import { LiveFeed, liveUrl } from "../live.js";
import { Phone } from "./phone.js";
import { measureLevel } from "../audio_level.js";
import { Ringer, ringProgress } from "./ringer.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_RING_TIMEOUT_S = 18;

const st = {
  extension: null,
  iceServers: [], // the session's STUN/TURN servers, for the phone
  desk: null,
  feed: null,
  phone: null,
  mic: null,
  me: null, // my AgentView from the live feed
  model: null,
  phase: "idle", // idle | ringing | talking | held
  offer: null, // {callId, queue, startedAt}
  pop: null, // the ScreenPop shown
  popFor: null, // call id the screen pop is for (or being fetched)
  lastCall: null, // call id the wrap-up classifies
  savedFor: null, // call id whose disposition is saved
  talkSince: null,
  wrapDismissed: null, // call id whose wrap-up panel was closed by Ready
  stopLevel: null, // stops measuring the received audio level
};
const ringer = new Ringer();

// ---------- helpers ----------

function show(el, on) {
  el.hidden = !on;
}

function setText(id, text) {
  $(id).textContent = text ?? "—";
}

function dispositionLabel(code) {
  if (!code) return "—";
  const all = [
    ...(st.pop?.call?.dispositions || []),
    ...(st.desk?.default_dispositions || []),
    ...(st.desk?.queues || []).flatMap((q) => q.dispositions),
  ];
  const d = all.find((x) => x.name === code);
  if (!d) return code;
  return language() === "zh" ? d.label_zh : d.label_en;
}

function queueOf(name) {
  return (st.desk?.transfer_queues || []).find((q) => q.name === name) || null;
}

function queueLabel(name) {
  return queueOf(name)?.label || name || "—";
}

/// A message in the call status line for a few seconds (errors, transfer sent).
function flash(text) {
  st.transient = true;
  setText("call-status", text);
  clearTimeout(st.flashTimer);
  st.flashTimer = setTimeout(() => {
    st.transient = false;
    renderCall();
  }, 5000);
}

function problemText(e) {
  return e instanceof ApiError ? e.detail || e.title || `HTTP ${e.status}` : String(e);
}

// ---------- sign-in ----------

async function boot() {
  applyStaticLabels();
  $("lang-toggle").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
  onLanguageChange(() => {
    fillSelects();
    renderPills();
    renderAll();
  });
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", onSignOut);
  wireButtons();
  let session = null;
  try {
    session = await currentSession();
  } catch {
    session = null;
  }
  if (session && session.role === "agent" && session.extension) {
    // The cookie survived a reload, the SIP password did not: ask for it again.
    $("sign-in-extension").value = session.extension;
    show($("sign-in-notice"), true);
  }
  show($("sign-in-view"), true);
  setInterval(tick, 250);
}

async function onSignIn(ev) {
  ev.preventDefault();
  ringer.unlock(); // a user gesture: the ring tone may play later
  const extension = $("sign-in-extension").value.trim();
  const password = $("sign-in-password").value;
  show($("sign-in-error"), false);
  $("sign-in-submit").disabled = true;
  try {
    const s = await agentSignIn(extension, password);
    st.extension = s.extension || extension;
    st.iceServers = s.ice_servers || [];
    $("sign-in-password").value = "";
    await startDesk(password);
  } catch (e) {
    $("sign-in-error").textContent =
      e instanceof ApiError && e.status === 401 ? t("signin.agent_failed") : problemText(e);
    show($("sign-in-error"), true);
  } finally {
    $("sign-in-submit").disabled = false;
  }
}

async function onSignOut() {
  if (st.phone) st.phone.stop();
  if (st.feed) st.feed.stop();
  if (st.mic) for (const tr of st.mic.getTracks()) tr.stop();
  try {
    await signOut();
  } catch {
    // the cookie is gone either way
  }
  location.reload();
}

async function startDesk(password) {
  show($("sign-in-view"), false);
  show($("desk"), true);
  show($("sign-out"), true);
  $("who-agent").textContent = st.extension;
  await requestMicrophone();
  try {
    st.desk = await apiRequest("GET", `/api/v1/agents/${encodeURIComponent(st.extension)}/desk`);
    $("who-agent").textContent = `${st.desk.name} · ${st.extension}`;
  } catch (e) {
    flash(problemText(e));
  }
  fillSelects();
  st.feed = new LiveFeed({
    url: liveUrl(),
    onModel: onModel,
    onStatus: () => {},
    checkSession: async () => (await currentSession().catch(() => null)) !== null,
  });
  st.feed.start();
  st.phone = new Phone({
    extension: st.extension,
    password,
    micStream: st.mic,
    iceServers: st.iceServers,
    events: {
      status: onPhoneStatus,
      incoming: onIncoming,
      progress: onProgress,
      ended: onEnded,
      remoteStream: onRemoteStream,
    },
  });
  st.phone.start();
  renderAll();
}

async function requestMicrophone() {
  const pill = $("mic-state");
  show(pill, true);
  try {
    st.mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    pill.dataset.state = "ok";
  } catch {
    st.mic = null;
    pill.dataset.state = "denied";
  }
  renderPills();
}

function onPhoneStatus(state) {
  const pill = $("phone-state");
  show(pill, true);
  pill.dataset.state = state;
  renderPills();
}

/// The phone and microphone pills and the disposition status, in the current language.
function renderPills() {
  const phone = $("phone-state");
  if (!phone.hidden) phone.textContent = t(`phone.${phone.dataset.state}`);
  const mic = $("mic-state");
  if (!mic.hidden) mic.textContent = t(`mic.${mic.dataset.state}`);
  const status = $("dispo-status");
  if (status.dataset.state === "saved" && st.savedFor) {
    status.textContent = t("wrap.saved", { label: dispositionLabel(st.savedCode) });
  } else if (status.dataset.state === "saving") {
    status.textContent = t("wrap.saving");
  }
}

// ---------- selects ----------

function fillSelects() {
  const d = st.desk;
  const opts = (sel, items) => {
    sel.replaceChildren(
      ...items.map(([value, label]) => {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = label;
        return o;
      }),
    );
  };
  opts($("break-reason"), (d?.break_reasons || ["break"]).map((r) => [r, reasonLabel(r)]));
  opts($("logout-reason"), (d?.logout_reasons || ["end_of_shift"]).map((r) => [r, reasonLabel(r)]));
  const tsel = $("transfer-target");
  const keep = tsel.value;
  tsel.replaceChildren();
  for (const [label, items] of [
    [t("transfer.queues"), (d?.transfer_queues || []).map((q) => [q.name, q.label])],
    [t("transfer.agents"), (d?.transfer_agents || []).map((a) => [a.extension, `${a.name} (${a.extension})`])],
  ]) {
    const g = document.createElement("optgroup");
    g.label = label;
    for (const [value, text] of items) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = text;
      g.append(o);
    }
    tsel.append(g);
  }
  if (keep) tsel.value = keep;
  fillDispositions();
}

function fillDispositions() {
  const sel = $("dispo-select");
  const keep = sel.value;
  const codes = st.pop?.call?.dispositions?.length
    ? st.pop.call.dispositions
    : st.desk?.queues?.[0]?.dispositions || st.desk?.default_dispositions || [];
  sel.replaceChildren(
    ...codes.map((c) => {
      const o = document.createElement("option");
      o.value = c.name;
      o.textContent = `${c.number} · ${language() === "zh" ? c.label_zh : c.label_en}`;
      return o;
    }),
  );
  if (keep && codes.some((c) => c.name === keep)) sel.value = keep;
}

// ---------- commands ----------

function wireButtons() {
  $("btn-ready").addEventListener("click", () => setState("ready"));
  $("btn-break").addEventListener("click", () => setState("not_ready", $("break-reason").value));
  $("btn-logout").addEventListener("click", () =>
    setState("logged_out", $("logout-reason").value),
  );
  $("btn-answer").addEventListener("click", () => {
    ringer.stop();
    st.answering = true;
    try {
      st.phone?.answer();
    } catch (e) {
      flash(t("call.answer_failed", { reason: String(e.message || e) }));
    }
  });
  $("btn-decline").addEventListener("click", () => st.phone?.decline());
  $("btn-hangup").addEventListener("click", () => st.phone?.hangUp());
  $("btn-mute").addEventListener("click", () => {
    const muted = st.phone?.toggleMute();
    $("btn-mute").textContent = t(muted ? "btn.unmute" : "btn.mute");
    $("btn-mute").dataset.on = muted ? "true" : "false";
  });
  $("btn-hold").addEventListener("click", () => st.phone?.toggleHold());
  $("btn-transfer").addEventListener("click", () => {
    const target = $("transfer-target").value;
    if (target && st.phone?.transfer(target)) {
      flash(t("transfer.sent", { target }));
    }
  });
  $("btn-dispo-save").addEventListener("click", () => saveDisposition());
  $("btn-wrapup-ready").addEventListener("click", async () => {
    if (st.lastCall && st.savedFor !== st.lastCall) await saveDisposition();
    st.wrapDismissed = st.lastCall;
    await setState("ready");
    renderWrapUp();
  });
}

async function setState(state, reason) {
  if (!st.extension) return;
  try {
    const body = reason ? { state, reason } : { state };
    await apiRequest("POST", `/api/v1/agents/${encodeURIComponent(st.extension)}/state`, body);
  } catch (e) {
    flash(problemText(e));
  }
}

async function saveDisposition() {
  const callId = st.lastCall;
  const code = $("dispo-select").value;
  if (!callId || !code) return;
  const status = $("dispo-status");
  status.dataset.state = "saving";
  status.textContent = t("wrap.saving");
  try {
    await apiRequest("POST", `/api/v1/calls/${encodeURIComponent(callId)}/disposition`, {
      code,
      note: $("dispo-note").value,
    });
    // The engine applies it asynchronously: read it back from the call.
    for (let i = 0; i < 20; i++) {
      const pop = await apiRequest("GET", `/api/v1/calls/${encodeURIComponent(callId)}/history`);
      if (pop.call.disposition === code) {
        st.savedFor = callId;
        st.savedCode = code;
        status.dataset.state = "saved";
        status.textContent = t("wrap.saved", { label: dispositionLabel(code) });
        return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error("the switch did not confirm it");
  } catch (e) {
    status.dataset.state = "failed";
    status.textContent = t("wrap.failed", { reason: problemText(e) });
  }
}

// ---------- calls ----------

function onIncoming(info) {
  const q = queueOf(info.queue);
  const timeout = (q?.ring_timeout_s || DEFAULT_RING_TIMEOUT_S) * 1000;
  st.offer = { ...info, startedAt: Date.now(), timeoutMs: timeout };
  st.phase = "ringing";
  ringer.start(timeout / 3);
  if (info.callId) loadScreenPop(info.callId);
  renderCall();
}

function onProgress(phase) {
  ringer.stop();
  st.answering = false;
  if (phase === "talking" && st.phase === "ringing") st.talkSince = Date.now();
  st.phase = phase;
  if (st.offer?.callId) {
    st.lastCall = st.offer.callId;
    st.wrapDismissed = null;
  }
  renderCall();
}

function onEnded(cause, wasTalking) {
  ringer.stop();
  if (st.answering && !wasTalking) flash(t("call.answer_failed", { reason: cause || "?" }));
  st.answering = false;
  st.phase = "idle";
  // Not answered here: answered elsewhere (the desk phone), or the rings ran out. Once
  // answered here, the pop is read again for the final wait.
  if (wasTalking && st.offer?.callId) {
    st.popFor = null;
    loadScreenPop(st.offer.callId);
  }
  st.offer = null;
  renderCall();
}

function onRemoteStream(stream) {
  const audio = $("remote-audio");
  audio.srcObject = stream;
  audio.play().catch(() => {});
  // The received level, for the agent (and the browser test).
  ringer.unlock();
  if (st.stopLevel) st.stopLevel();
  st.stopLevel = measureLevel(stream, $("remote-level"), ringer.ctx);
}

async function loadScreenPop(callId) {
  if (st.popFor === callId) return;
  st.popFor = callId;
  // The call's rows reach the store a moment after the offer: try for a few seconds, and
  // again while its queue entry is not there yet (the store writes in batches).
  for (let i = 0; i < 20 && st.popFor === callId; i++) {
    try {
      const pop = await apiRequest("GET", `/api/v1/calls/${encodeURIComponent(callId)}/history`);
      if (st.popFor !== callId) return;
      st.pop = pop;
      fillDispositions();
      renderPop();
      if (pop.call.queue) return;
    } catch (e) {
      if (!(e instanceof ApiError) || ![403, 404].includes(e.status)) {
        flash(problemText(e));
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

// ---------- live feed ----------

function onModel(model) {
  st.model = model;
  const me = (model.agents || []).find((a) => a.extension === st.extension) || null;
  st.me = me;
  const callId = me?.call?.call_id || null;
  if (callId && ["reserved", "on_call"].includes(me.state)) loadScreenPop(callId);
  if (callId && me.state === "on_call") {
    // Answered here or on the desk phone: this is the call the wrap-up classifies. The
    // screen pop is read again: it now has the answer time (the wait is final).
    if (st.lastCall !== callId) {
      st.lastCall = callId;
      if (st.popFor === callId) {
        st.popFor = null;
        loadScreenPop(callId);
      }
      st.wrapDismissed = null;
      $("dispo-note").value = "";
      $("dispo-status").textContent = "";
      $("dispo-status").dataset.state = "";
    }
    if (st.phase === "idle") st.talkSince = me.call.since || me.since || Date.now();
  }
  renderAll();
}

// ---------- rendering ----------

function renderAll() {
  renderState();
  renderCall();
  renderPop();
  renderWrapUp();
  renderQueues();
}

function renderState() {
  const pill = $("agent-state");
  const me = st.me;
  show(pill, !!me);
  if (!me) return;
  pill.dataset.state = me.state;
  pill.textContent = me.reason
    ? `${stateLabel(me.state)} · ${reasonLabel(me.reason)}`
    : stateLabel(me.state);
}

function renderQueues() {
  const list = $("my-queues");
  const mine = st.desk?.queues || [];
  const byName = new Map((st.model?.queues || []).map((q) => [q.name, q]));
  list.replaceChildren(
    ...mine.map((q) => {
      const li = document.createElement("li");
      li.dataset.queue = q.name;
      const name = document.createElement("span");
      name.textContent = q.label;
      const n = document.createElement("span");
      n.className = "waiting";
      n.textContent = t("queues.waiting_n", { n: byName.get(q.name)?.waiting ?? 0 });
      li.append(name, n);
      return li;
    }),
  );
}

function renderCall() {
  const panel = $("call-panel");
  const onDeskPhone = st.phase === "idle" && st.me?.state === "on_call";
  const phase = onDeskPhone ? "talking" : st.phase;
  panel.dataset.phase = phase;
  panel.dataset.device = onDeskPhone ? "other" : "browser";
  show($("ringing"), phase === "ringing");
  show($("talking"), phase === "talking" || phase === "held");
  const ended = phase === "idle" && st.me?.state === "wrap_up";
  const status = {
    idle: t(ended ? "call.ended" : "call.idle"),
    ringing: t("call.ringing"),
    talking: t("call.talking"),
    held: t("call.held"),
  }[phase];
  if (!st.transient) setText("call-status", status);
  $("btn-hold").textContent = t(phase === "held" ? "btn.resume" : "btn.hold");
  $("btn-hold").dataset.on = phase === "held" ? "true" : "false";
  for (const id of ["btn-mute", "btn-hold", "btn-transfer"]) $(id).disabled = onDeskPhone;
  $("btn-hangup").disabled = onDeskPhone;
  tick();
}

function renderPop() {
  const pop = st.pop;
  // The pop stays for the ringing or current call and the call being wrapped up; an offer
  // that went to someone else (the rings ran out) leaves no pop behind.
  const relevant =
    !!pop &&
    (st.phase !== "idle" ||
      ["reserved", "on_call"].includes(st.me?.state) ||
      pop.call.call_id === st.lastCall);
  show($("screen-pop"), relevant);
  if (!relevant) return;
  const c = pop.call;
  setText("pop-number", c.number);
  setText("pop-language", c.language ? formatLanguageName(c.language) : "—");
  setText("pop-queue", c.queue_label || queueLabel(c.queue));
  setText(
    "pop-ivr",
    c.ivr_path.length
      ? c.ivr_path.map((s) => (s.digits ? `${s.node} (${s.digits})` : s.node)).join(" → ")
      : "—",
  );
  const vars = Object.entries(c.variables || {});
  setText("pop-variables", vars.length ? vars.map(([k, v]) => `${k}: ${v}`).join(", ") : "—");
  setText("pop-history-heading", t("pop.history", { days: pop.window_days }));
  const body = $("pop-history");
  if (!pop.contacts.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 6;
    td.className = "muted";
    td.textContent = t("pop.no_history");
    tr.append(td);
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(
      ...pop.contacts.map((h) => {
        const tr = document.createElement("tr");
        tr.dataset.callId = h.call_id;
        const cells = [
          `${formatClock(h.arrived_at)} ${new Date(h.arrived_at).toLocaleDateString(language() === "zh" ? "zh-CN" : "en-GB")}`,
          queueLabel(h.queue),
          h.agent || "—",
          t(`outcome.${h.outcome}`),
          h.disposition ? dispositionLabel(h.disposition) : "—",
          h.csat ? `${h.csat}/5` : "—",
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
  }
  tick();
}

function renderWrapUp() {
  const inWrap = st.me?.state === "wrap_up";
  const onCall = st.me?.state === "on_call" || st.phase !== "idle";
  const open = !!st.lastCall && st.wrapDismissed !== st.lastCall && (inWrap || !onCall);
  show($("wrapup"), open);
}

function tick() {
  const now = Date.now();
  if (st.phase === "ringing" && st.offer) {
    const p = ringProgress(now - st.offer.startedAt, st.offer.timeoutMs, 3);
    const el = $("ring-countdown");
    el.dataset.ring = String(p.ring);
    el.textContent = `${t("call.ring_of", { n: p.ring, total: 3 })} · ${t("call.left", { secs: p.leftSecs })}`;
    $("ring-bar-fill").style.width = `${(p.fraction * 100).toFixed(1)}%`;
  }
  $("ring-countdown").dataset.tone = ringer.playing ? "on" : "off";
  if (st.phase === "talking" || st.phase === "held" || st.me?.state === "on_call") {
    const since = st.talkSince || now;
    setText("talk-timer", formatDuration(Math.max(0, (now - since) / 1000)));
  }
  const c = st.pop?.call;
  if (c) {
    const end = c.agent_answered_at || c.ended_at || (c.queued_at ? now : null);
    const waited = c.queued_at && end ? (end - c.queued_at) / 1000 : (c.waited_ms ?? 0) / 1000;
    setText("pop-waited", formatDuration(Math.max(0, waited)));
  }
  if (st.me?.state === "wrap_up" && !$("wrapup").hidden) {
    const q = queueOf(st.pop?.call?.queue) || st.desk?.queues?.[0];
    const left = q && st.me.since ? Math.ceil((st.me.since + q.wrap_up_s * 1000 - now) / 1000) : null;
    setText("wrapup-timer", left !== null && left >= 0 ? t("wrap.left", { secs: left }) : "");
  } else if (!$("wrapup").hidden) {
    setText("wrapup-timer", "");
  }
}

boot();
