// A JsSIP agent over SIP-over-WebSocket (RFC 7118) for ccswitch's e2e tests
// (tests/e2e/sipws.rs). It registers with digest like the browser agent page will, then
// reports each incoming INVITE (JsSIP's newRTCSession) and answers it as told. Media is
// not its business: node has no WebRTC, so the RTCPeerConnection JsSIP looks for is a
// stub and no call is ever answered with 200.
//
// Usage: node agent.js --url ws://127.0.0.1:8080/sip --user 1001 --password demo1001
//          --domain 127.0.0.1 [--reject 486] [--origin http://127.0.0.1:8080]
//          [--max-seconds 120]
// Prints one JSON object per line on stdout: {"event":"registered"},
// {"event":"registration_failed","cause":...}, {"event":"invite",...},
// {"event":"ended","cause":...}, {"event":"disconnected"}.
'use strict';

const WebSocket = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const url = arg('url');
const user = arg('user');
const password = arg('password');
const domain = arg('domain', '127.0.0.1');
const reject = Number(arg('reject', '0'));
const origin = arg('origin');
const maxSeconds = Number(arg('max-seconds', '120'));

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// JsSIP's WebSocketInterface opens `new WebSocket(url, 'sip')`: the `ws` package does,
// with the Origin a browser page would send.
global.WebSocket = class extends WebSocket {
  constructor(u, protocols) {
    super(u, protocols, origin ? { origin } : {});
  }
};
// JsSIP refuses INVITEs (488) without WebRTC; the offer is all these tests look at.
global.window = { RTCPeerConnection: class RTCPeerConnectionStub {} };

const JsSIP = require('jssip');

const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: `sip:${user}@${domain}`,
  authorization_user: user,
  password,
  register: true,
  register_expires: 300,
  session_timers: false,
  connection_recovery_min_interval: 60,
  connection_recovery_max_interval: 60,
});

ua.on('registered', () => emit({ event: 'registered' }));
ua.on('registrationFailed', (e) => emit({ event: 'registration_failed', cause: e.cause }));
ua.on('disconnected', () => emit({ event: 'disconnected' }));
ua.on('newRTCSession', (e) => {
  if (e.originator !== 'remote') {
    return;
  }
  const req = e.request;
  emit({
    event: 'invite',
    call_id: req.call_id,
    via: req.getHeader('Via'),
    contact: req.getHeader('Contact'),
    x_queue: req.getHeader('X-Queue') || null,
    x_caller: req.getHeader('X-Caller') || null,
    sdp: typeof req.body === 'string' && req.body.startsWith('v=0'),
  });
  const session = e.session;
  session.on('ended', (ev) => emit({ event: 'ended', cause: ev.cause }));
  session.on('failed', (ev) => emit({ event: 'failed', cause: ev.cause, originator: ev.originator }));
  if (reject > 0) {
    session.terminate({ status_code: reject });
  }
});

ua.start();

function stop() {
  try {
    ua.stop();
  } catch (e) {
    // already stopped
  }
  setTimeout(() => process.exit(0), 500);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000);
