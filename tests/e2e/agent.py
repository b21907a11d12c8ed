#!/usr/bin/env python3
"""A scripted agent softphone on PJSUA2: registers with digest auth, rings, answers
after a delay (or never), records what it hears, plays a WAV into the call.

  agent.py --registrar sip:127.0.0.1:5060 --user 1001 --password demo1001 \
           --answer-after 2 --record /tmp/agent.wav --play speech.wav --max-duration 60

--transport tcp registers (and takes calls) over one TCP connection instead of UDP.

Prints {"event": "registered", "code": 200} once the registrar accepted it (or
{"event": "register_failed", "code": N}), then one summary on exit:
{"event": "done", "registered": bool, "calls": [{call_id, remote, x_caller,
x_queue, via, confirmed, cancelled, disconnected_by, duration_s}]}.
--answer-after < 0 never answers (the switch's ring timeout CANCELs the offer).
--dial CODE calls CODE at the registrar once registered (digest 407 answered with the
same credentials) and exits when the switch hangs up; the summary gains "dialled".
With --dial-after-calls it dials only once --calls calls have ended (a disposition code
like *42 in wrap-up), then exits when the switch hangs up that call.
Exits after --calls calls have ended (answered or cancelled), or at --max-duration.
"""

import argparse
import os
import re
import sys
import time

import pjsua2 as pj

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pjpeer import Peer, emit, log  # noqa: E402


def header(msg, name):
    m = re.search(rf"^{re.escape(name)}:\s*(.*?)\r?$", msg, re.MULTILINE | re.IGNORECASE)
    return m.group(1).strip() if m else None


class Incoming(pj.Call):
    def __init__(self, acc, call_id, args, invite):
        pj.Call.__init__(self, acc, call_id)
        self.args = args
        self.arrived = time.monotonic()
        self.answered = False
        self.confirmed_at = None
        self.disconnected_at = None
        self.hangup_sent = False
        self.last_status = 0
        self.player = None
        self.recorder = None
        self.media_on = False
        ci = self.getInfo()
        self.info = {
            "call_id": ci.callIdString,
            "remote": ci.remoteUri,
            "x_caller": header(invite, "X-Caller"),
            "x_queue": header(invite, "X-Queue"),
            # The switch's Via: which transport the offer came over.
            "via": header(invite, "Via") or header(invite, "v"),
        }

    def onCallState(self, prm):
        ci = self.getInfo()
        self.last_status = ci.lastStatusCode
        log(f"agent call state {ci.stateText} {ci.lastStatusCode}")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected_at = time.monotonic()

    def onCallMediaState(self, prm):
        if self.media_on:
            return
        ci = self.getInfo()
        for idx, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media_on = True
                am = self.getAudioMedia(idx)
                if self.args.play:
                    self.player = pj.AudioMediaPlayer()
                    self.player.createPlayer(self.args.play, 0)
                    self.player.startTransmit(am)
                if self.args.record:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(self.args.record)
                    am.startTransmit(self.recorder)
                log("agent media active")
                return

    def summary(self):
        out = dict(self.info)
        out["confirmed"] = self.confirmed_at is not None
        # Ended before we answered: the switch withdrew the offer (CANCEL -> 487).
        out["cancelled"] = self.confirmed_at is None and self.disconnected_at is not None
        out["disconnected_by"] = "local" if self.hangup_sent else ("remote" if self.disconnected_at else None)
        if self.confirmed_at and self.disconnected_at:
            out["duration_s"] = round(self.disconnected_at - self.confirmed_at, 3)
        return out


class Outgoing(pj.Call):
    """The agent's own call to a feature code."""

    def __init__(self, acc):
        pj.Call.__init__(self, acc)
        self.confirmed = False
        self.disconnected = False
        self.last_status = 0

    def onCallState(self, prm):
        ci = self.getInfo()
        self.last_status = ci.lastStatusCode
        log(f"agent dial state {ci.stateText} {ci.lastStatusCode}")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True


class Acc(pj.Account):
    def __init__(self, args):
        pj.Account.__init__(self)
        self.args = args
        self.calls = []
        self.registered = False
        self.reg_code = None

    def onRegState(self, prm):
        self.reg_code = prm.code
        log(f"agent {self.args.user} registration {prm.code} {prm.reason}")
        if prm.code == 200 and not self.registered:
            self.registered = True
            emit({"event": "registered", "code": prm.code})
        elif prm.code >= 300:
            emit({"event": "register_failed", "code": prm.code})

    def onIncomingCall(self, prm):
        call = Incoming(self, prm.callId, self.args, prm.rdata.wholeMsg)
        self.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        log(f"agent incoming {call.info}: 180")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registrar", required=True, help="sip:host:port of the switch")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp",
                    help="SIP transport for REGISTER and calls (tcp adds ;transport=tcp to the registrar)")
    ap.add_argument("--user", required=True, help="extension (digest username)")
    ap.add_argument("--password", required=True)
    ap.add_argument("--expires", type=int, default=300)
    ap.add_argument("--answer-after", type=float, default=1.0, help="< 0: never answer")
    ap.add_argument("--play", help="WAV played into each answered call (looped)")
    ap.add_argument("--record", help="WAV for what the agent hears (last call)")
    ap.add_argument("--hangup-after", type=float, default=0.0, help="0 = wait for the BYE")
    ap.add_argument("--linger", type=float, default=0.0,
                    help="stay registered this many seconds after the last call (wrap-up)")
    ap.add_argument("--calls", type=int, default=1, help="exit after this many calls ended (answered or cancelled)")
    ap.add_argument("--max-duration", type=float, default=60.0)
    ap.add_argument("--dial", help="after registering, call this user at the registrar (a feature code like *22) and wait for the far end to hang up")
    ap.add_argument("--dial-after-calls", action="store_true",
                    help="dial --dial only after --calls calls ended (in wrap-up), then exit")
    ap.add_argument("--log-file")
    args = ap.parse_args()

    peer = Peer(args.transport, port=0, user=args.user, log_file=args.log_file)
    acfg = peer.acfg
    registrar = args.registrar + (";transport=tcp" if args.transport == "tcp" else "")
    acfg.regConfig.registrarUri = registrar
    acfg.regConfig.timeoutSec = args.expires
    acfg.regConfig.retryIntervalSec = 5
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.user, 0, args.password))
    acc = Acc(args)
    acc.create(acfg)
    deadline = time.monotonic() + args.max_duration
    dialled = None
    while time.monotonic() < deadline:
        peer.poll(0.02)
        now = time.monotonic()
        ended = [c for c in acc.calls if c.disconnected_at is not None]
        calls_done = args.calls > 0 and len(ended) >= args.calls
        dial_now = not args.dial_after_calls or calls_done
        if args.dial and acc.registered and dialled is None and dial_now:
            host = registrar.split(":", 1)[1]
            dialled = Outgoing(acc)
            dialled.makeCall(f"sip:{args.dial}@{host}", pj.CallOpParam(True))
        if dialled is not None and dialled.disconnected and (args.dial_after_calls or not acc.calls):
            break
        for c in acc.calls:
            if (
                args.answer_after >= 0
                and not c.answered
                and c.disconnected_at is None
                and now - c.arrived >= args.answer_after
            ):
                c.answered = True
                op = pj.CallOpParam()
                op.statusCode = 200
                try:
                    c.answer(op)
                except pj.Error as e:
                    log(f"agent answer failed: {e.info()}")
            if (
                args.hangup_after > 0
                and c.confirmed_at is not None
                and c.disconnected_at is None
                and not c.hangup_sent
                and now - c.confirmed_at >= args.hangup_after
            ):
                c.hangup_sent = True
                try:
                    c.hangup(pj.CallOpParam())
                except pj.Error as e:
                    log(f"agent hangup failed: {e.info()}")
        ended = [c for c in acc.calls if c.disconnected_at is not None]
        if args.calls > 0 and len(ended) >= args.calls and not (args.dial and args.dial_after_calls):
            break
    if args.linger > 0:
        # Unregistering logs the agent out, which ends wrap-up at once: stay through it.
        peer.poll(args.linger)
    result = {"event": "done", "registered": acc.registered, "calls": [c.summary() for c in acc.calls]}
    if dialled is not None:
        result["dialled"] = {
            "confirmed": dialled.confirmed,
            "disconnected": dialled.disconnected,
            "last_status": dialled.last_status,
        }
        dialled = None
    for c in acc.calls:
        c.player = None
        c.recorder = None
    acc.calls = []
    try:
        acc.setRegistration(False)
        peer.poll(0.5)
    except pj.Error:
        pass
    peer.destroy()
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
