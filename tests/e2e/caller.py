#!/usr/bin/env python3
"""A scripted SIP caller on PJSUA2 (a real, independent SIP/RTP stack).

Dials a URI over UDP or TCP from 127.0.0.1 (ephemeral ports), records what it
hears to a WAV, sends DTMF digits on a schedule (RFC 4733 or SIP INFO), hangs
up after a while or waits for the far end's BYE, and prints one JSON summary
on stdout (diagnostics go to stderr).

  caller.py --uri sip:100@127.0.0.1:5060 --transport udp --record /tmp/heard.wav \
            --dtmf '1@8s,1@14s' --dtmf-method rfc4733 --hangup-after 20

DTMF times count from the moment the call is CONFIRMED (200 OK + ACK).
Summary keys: confirmed, state, last_status, last_reason, responses
([{status, at_ms}] from INVITE start), invite_to_180_ms, invite_to_200_ms,
disconnected_by (local|remote|rejected|timeout), duration_s (confirmed ->
disconnected), digits_sent, digits_received, rtp ({rx_pkt, rx_loss, ...}),
wav, audio (audio_check.analyse of the recording, 'speech' true/false).
"""

import argparse
import json
import os
import sys
import time

import pjsua2 as pj

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio_check  # noqa: E402
from pjpeer import Peer, dtmf_method_name, emit, log, parse_dtmf_script  # noqa: E402


class Caller(pj.Call):
    def __init__(self, acc, recorder, player):
        pj.Call.__init__(self, acc)
        self.recorder = recorder
        self.player = player
        self.t0 = time.monotonic()
        self.responses = []
        self.confirmed_at = None
        self.disconnected_at = None
        self.state = "NULL"
        self.last_status = 0
        self.last_reason = ""
        self.media_active = False
        self.audio_media = None
        self.digits_received = []
        self.rtp = None

    def ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def onCallState(self, prm):
        ci = self.getInfo()
        self.state = ci.stateText
        self.last_status = ci.lastStatusCode
        self.last_reason = ci.lastReason
        if ci.state in (pj.PJSIP_INV_STATE_EARLY, pj.PJSIP_INV_STATE_CONNECTING):
            self.responses.append({"status": ci.lastStatusCode, "at_ms": self.ms()})
        log(f"call state {ci.stateText} status {ci.lastStatusCode} {ci.lastReason}")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected_at = time.monotonic()
            if ci.lastStatusCode >= 300 and self.confirmed_at is None:
                self.responses.append({"status": ci.lastStatusCode, "at_ms": self.ms()})

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for idx, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.media_active:
                continue
            self.media_active = True
            self.audio_media = self.getAudioMedia(idx)
            self.media_index = idx
            if self.recorder is not None:
                self.audio_media.startTransmit(self.recorder)
            if self.player is not None:
                self.player.startTransmit(self.audio_media)
            log("media active")

    def onDtmfDigit(self, prm):
        self.digits_received.append({"digit": prm.digit, "method": dtmf_method_name(prm.method), "at_ms": self.ms()})

    def sample_rtp(self):
        """Keeps the latest RTP counters (the stream is gone once the call ends)."""
        if not self.media_active:
            return
        try:
            st = self.getStreamStat(self.media_index)
        except pj.Error:
            return
        rx = st.rtcp.rxStat
        tx = st.rtcp.txStat
        self.rtp = {
            "rx_pkt": rx.pkt,
            "rx_bytes": rx.bytes,
            "rx_loss": rx.loss,
            "rx_discard": rx.discard,
            "rx_dup": rx.dup,
            "rx_reorder": rx.reorder,
            "rx_jitter_mean_us": rx.jitterUsec.mean,
            "tx_pkt": tx.pkt,
        }


def first_status_at(responses, lo, hi):
    for r in responses:
        if lo <= r["status"] <= hi:
            return r["at_ms"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--from-user", default="5551234")
    ap.add_argument("--record", help="WAV file for what the caller hears")
    ap.add_argument("--play", help="WAV file the caller speaks into the call")
    ap.add_argument("--loop", action="store_true", help="repeat --play for the whole call")
    ap.add_argument("--dtmf", default="", help="schedule like '1@8s,12345#@20s' (from CONFIRMED)")
    ap.add_argument("--dtmf-method", choices=["rfc4733", "info"], default="rfc4733")
    ap.add_argument("--info-gap-ms", type=int, default=300, help="spacing of SIP INFO digits")
    ap.add_argument("--hangup-after", type=float, default=0.0, help="seconds after CONFIRMED; 0 = wait for BYE")
    ap.add_argument("--max-duration", type=float, default=60.0, help="hard bound on the whole run")
    ap.add_argument("--json-out", help="also write the summary here")
    ap.add_argument("--log-file", help="PJSIP log (level 5) for debugging")
    args = ap.parse_args()
    try:
        schedule = parse_dtmf_script(args.dtmf)
    except ValueError as e:
        print(f"caller.py: {e}", file=sys.stderr)
        return 2
    if args.dtmf_method == "info":
        # One INFO per digit, spaced, so each is its own transaction in order.
        spaced = []
        for at, digits in schedule:
            for i, d in enumerate(digits):
                spaced.append((at + i * args.info_gap_ms / 1000.0, d))
        schedule = spaced

    peer = Peer(args.transport, user=args.from_user, log_file=args.log_file)
    recorder = None
    if args.record:
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(args.record)
    player = None
    if args.play:
        player = pj.AudioMediaPlayer()
        player.createPlayer(args.play, 0 if args.loop else pj.PJMEDIA_FILE_NO_LOOP)
    acc = pj.Account()
    acc.create(peer.acfg)
    call = Caller(acc, recorder, player)
    uri = args.uri
    if args.transport == "tcp" and ";transport=" not in uri:
        uri += ";transport=tcp"
    deadline = time.monotonic() + args.max_duration
    digits_sent = []
    disconnected_by = None
    hangup_sent = False
    error = None
    try:
        call.makeCall(uri, pj.CallOpParam(True))
    except pj.Error as e:
        error = f"makeCall: {e.info()}"
        call.disconnected_at = time.monotonic()
    last_sample = 0.0
    while call.disconnected_at is None:
        now = time.monotonic()
        if now >= deadline:
            disconnected_by = "timeout"
            break
        peer.poll(0.02)
        if now - last_sample >= 0.5:
            call.sample_rtp()
            last_sample = now
        if call.confirmed_at is None or hangup_sent:
            continue
        since = time.monotonic() - call.confirmed_at
        while schedule and schedule[0][0] <= since:
            _, digits = schedule.pop(0)
            p = pj.CallSendDtmfParam()
            p.digits = digits
            p.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if args.dtmf_method == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
            try:
                call.sendDtmf(p)
                digits_sent.append({"digits": digits, "at_s": round(since, 3), "method": args.dtmf_method})
                log(f"sent DTMF {digits} via {args.dtmf_method}")
            except pj.Error as e:
                error = f"sendDtmf {digits}: {e.info()}"
                log(error)
        if args.hangup_after > 0 and since >= args.hangup_after:
            call.sample_rtp()
            hangup_sent = True
            disconnected_by = "local"
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error as e:
                error = f"hangup: {e.info()}"
    # Bounded wait for the hangup (or the timeout's hangup) to finish.
    if call.disconnected_at is None:
        call.sample_rtp()
        if not hangup_sent:
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error:
                pass
        end = time.monotonic() + 5
        while call.disconnected_at is None and time.monotonic() < end:
            peer.poll(0.05)
    if disconnected_by is None:
        if call.confirmed_at is None:
            disconnected_by = "rejected"
        else:
            disconnected_by = "remote"

    summary = {
        "uri": uri,
        "transport": args.transport,
        "confirmed": call.confirmed_at is not None,
        "state": call.state,
        "last_status": call.last_status,
        "last_reason": call.last_reason,
        "responses": call.responses,
        "invite_to_180_ms": first_status_at(call.responses, 180, 189),
        "invite_to_200_ms": first_status_at(call.responses, 200, 299),
        "disconnected_by": disconnected_by,
        "duration_s": None,
        "digits_sent": digits_sent,
        "digits_received": call.digits_received,
        "rtp": call.rtp,
        "wav": args.record,
        "audio": None,
        "error": error,
    }
    if call.confirmed_at is not None and call.disconnected_at is not None:
        summary["duration_s"] = round(call.disconnected_at - call.confirmed_at, 3)

    # Release media before the library: the recorder finalises its WAV header on delete.
    if player is not None:
        del player
    del call
    if recorder is not None:
        del recorder
    peer.destroy()
    if args.record and os.path.exists(args.record):
        try:
            audio = audio_check.analyse(args.record)
            audio["speech"] = audio_check.is_speech(audio)
            summary["audio"] = audio
        except Exception as e:  # noqa: BLE001 - report, never crash the summary
            summary["audio"] = {"error": str(e)}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f)
    emit(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
