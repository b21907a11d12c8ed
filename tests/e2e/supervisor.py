#!/usr/bin/env python3
"""A scripted supervisor softphone on PJSUA2 (issue 10 item 5): dials a monitoring code
such as *311002 at the switch without registering, answering the 407 digest challenge
with its SIP credentials, plays a WAV into the call (looped), records what it hears,
sends RFC 4733 digits on a schedule (1 listen, 2 whisper, 3 barge) and hangs up.

  supervisor.py --uri 'sip:*311002@127.0.0.1:5060' --user 9001 --password demo9001 \
                --play tone.wav --record heard.wav --dtmf '2@8s,3@16s' --hangup-after 24

Prints one summary on exit: {"event": "done", "confirmed": bool, "last_status": N,
"disconnected_by": "local"|"remote"|null, "duration_s": S}. A refused call (403)
ends at once with confirmed false and last_status 403.
"""

import argparse
import os
import sys
import time

import pjsua2 as pj

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from caller import Caller  # noqa: E402
from pjpeer import Peer, emit, log, parse_dtmf_script  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--play")
    ap.add_argument("--record")
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--hangup-after", type=float, default=0.0, help="seconds after CONFIRMED; 0 = wait for BYE")
    ap.add_argument("--max-duration", type=float, default=60.0)
    ap.add_argument("--log-file")
    args = ap.parse_args()

    peer = Peer("udp", port=0, user=args.user, log_file=args.log_file)
    acfg = peer.acfg
    acfg.idUri = f"sip:{args.user}@127.0.0.1:{peer.local_port}"
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.user, 0, args.password))
    acc = pj.Account()
    acc.create(acfg)
    recorder = None
    if args.record:
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(args.record)
    player = None
    if args.play:
        player = pj.AudioMediaPlayer()
        player.createPlayer(args.play, 0)
    call = Caller(acc, recorder, player)
    call.makeCall(args.uri, pj.CallOpParam(True))
    schedule = parse_dtmf_script(args.dtmf) if args.dtmf else []
    sent = 0
    hung_up = False
    deadline = time.monotonic() + args.max_duration
    while time.monotonic() < deadline and call.disconnected_at is None:
        peer.poll(0.02)
        if call.confirmed_at is None:
            continue
        since = time.monotonic() - call.confirmed_at
        while sent < len(schedule) and since >= schedule[sent][0]:
            digits = schedule[sent][1]
            try:
                call.dialDtmf(digits)
                log(f"supervisor sent {digits} at {since:.2f}s")
            except pj.Error as e:
                log(f"dtmf failed: {e.info()}")
            sent += 1
        if args.hangup_after > 0 and not hung_up and since >= args.hangup_after:
            hung_up = True
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error as e:
                log(f"hangup failed: {e.info()}")
    peer.poll(0.3)
    result = {
        "event": "done",
        "confirmed": call.confirmed_at is not None,
        "last_status": call.last_status,
        "disconnected_by": None if call.disconnected_at is None else ("local" if hung_up else "remote"),
        "duration_s": None
        if call.confirmed_at is None
        else round((call.disconnected_at or time.monotonic()) - call.confirmed_at, 2),
    }
    call.player = None
    call.recorder = None
    call = None
    peer.destroy()
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
