"""Shared PJSUA2 setup for the scripted SIP peers (caller.py, uas.py).

One endpoint per process, driven from the main thread (threadCnt = 0 and
libHandleEvents in our loop) so callbacks never race the script. Audio runs on
the null sound device, everything binds to 127.0.0.1, and only G.711 is offered
so the switch under test sees what a plain desk phone would send.
"""

import json
import os
import sys
import time

import pjsua2 as pj

# PJSIP's native logger writes to fd 1 before libInit applies our log config.
# Keep a private handle on the real stdout for JSON and point fd 1 at stderr.
_json_out = os.fdopen(os.dup(1), "w", buffering=1)
sys.stdout.flush()
os.dup2(2, 1)

# Codecs we keep enabled, highest priority first; everything else is disabled.
G711 = ["PCMU/8000/1", "PCMA/8000/1"]


def log(msg):
    """Diagnostics go to stderr; stdout carries only JSON lines."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(obj):
    _json_out.write(json.dumps(obj) + "\n")
    _json_out.flush()


class Peer:
    """A PJSUA2 endpoint with one SIP transport and one local account."""

    def __init__(self, transport="udp", port=0, user="peer", log_file=None, log_level=0, max_calls=4):
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.maxCalls = max_calls
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = f"ccswitch-e2e-{user}"
        cfg.logConfig.consoleLevel = log_level
        cfg.logConfig.level = 5 if log_file else log_level
        if log_file:
            cfg.logConfig.filename = log_file
        cfg.medConfig.noVad = True
        # No echo canceller: we record exactly what arrives.
        cfg.medConfig.ecTailLen = 0
        self.ep.libInit(cfg)

        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = "127.0.0.1"
        tcfg.publicAddress = "127.0.0.1"
        self.transport = transport
        # "both": UDP and TCP on the same port number, as a switch would listen.
        first = pj.PJSIP_TRANSPORT_TCP if transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.tid = self.ep.transportCreate(first, tcfg)
        self.local_port = int(self.ep.transportGetInfo(self.tid).localName.split(":")[-1])
        if transport == "both":
            tcfg.port = self.local_port
            self.ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self._only_g711()

        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@127.0.0.1:{self.local_port}"
        if transport != "both":
            acfg.sipConfig.transportId = self.tid
        nat = acfg.natConfig
        nat.iceEnabled = False
        nat.sdpNatRewriteUse = 0
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        mt = acfg.mediaConfig.transportConfig
        mt.boundAddress = "127.0.0.1"
        mt.publicAddress = "127.0.0.1"
        mt.port = 0
        mt.randomizePort = True
        self.acfg = acfg

    def _only_g711(self):
        for codec in self.ep.codecEnum2():
            prio = 0
            if codec.codecId in G711:
                prio = 250 - G711.index(codec.codecId)
            self.ep.codecSetPriority(codec.codecId, prio)

    def poll(self, seconds):
        """Runs PJSIP's event loop for about `seconds` (callbacks fire here)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.ep.libHandleEvents(int(min(left, 0.02) * 1000) or 1)

    def destroy(self):
        try:
            self.ep.hangupAllCalls()
            self.poll(0.3)
        except pj.Error:
            pass
        self.ep.libDestroy()


def parse_dtmf_script(script):
    """'1@8s,12345#@20.5s,9@2500ms' -> [(8.0, '1'), (20.5, '12345#'), (2.5, '9')], sorted."""
    steps = []
    if not script:
        return steps
    for part in script.split(","):
        part = part.strip()
        if not part:
            continue
        digits, _, at = part.partition("@")
        if not digits or not at:
            raise ValueError(f"bad DTMF step {part!r}: want DIGITS@TIME like 1@8s")
        for d in digits:
            if d not in "0123456789*#ABCDabcd":
                raise ValueError(f"bad DTMF digit {d!r} in {part!r}")
        if at.endswith("ms"):
            secs = float(at[:-2]) / 1000.0
        elif at.endswith("s"):
            secs = float(at[:-1])
        else:
            secs = float(at)
        steps.append((secs, digits.upper()))
    steps.sort(key=lambda s: s[0])
    return steps


def dtmf_method_name(method):
    if method == pj.PJSUA_DTMF_METHOD_SIP_INFO:
        return "info"
    if method == pj.PJSUA_DTMF_METHOD_RFC2833:
        return "rfc4733"
    return str(method)
