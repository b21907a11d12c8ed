// The browser phone of the agent desk: JsSIP (vendored, web/vendor/jssip.esm.js) registered
// over SIP-over-WebSocket at /sip with the agent's extension and password, exactly like a
// desk phone. One call at a time: ring, answer, call out (a feature code), mute, hold,
// blind transfer (REFER, as the switch supports for SIP phones), hang up. Media is WebRTC in
// the browser; the switch's side of it comes with its WebRTC media (issue 10 item 2).

import JsSIP from "../../vendor/jssip.esm.js";

/// The engine's call id and the offer's details, from the INVITE's X- headers.
export function offerInfo(request) {
  const h = (name) => {
    try {
      return request.getHeader(name) || null;
    } catch {
      return null;
    }
  };
  return {
    callId: h("X-Call-Id"),
    queue: h("X-Queue"),
    language: h("X-Language"),
    ivrPath: h("X-IVR-Path"),
    // A supervisor's monitoring call (the wallboard's browser phone): the mode and agent.
    monitorMode: h("X-Monitor-Mode"),
    agent: h("X-Agent"),
  };
}

export class Phone {
  /// `events`: {status(state), incoming(info), progress(phase: calling | talking | held),
  /// ended(cause, wasTalking), remoteStream(stream)}. `iceServers`: the session's STUN/TURN
  /// servers (an agent behind NAT reaches the switch through them).
  constructor({ extension, password, events, micStream, iceServers }) {
    this.extension = extension;
    this.iceServers = iceServers || [];
    this.password = password;
    this.events = events;
    this.micStream = micStream || null;
    this.ua = null;
    this.session = null;
    this.talking = false;
    this.muted = false;
    this.held = false;
    this.remote = null;
  }

  start() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new JsSIP.WebSocketInterface(`${scheme}//${location.host}/sip`);
    const domain = location.hostname;
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${this.extension}@${domain}`,
      authorization_user: this.extension,
      password: this.password,
      register: true,
      register_expires: 300,
      session_timers: false,
      user_agent: "ccswitch-agent-desk",
    });
    this.domain = domain;
    this.ua.on("connecting", () => this.events.status("connecting"));
    this.ua.on("disconnected", () => this.events.status("disconnected"));
    this.ua.on("registered", () => this.events.status("registered"));
    this.ua.on("unregistered", () => this.events.status("failed"));
    this.ua.on("registrationFailed", () => this.events.status("failed"));
    this.ua.on("newRTCSession", (e) => this.onSession(e));
    this.ua.start();
  }

  stop() {
    if (this.session) {
      try {
        this.session.terminate();
      } catch {
        // already over
      }
    }
    if (this.ua) this.ua.stop();
    this.ua = null;
  }

  onSession(e) {
    const session = e.session;
    const outgoing = session.direction === "outgoing";
    if (!outgoing && this.session) {
      session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
      return;
    }
    this.session = session;
    this.talking = false;
    this.muted = false;
    this.held = false;
    // An outgoing call's peer connection exists already (JsSIP makes it before this event).
    if (outgoing && session.connection) this.watchTracks(session.connection);
    else session.on("peerconnection", (ev) => this.watchTracks(ev.peerconnection));
    session.on("accepted", () => {
      this.talking = true;
      this.events.progress("talking");
    });
    session.on("confirmed", () => this.events.progress("talking"));
    session.on("hold", () => {
      this.held = true;
      this.events.progress("held");
    });
    session.on("unhold", () => {
      this.held = false;
      this.events.progress("talking");
    });
    const over = (cause) => {
      if (this.session !== session) return;
      const wasTalking = this.talking;
      this.session = null;
      this.talking = false;
      this.events.ended(cause, wasTalking);
    };
    session.on("ended", (ev) => over(ev.cause));
    session.on("failed", (ev) => over(ev.cause));
    if (outgoing) this.events.progress("calling");
    else this.events.incoming(offerInfo(e.request));
  }

  watchTracks(pc) {
    pc.addEventListener("track", (ev) => {
      const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      this.remote = stream;
      this.events.remoteStream(stream);
    });
  }

  /// What answering or calling sends: the microphone stream we have, or a new one.
  mediaOptions() {
    const opts = { pcConfig: { iceServers: this.iceServers } };
    if (this.micStream) opts.mediaStream = this.micStream;
    else opts.mediaConstraints = { audio: true, video: false };
    return opts;
  }

  answer() {
    if (!this.session) return;
    this.session.answer(this.mediaOptions());
  }

  /// Calls `target` (a feature code such as *311002, a queue number, an extension). False
  /// when not registered or already on a call.
  call(target) {
    if (!this.ua || this.session || !this.ua.isRegistered()) return false;
    this.ua.call(`sip:${target}@${this.domain}`, this.mediaOptions());
    return true;
  }

  decline() {
    if (this.session) this.session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
  }

  hangUp() {
    if (this.session) this.session.terminate();
  }

  toggleMute() {
    if (!this.session || !this.talking) return this.muted;
    if (this.muted) this.session.unmute({ audio: true });
    else this.session.mute({ audio: true });
    this.muted = !this.muted;
    return this.muted;
  }

  toggleHold() {
    // A re-INVITE (sendonly; JsSIP also disables the microphone track): the switch answers
    // it from its WebRTC session and plays the caller hold audio until the unhold.
    if (!this.session || !this.talking) return this.held;
    if (this.held) this.session.unhold();
    else this.session.hold();
    return !this.held;
  }

  /// Sends a digit as an RFC 4733 event in the media (a monitoring call's 1/2/3 switch
  /// listen / whisper / barge).
  sendDigit(digit) {
    if (!this.session || !this.talking) return false;
    this.session.sendDTMF(digit, { transportType: "RFC2833", duration: 160 });
    return true;
  }

  /// Blind transfer to a queue name or an agent's extension (REFER).
  transfer(target) {
    if (!this.session || !this.talking) return false;
    this.session.refer(`sip:${target}@${this.domain}`);
    return true;
  }
}
