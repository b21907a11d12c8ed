// The live feed: a WebSocket to /api/v1/live (same origin, the session cookie authenticates).
// The first message is a `snapshot`; each `update` carries whole sections that replace ours.
// A closed or failed socket is reopened with exponential backoff (0.5 s doubling to 30 s,
// with jitter), so the page recovers by itself when the switch restarts.

const SECTIONS = ["totals", "queues", "agents", "waiting", "calls", "alerts", "intervals"];
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;

/// Applies one feed message to `model` (null before the first snapshot) and returns the
/// new model, or null when the message cannot be applied (then the client resyncs).
export function applyMessage(model, msg) {
  if (!msg || typeof msg !== "object") return model;
  if (msg.type === "snapshot") {
    const next = { ...msg };
    delete next.type;
    return next;
  }
  if (msg.type === "update") {
    if (!model) return null;
    if (typeof msg.seq === "number" && typeof model.seq === "number" && msg.seq !== model.seq + 1) {
      return null; // a gap: our copy may be stale
    }
    const next = { ...model, seq: msg.seq ?? model.seq, at: msg.at ?? model.at };
    for (const key of SECTIONS) if (key in msg) next[key] = msg[key];
    return next;
  }
  return model; // unknown message types are ignored
}

export class LiveFeed {
  /// `onModel(model)` after every applied message; `onStatus({state, retryInMs})` with
  /// state "connecting" | "live" | "waiting"; `onClosedUnauthorized()` when the session is gone.
  constructor({ url, onModel, onStatus, checkSession }) {
    this.url = url;
    this.onModel = onModel;
    this.onStatus = onStatus;
    this.checkSession = checkSession;
    this.model = null;
    this.socket = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000);
      this.socket = null;
    }
    this.model = null;
  }

  connect() {
    if (this.stopped) return;
    this.onStatus({ state: "connecting" });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      const next = applyMessage(this.model, msg);
      if (next === null) {
        socket.close(4000, "resync"); // reconnect for a fresh snapshot
        return;
      }
      if (msg.type === "snapshot") {
        this.failures = 0;
        this.onStatus({ state: "live" });
      }
      this.model = next;
      this.onModel(next);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.socket = null;
      this.scheduleReconnect();
    };
    socket.onerror = () => {
      // onclose follows and schedules the retry
    };
  }

  async scheduleReconnect() {
    if (this.stopped) return;
    this.failures += 1;
    // After a few failures, ask whether we are still signed in: a WebSocket refused with
    // 401 looks like any other failure from here.
    if (this.failures >= 2 && this.checkSession) {
      const signedIn = await this.checkSession();
      if (signedIn === false || this.stopped) return;
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures - 1, 10));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.onStatus({ state: "waiting", retryInMs: delay, since: Date.now() });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

export function liveUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/v1/live`;
}
