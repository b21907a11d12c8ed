// Labels in Chinese and English, and every number, time and duration formatted with Intl for
// the chosen language. The choice is kept in localStorage ("ccswitch.lang").

const STORAGE_KEY = "ccswitch.lang";

const en = {
  title: "ccswitch wallboard",
  "lang.toggle": "中文",
  "signin.heading": "Sign in",
  "signin.user": "User",
  "signin.password": "Password",
  "signin.submit": "Sign in",
  "signin.failed": "Sign-in failed",
  "signin.expired": "The session ended (the switch may have restarted): sign in again.",
  "signout": "Sign out",
  "conn.connecting": "Connecting…",
  "conn.live": "Live",
  "conn.reconnecting": "Reconnecting in {secs}…",
  "conn.offline": "Offline",
  "role.viewer": "viewer",
  "role.supervisor": "supervisor",
  "role.admin": "admin",
  "kpi.heading": "Today",
  "kpi.service_level": "Service level ({secs}\u00a0s)",
  "kpi.asa": "ASA",
  "kpi.frt": "FRT",
  "kpi.aht": "AHT",
  "kpi.abandon": "Abandoned",
  "kpi.containment": "IVR containment",
  "kpi.three_ring": "Three-ring",
  "kpi.csat": "CSAT",
  "kpi.response_rate": "Survey response",
  "kpi.target": "target {value}",
  "kpi.calls": "Calls",
  "kpi.calls_detail": "{answered} answered · {abandoned} abandoned",
  "queues.heading": "Queues",
  "queues.queue": "Queue",
  "queues.waiting": "Waiting",
  "queues.longest": "Longest wait",
  "queues.logged_in": "Logged in",
  "queues.needed": "Needed",
  "queues.sl": "SL today",
  "queues.offered": "Offered",
  "queues.answered": "Answered",
  "queues.abandoned": "Abandoned",
  "agents.heading": "Agents",
  "agents.calls_today": "Calls today",
  "agents.aht_today": "AHT today",
  "agents.in_state": "in state",
  "agents.ready": "Ready",
  "agents.break": "Break",
  "agents.logout": "Log out",
  "agents.none": "No agents",
  "agents.command_failed": "Command failed: {detail}",
  "monitor.listen": "Listen",
  "monitor.whisper": "Whisper",
  "monitor.barge": "Barge",
  "monitor.title": "Ring my phone ({mode}) and join this call",
  "monitor.ringing": "Ringing your phone {extension}: answer it to {mode}.",
  "monitor.failed": "Cannot monitor: {detail}",
  "supphone.title": "Browser phone",
  "supphone.password": "SIP password",
  "supphone.connect": "Connect",
  "supphone.disconnect": "Disconnect",
  "supphone.off": "off",
  "supphone.connecting": "connecting…",
  "supphone.registered": "ready to be rung",
  "supphone.disconnected": "disconnected",
  "supphone.failed": "registration failed",
  "supphone.call": "{mode}: agent {agent}",
  "supphone.calling": "Call {number}",
  "supphone.dial": "Dial",
  "supphone.call_button": "Call",
  "supphone.answer": "Answer",
  "supphone.decline": "Decline",
  "supphone.mute": "Mute",
  "supphone.unmute": "Unmute",
  "supphone.hangup": "Hang up",
  "state.logged_out": "Logged out",
  "state.ready": "Ready",
  "state.reserved": "Reserved",
  "state.on_call": "On call",
  "state.wrap_up": "Wrap-up",
  "state.not_ready": "Not ready",
  "reason.break": "break",
  "reason.lunch": "lunch",
  "reason.training": "training",
  "reason.meeting": "meeting",
  "reason.missed_call": "missed call",
  "reason.connection_lost": "connection lost",
  "waiting.heading": "Callers waiting",
  "waiting.position": "#",
  "waiting.number": "Number",
  "waiting.language": "Language",
  "waiting.queue": "Queue",
  "waiting.wait": "Wait",
  "waiting.none": "No one waiting",
  "waiting.vip": "VIP",
  "alerts.heading": "Alerts",
  "alerts.none": "No alerts",
  "alert.service_level_low": "{queue}: service level {value} below target {threshold}",
  "alert.wait_over_frt": "{queue}: a caller has waited {value} (FRT target {threshold})",
  "alert.agent_not_ready_long": "{agent} not ready for {value} (limit {threshold})",
  "alert.queue_unstaffed": "{queue}: callers waiting and no agent logged in",
  "alert.all_queues": "all queues",
  "intervals.heading": "Today in 15-minute intervals",
  "intervals.offered": "Offered",
  "intervals.answered": "Answered",
  "intervals.abandoned": "Abandoned",
  "intervals.sl": "SL %",
  "intervals.none": "No calls yet today",
};

const zh = {
  title: "ccswitch 实时看板",
  "lang.toggle": "English",
  "signin.heading": "登录",
  "signin.user": "用户名",
  "signin.password": "密码",
  "signin.submit": "登录",
  "signin.failed": "登录失败",
  "signin.expired": "会话已结束（交换机可能已重启），请重新登录。",
  "signout": "退出",
  "conn.connecting": "正在连接…",
  "conn.live": "实时",
  "conn.reconnecting": "{secs} 后重新连接…",
  "conn.offline": "离线",
  "role.viewer": "查看者",
  "role.supervisor": "班长",
  "role.admin": "管理员",
  "kpi.heading": "今日",
  "kpi.service_level": "服务水平（{secs} 秒）",
  "kpi.asa": "平均应答速度",
  "kpi.frt": "首次响应时间",
  "kpi.aht": "平均处理时长",
  "kpi.abandon": "放弃率",
  "kpi.containment": "IVR 自助率",
  "kpi.three_ring": "三声接起率",
  "kpi.csat": "满意度",
  "kpi.response_rate": "回访回复率",
  "kpi.target": "目标 {value}",
  "kpi.calls": "来电",
  "kpi.calls_detail": "接听 {answered} · 放弃 {abandoned}",
  "queues.heading": "队列",
  "queues.queue": "队列",
  "queues.waiting": "排队",
  "queues.longest": "最长等待",
  "queues.logged_in": "已登录",
  "queues.needed": "需要",
  "queues.sl": "今日服务水平",
  "queues.offered": "来电",
  "queues.answered": "接听",
  "queues.abandoned": "放弃",
  "agents.heading": "坐席",
  "agents.calls_today": "今日通话",
  "agents.aht_today": "今日平均处理",
  "agents.in_state": "持续",
  "agents.ready": "就绪",
  "agents.break": "小休",
  "agents.logout": "签出",
  "agents.none": "没有坐席",
  "agents.command_failed": "操作失败：{detail}",
  "monitor.listen": "监听",
  "monitor.whisper": "耳语",
  "monitor.barge": "强插",
  "monitor.title": "呼叫我的话机（{mode}）加入此通话",
  "monitor.ringing": "正在呼叫您的话机 {extension}：接听后即可{mode}。",
  "monitor.failed": "无法监控：{detail}",
  "supphone.title": "浏览器话机",
  "supphone.password": "SIP 密码",
  "supphone.connect": "连接",
  "supphone.disconnect": "断开",
  "supphone.off": "未连接",
  "supphone.connecting": "连接中…",
  "supphone.registered": "已就绪，可接听",
  "supphone.disconnected": "已断开",
  "supphone.failed": "注册失败",
  "supphone.call": "{mode}：坐席 {agent}",
  "supphone.calling": "呼叫 {number}",
  "supphone.dial": "拨号",
  "supphone.call_button": "呼叫",
  "supphone.answer": "接听",
  "supphone.decline": "拒绝",
  "supphone.mute": "静音",
  "supphone.unmute": "取消静音",
  "supphone.hangup": "挂断",
  "state.logged_out": "已签出",
  "state.ready": "就绪",
  "state.reserved": "预占",
  "state.on_call": "通话中",
  "state.wrap_up": "话后处理",
  "state.not_ready": "未就绪",
  "reason.break": "小休",
  "reason.lunch": "午餐",
  "reason.training": "培训",
  "reason.meeting": "会议",
  "reason.missed_call": "未接来电",
  "reason.connection_lost": "连接中断",
  "waiting.heading": "排队来电",
  "waiting.position": "序号",
  "waiting.number": "号码",
  "waiting.language": "语言",
  "waiting.queue": "队列",
  "waiting.wait": "等待",
  "waiting.none": "无人排队",
  "waiting.vip": "VIP",
  "alerts.heading": "告警",
  "alerts.none": "没有告警",
  "alert.service_level_low": "{queue}：服务水平 {value}，低于目标 {threshold}",
  "alert.wait_over_frt": "{queue}：来电已等待 {value}（首次响应目标 {threshold}）",
  "alert.agent_not_ready_long": "{agent} 未就绪已 {value}（上限 {threshold}）",
  "alert.queue_unstaffed": "{queue}：有来电排队但没有坐席登录",
  "alert.all_queues": "全部队列",
  "intervals.heading": "今日每 15 分钟",
  "intervals.offered": "来电",
  "intervals.answered": "接听",
  "intervals.abandoned": "放弃",
  "intervals.sl": "服务水平 %",
  "intervals.none": "今日尚无来电",
};

const dictionaries = { en, zh };
const listeners = [];

function initialLanguage() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // storage disabled: fall back to the browser's language
  }
  if (saved in dictionaries) return saved;
  const browser = (globalThis.navigator && globalThis.navigator.language) || "";
  return browser.toLowerCase().startsWith("zh") ? "zh" : "en";
}

let lang = initialLanguage();

export function language() {
  return lang;
}

/// BCP 47 tag for Intl.
function locale() {
  return lang === "zh" ? "zh-CN" : "en-GB";
}

export function setLanguage(next) {
  if (!(next in dictionaries) || next === lang) return;
  lang = next;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered; still switched
  }
  applyStaticLabels();
  for (const fn of listeners) fn(lang);
}

/// Adds (or overrides) labels for another page (the agent desk's `js/agent/labels.js`).
export function addLabels(more) {
  for (const [code, labels] of Object.entries(more)) {
    if (code in dictionaries) Object.assign(dictionaries[code], labels);
  }
}

export function onLanguageChange(fn) {
  listeners.push(fn);
}

/// The label for `key` with `{name}` placeholders filled from `params`.
export function t(key, params = {}) {
  const text = dictionaries[lang][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : ""));
}

/// Fills every element with data-i18n (text) or data-i18n-placeholder (placeholder).
export function applyStaticLabels(root = globalThis.document) {
  if (!root) return; // no page (the node tests)
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

const DASH = "—";

export function formatNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return DASH;
  return new Intl.NumberFormat(locale(), {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  }).format(n);
}

/// `pct` is 0-100.
export function formatPercent(pct, digits = 1) {
  if (pct === null || pct === undefined) return DASH;
  return new Intl.NumberFormat(locale(), {
    style: "percent",
    maximumFractionDigits: digits,
    minimumFractionDigits: 0,
  }).format(pct / 100);
}

/// Durations as clock-like text ("4:05", "1:02:03") with locale digits, or with units
/// for short figures ("12 s" / "12秒") where the KPI tiles want them.
export function formatDuration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return DASH;
  const total = Math.max(0, Math.floor(secs));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (v) => new Intl.NumberFormat(locale(), { minimumIntegerDigits: 2 }).format(v);
  const one = (v) => new Intl.NumberFormat(locale()).format(v);
  return h > 0 ? `${one(h)}:${two(m)}:${two(s)}` : `${one(m)}:${two(s)}`;
}

/// A KPI duration: seconds with a unit, Intl "unit" style ("18 sec" / "18秒").
export function formatSeconds(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return DASH;
  if (secs >= 600) return formatDuration(secs);
  return new Intl.NumberFormat(locale(), {
    style: "unit",
    unit: "second",
    unitDisplay: "narrow",
    maximumFractionDigits: secs < 10 ? 1 : 0,
  }).format(secs);
}

/// Wall-clock time in the switch's time zone.
export function formatClock(ms, timeZone) {
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (timeZone) opts.timeZone = timeZone;
  try {
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  } catch {
    delete opts.timeZone; // an unknown zone name: show local time rather than nothing
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  }
}

export function formatDate(ms, timeZone) {
  const opts = { weekday: "short", year: "numeric", month: "short", day: "numeric" };
  if (timeZone) opts.timeZone = timeZone;
  try {
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  } catch {
    delete opts.timeZone;
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  }
}

/// Caller language codes ("zh", "en") named in the chosen language.
export function formatLanguageName(code) {
  if (!code) return DASH;
  try {
    return new Intl.DisplayNames([locale()], { type: "language" }).of(code) ?? code;
  } catch {
    return code;
  }
}

export function stateLabel(state) {
  return t(`state.${state}`);
}

export function reasonLabel(reason) {
  if (!reason) return "";
  const key = `reason.${reason}`;
  return key in dictionaries[lang] ? t(key) : reason;
}
