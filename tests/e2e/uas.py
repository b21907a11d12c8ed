#!/usr/bin/env python3
"""A scripted SIP answering peer on PJSUA2 (auto-answer, play a WAV, log DTMF).

Plays the role of an agent softphone, and lets caller.py be proven against a
real SIP stack without the switch:

  uas.py --transport both --port 0 --answer-after 1 --play prompt.wav --calls 1

Prints {"event": "listening", "port": N} once ready, then one JSON summary per
run on exit: {"calls": [{call_id, remote, confirmed, digits:[{digit, method}],
disconnected_by, duration_s}]}. Sends 180 Ringing at once and 200 OK after
--answer-after seconds; hangs up --hangup-after seconds after CONFIRMED (0 =
wait for the caller's BYE). Exits after --calls calls or --max-duration.
"""

import argparse
import json
import os
import sys
import time

import pjsua2 as pj

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pjpeer import Peer, dtmf_method_name, emit, log  # noqa: E402


class Incoming(pj.Call):
    def __init__(self, acc, call_id, args):
        pj.Call.__init__(self, acc, call_id)
        self.args = args
        self.arrived = time.monotonic()
        self.answered = False
        self.confirmed_at = None
        self.disconnected_at = None
        self.hangup_sent = False
        self.digits = []
        self.player = None
        self.recorder = None
        self.media_on = False
        ci = self.getInfo()
        self.info = {"call_id": ci.callIdString, "remote": ci.remoteUri}

    def onCallState(self, prm):
        ci = self.getInfo()
        log(f"uas call state {ci.stateText} {ci.lastStatusCode}")
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
                    flags = 0 if self.args.loop else pj.PJMEDIA_FILE_NO_LOOP
                    self.player.createPlayer(self.args.play, flags)
                    self.player.startTransmit(am)
                if self.args.record:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(self.args.record)
                    am.startTransmit(self.recorder)
                log("uas media active")
                return

    # PJSIP >= 2.13 reports both; onDtmfEvent carries the same digit with timing.
    def onDtmfDigit(self, prm):
        self.digits.append({"digit": prm.digit, "method": dtmf_method_name(prm.method)})
        log(f"uas got DTMF {prm.digit} via {dtmf_method_name(prm.method)}")

    def summary(self):
        out = dict(self.info)
        out["confirmed"] = self.confirmed_at is not None
        out["digits"] = self.digits
        out["disconnected_by"] = "local" if self.hangup_sent else ("remote" if self.disconnected_at else None)
        if self.confirmed_at and self.disconnected_at:
            out["duration_s"] = round(self.disconnected_at - self.confirmed_at, 3)
        return out


class Acc(pj.Account):
    def __init__(self, args):
        pj.Account.__init__(self)
        self.args = args
        self.calls = []

    def onIncomingCall(self, prm):
        call = Incoming(self, prm.callId, self.args)
        self.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        log(f"uas incoming {call.info['call_id']}: 180")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", choices=["udp", "tcp", "both"], default="both")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", default="agent")
    ap.add_argument("--answer-after", type=float, default=0.5)
    ap.add_argument("--play", help="WAV played into each answered call")
    ap.add_argument("--loop", action="store_true", help="loop the WAV")
    ap.add_argument("--record", help="WAV for what the UAS hears (last call)")
    ap.add_argument("--hangup-after", type=float, default=0.0)
    ap.add_argument("--calls", type=int, default=1, help="exit after this many calls ended")
    ap.add_argument("--max-duration", type=float, default=60.0)
    ap.add_argument("--max-calls", type=int, default=4, help="concurrent calls (this pjsua2 wheel caps it at 4)")
    ap.add_argument("--json-out")
    ap.add_argument("--log-file")
    args = ap.parse_args()

    peer = Peer(args.transport, port=args.port, user=args.user, log_file=args.log_file, max_calls=args.max_calls)
    acc = Acc(args)
    acc.create(peer.acfg)
    emit({"event": "listening", "port": peer.local_port, "transport": args.transport})
    deadline = time.monotonic() + args.max_duration
    while time.monotonic() < deadline:
        peer.poll(0.02)
        now = time.monotonic()
        for c in acc.calls:
            if not c.answered and c.disconnected_at is None and now - c.arrived >= args.answer_after:
                c.answered = True
                op = pj.CallOpParam()
                op.statusCode = 200
                try:
                    c.answer(op)
                except pj.Error as e:
                    log(f"uas answer failed: {e.info()}")
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
                    log(f"uas hangup failed: {e.info()}")
        ended = [c for c in acc.calls if c.disconnected_at is not None]
        if len(ended) >= args.calls:
            break
    result = {"event": "done", "calls": [c.summary() for c in acc.calls]}
    for c in acc.calls:
        c.player = None
        c.recorder = None
    acc.calls = []
    peer.destroy()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
