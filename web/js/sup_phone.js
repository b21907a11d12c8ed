// The supervisor's browser phone on the wallboard: for a user with a SIP phone (users.toml
// sip_extension), the same JsSIP phone as the agent desk registers over /sip with that
// extension and its SIP password (typed here, kept in memory only). The Listen / Whisper /
// Barge buttons then ring it like a desk phone: it shows which call and mode, rings, and
// once answered plays the call; 1/2/3 (RFC 4733 digits) switch the mode, Mute and Hang up.
// It also dials, as a desk phone does: *31/*32/*33 + an agent's extension.

import { Phone } from "./agent/phone.js";
import { Ringer } from "./agent/ringer.js";
import { measureLevel } from "./audio_level.js";
import { t, onLanguageChange } from "./i18n.js";
import { MONITOR_MODES } from "./board.js";

const $ = (id) => document.getElementById(id);

/// The digit that switches a monitoring call to `mode` (the switch's 1/2/3).
export function modeDigit(mode) {
  const i = MONITOR_MODES.indexOf(mode);
  return i < 0 ? null : String(i + 1);
}

/// A dialled monitoring code (*31/*32/*33 + the agent's extension): {monitorMode, agent},
/// else null (another number: a queue, an extension).
export function parseMonitorCode(dialled) {
  const m = /^\*3([123])(\d+)$/.exec(String(dialled).trim());
  return m ? { monitorMode: MONITOR_MODES[Number(m[1]) - 1], agent: m[2] } : null;
}

const st = {
  extension: null,
  iceServers: [],
  phone: null,
  state: "off", // off | connecting | registered | disconnected | failed
  phase: "idle", // idle | ringing | calling | talking
  offer: null, // {monitorMode, agent, callId}
  mode: null,
  muted: false,
  stopLevel: null,
};
const ringer = new Ringer();

/// Shows the phone for `session` (from /api/v1/session) or hides it (signed out, no phone).
export function setSession(session) {
  const ext = session?.sip_extension || null;
  const allowed = (session?.permissions || []).includes("monitor");
  if (!ext || !allowed) {
    disconnect();
    st.extension = null;
    $("sup-phone").hidden = true;
    return;
  }
  if (st.extension !== ext) disconnect();
  st.extension = ext;
  st.iceServers = session.ice_servers || [];
  $("sup-phone").hidden = false;
  render();
}

function connect(password) {
  if (!st.extension || !password) return;
  disconnect();
  ringer.unlock();
  st.phone = new Phone({
    extension: st.extension,
    password,
    iceServers: st.iceServers,
    events: {
      status: (s) => {
        st.state = s;
        render();
      },
      incoming: onIncoming,
      progress: (phase) => {
        if (phase === "talking" || phase === "calling") {
          ringer.stop();
          st.phase = phase;
          // The board's "ringing your phone" note is done with once this phone has the call.
          $("monitor-status").hidden = true;
          render();
        }
      },
      ended: () => {
        ringer.stop();
        st.phase = "idle";
        st.offer = null;
        st.mode = null;
        st.muted = false;
        render();
      },
      remoteStream: (stream) => {
        const audio = $("sup-remote-audio");
        audio.srcObject = stream;
        audio.play().catch(() => {});
        if (st.stopLevel) st.stopLevel();
        st.stopLevel = measureLevel(stream, $("sup-remote-level"), ringer.ctx);
      },
    },
  });
  st.state = "connecting";
  st.phone.start();
  render();
}

function disconnect() {
  ringer.stop();
  if (st.stopLevel) st.stopLevel();
  st.stopLevel = null;
  if (st.phone) st.phone.stop();
  st.phone = null;
  st.state = "off";
  st.phase = "idle";
  st.offer = null;
  if ($("sup-phone")) render();
}

function onIncoming(info) {
  // Only the switch's monitoring calls ring here; anything else is declined by the phone
  // of the person it is for, not by a wallboard.
  if (!info.monitorMode) {
    st.phone.decline();
    return;
  }
  st.offer = info;
  st.mode = info.monitorMode;
  st.phase = "ringing";
  ringer.start();
  render();
}

function dial(number) {
  const target = String(number).trim();
  if (!target || !st.phone) return;
  const code = parseMonitorCode(target);
  st.offer = code || { monitorMode: null, agent: target };
  st.mode = code ? code.monitorMode : null;
  if (!st.phone.call(target)) st.offer = null;
  render();
}

function render() {
  $("sup-phone-ext").textContent = st.extension || "";
  const pill = $("sup-phone-state");
  pill.dataset.state = st.state;
  pill.textContent = t(`supphone.${st.state}`);
  const connected = st.phone !== null;
  $("sup-phone-form").hidden = connected;
  $("sup-phone-disconnect").hidden = !connected;
  $("sup-dial-form").hidden = st.state !== "registered" || st.phase !== "idle";
  const call = $("sup-call");
  call.hidden = st.phase === "idle";
  call.dataset.phase = st.phase;
  call.dataset.mode = st.mode || "";
  if (st.offer) {
    $("sup-call-what").textContent = st.mode
      ? t("supphone.call", { mode: t(`monitor.${st.mode}`), agent: st.offer.agent || "?" })
      : t("supphone.calling", { number: st.offer.agent });
  }
  $("sup-answer").hidden = st.phase !== "ringing";
  $("sup-decline").hidden = st.phase !== "ringing";
  $("sup-talk-controls").hidden = st.phase !== "talking" && st.phase !== "calling";
  $("sup-modes").hidden = !st.mode || st.phase !== "talking";
  for (const b of document.querySelectorAll("#sup-modes button")) {
    b.dataset.on = b.dataset.mode === st.mode ? "true" : "false";
    b.textContent = t(`monitor.${b.dataset.mode}`);
  }
  $("sup-mute").textContent = t(st.muted ? "supphone.unmute" : "supphone.mute");
  $("sup-mute").dataset.on = st.muted ? "true" : "false";
}

/// Wires the phone's buttons once (the page's elements exist from the start).
export function initSupervisorPhone() {
  $("sup-phone-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const pw = $("sup-phone-password");
    connect(pw.value);
    pw.value = "";
  });
  $("sup-phone-disconnect").addEventListener("click", () => disconnect());
  $("sup-dial-form").addEventListener("submit", (event) => {
    event.preventDefault();
    dial($("sup-dial").value);
  });
  $("sup-answer").addEventListener("click", () => {
    ringer.stop();
    st.phone?.answer();
  });
  $("sup-decline").addEventListener("click", () => st.phone?.decline());
  $("sup-hangup").addEventListener("click", () => st.phone?.hangUp());
  $("sup-mute").addEventListener("click", () => {
    st.muted = st.phone ? st.phone.toggleMute() : false;
    render();
  });
  const modes = $("sup-modes");
  for (const mode of MONITOR_MODES) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.mode = mode;
    b.addEventListener("click", () => {
      if (st.phone?.sendDigit(modeDigit(mode))) {
        st.mode = mode;
        render();
      }
    });
    modes.append(b);
  }
  onLanguageChange(() => {
    if (st.extension) render();
  });
}
