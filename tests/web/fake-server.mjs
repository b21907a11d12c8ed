// A stand-in switch for working on the page without SIP: serves web/ like src/api/web.rs,
// the session routes (any user, password "ccswitch-demo"; user "viewer" gets the viewer
// role) and a live feed (a snapshot, then an update every second). Not used by the tests.
//   node tests/web/fake-server.mjs [port]      then open http://127.0.0.1:PORT/

import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, dirname, extname } from "node:path";
import { fileURLToPath } from "node:url";

const port = Number(process.argv[2] || 8089);
const webDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "web");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
const sessions = new Map();

const now = Date.now();
const min = 60000;
function snapshot() {
  const t = Date.now();
  const dayStart = t - (t % 86400000) - 8 * 3600000;
  const intervals = [];
  for (let s = dayStart + 8 * 3600000; s < t && intervals.length < 40; s += 15 * min) {
    const offered = 5 + (intervals.length % 7) * 3;
    const abandoned = intervals.length % 4;
    intervals.push({ start: s, offered, answered: offered - abandoned, abandoned, service_level_pct: 60 + ((intervals.length * 7) % 40) });
  }
  return {
    type: "snapshot", seq: 0, at: t, day_start: dayStart, time_zone: "Asia/Shanghai",
    targets: { service_level_pct: 80, service_level_secs: 20, frt_secs: 20, aht_secs: 300, abandon_pct: 5, containment_pct: 60, three_ring_pct: 100, csat_pct: 90, response_rate_pct: 80, asa_secs: 20, not_ready_max_secs: 900 },
    totals: { offered: 312, answered: 290, abandoned: 22, service_level_pct: 78.4, asa_secs: 14.2, frt_secs: 16.8, aht_secs: 241.5, abandon_pct: 7.1, containment_pct: 64.0, three_ring_pct: 97.0, csat_pct: null, response_rate_pct: null },
    queues: [
      { name: "sales", label: "Sales 销售", waiting: 2, longest_wait_since: now - 47000, agents: { logged_in: 3, ready: 0, reserved: 0, on_call: 2, wrap_up: 0, not_ready: 1 }, staffing: { needed: 4, arrivals_last_hour: 40, aht_secs: 210 }, today: { offered: 200, answered: 188, abandoned: 12, service_level_pct: 82.1 } },
      { name: "support", waiting: 1, longest_wait_since: now - 12000, agents: { logged_in: 2, ready: 1, reserved: 0, on_call: 0, wrap_up: 1, not_ready: 0 }, staffing: { needed: 2, arrivals_last_hour: 12, aht_secs: 300 }, today: { offered: 112, answered: 102, abandoned: 10, service_level_pct: 71.0 } },
    ],
    agents: [
      { extension: "1001", name: "Ann", state: "on_call", reason: null, since: now - 95000, queues: ["sales"], call: { call_id: "c1", queue: "sales", since: now - 95000 }, calls_today: 31, aht_secs_today: 200.5 },
      { extension: "1002", name: "王芳", state: "on_call", reason: null, since: now - 20000, queues: ["sales"], call: { call_id: "c5", queue: "sales", since: now - 20000 }, calls_today: 28, aht_secs_today: 233 },
      { extension: "1003", name: "Li Wei", state: "not_ready", reason: "break", since: now - 1000 * 1000, queues: ["sales"], call: null, calls_today: 19, aht_secs_today: 260 },
      { extension: "1004", name: "Bob", state: "ready", reason: null, since: now - 30000, queues: ["support"], call: null, calls_today: 22, aht_secs_today: 310 },
      { extension: "1005", name: "张伟", state: "wrap_up", reason: null, since: now - 8000, queues: ["support"], call: null, calls_today: 25, aht_secs_today: 280 },
      { extension: "1006", name: "Eve", state: "logged_out", reason: null, since: now - 3600000, queues: ["support"], call: null, calls_today: 0, aht_secs_today: null },
    ],
    waiting: [
      { call_id: "c2", number: "138****5678", language: "zh", queue: "sales", since: now - 47000, position: 1, vip: true },
      { call_id: "c3", number: "139****0001", language: "en", queue: "sales", since: now - 9000, position: 2, vip: false },
      { call_id: "c4", number: "+44****1234", language: "en", queue: "support", since: now - 12000, position: 1, vip: false },
    ],
    calls: [],
    alerts: [
      { kind: "service_level_low", queue: "support", agent: null, call_id: null, since: now - 300000, value: 71.0, threshold: 80.0 },
      { kind: "wait_over_frt", queue: "sales", agent: null, call_id: "c2", since: now - 47000, value: null, threshold: 20 },
      { kind: "agent_not_ready_long", queue: null, agent: "1003", call_id: null, since: now - 1000 * 1000, value: null, threshold: 900 },
    ],
    intervals,
  };
}

function wsFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 255]) : null;
  if (!head) {
    const h = Buffer.alloc(10);
    h[0] = 0x81; h[1] = 127; h.writeBigUInt64BE(BigInt(n), 2);
    return Buffer.concat([h, payload]);
  }
  return Buffer.concat([head, payload]);
}

function sessionOf(req) {
  const m = /ccswitch_session=([^;]+)/.exec(req.headers.cookie || "");
  return m ? sessions.get(m[1]) : undefined;
}

function json(res, status, body, type = "application/json") {
  res.writeHead(status, { "Content-Type": type });
  res.end(JSON.stringify(body));
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/" || url.pathname.startsWith("/assets/")) {
    const rel = url.pathname === "/" ? "index.html" : url.pathname.slice(8);
    try {
      const body = await readFile(join(webDir, rel));
      res.writeHead(200, {
        "Content-Type": TYPES[extname(rel)] || "application/octet-stream",
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      });
      return res.end(body);
    } catch {
      return json(res, 404, { type: "not-found", title: "Not found" }, "application/problem+json");
    }
  }
  if (url.pathname === "/api/v1/session") {
    if (req.method === "POST") {
      let body = "";
      for await (const c of req) body += c;
      const { user, password } = JSON.parse(body || "{}");
      if (password !== "ccswitch-demo") return json(res, 401, { type: "sign-in-failed", title: "Sign-in failed", detail: "wrong user or password" }, "application/problem+json");
      const id = randomBytes(8).toString("hex");
      const viewer = user === "viewer";
      const s = { user, role: viewer ? "viewer" : "admin", permissions: viewer ? ["view_live"] : ["view_live", "agent_commands"], csrf_token: randomBytes(8).toString("hex"), expires_at: Date.now() + 3600000 };
      sessions.set(id, s);
      res.setHeader("Set-Cookie", `ccswitch_session=${id}; HttpOnly; SameSite=Strict; Path=/`);
      return json(res, 200, s);
    }
    const s = sessionOf(req);
    if (!s) return json(res, 401, { type: "unauthorized", title: "Sign in first" }, "application/problem+json");
    if (req.method === "DELETE") return json(res, 200, {});
    return json(res, 200, s);
  }
  const cmd = /^\/api\/v1\/agents\/([^/]+)\/state$/.exec(url.pathname);
  if (cmd && req.method === "POST") {
    const s = sessionOf(req);
    if (!s || req.headers["x-csrf-token"] !== s.csrf_token) return json(res, 403, { type: "csrf-token-invalid", title: "CSRF" }, "application/problem+json");
    let body = "";
    for await (const c of req) body += c;
    const { state, reason } = JSON.parse(body);
    const a = current.agents.find((x) => x.extension === cmd[1]);
    if (!a) return json(res, 404, { type: "not-found", title: "Not found", detail: "unknown agent" }, "application/problem+json");
    Object.assign(a, { state, reason: reason || null, since: Date.now(), call: null });
    pending.agents = true;
    return json(res, 202, { accepted: true });
  }
  json(res, 404, { type: "not-found", title: "Not found" }, "application/problem+json");
});

let current = snapshot();
const pending = {};
const clients = new Set();
server.on("upgrade", (req, socket) => {
  if (!sessionOf(req)) {
    socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
    return;
  }
  const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  const client = { socket, seq: 0 };
  clients.add(client);
  socket.write(wsFrame(JSON.stringify({ ...current, type: "snapshot", seq: 0, at: Date.now() })));
  socket.on("close", () => clients.delete(client));
  socket.on("error", () => clients.delete(client));
  socket.on("data", (d) => {
    if ((d[0] & 0x0f) === 8) socket.end();
  });
});

setInterval(() => {
  const msg = { type: "update", at: Date.now() };
  if (pending.agents) {
    msg.agents = current.agents;
    delete pending.agents;
  }
  current.totals = { ...current.totals, offered: current.totals.offered + 1 };
  msg.totals = current.totals;
  for (const c of clients) {
    c.seq += 1;
    c.socket.write(wsFrame(JSON.stringify({ ...msg, seq: c.seq })));
  }
}, 1000);

server.listen(port, "127.0.0.1", () => console.log(`fake switch on http://127.0.0.1:${port}/`));
