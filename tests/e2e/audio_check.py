#!/usr/bin/env python3
"""Is a recording speech or silence?

Reads a 16-bit PCM WAV (what PJSUA2's recorder writes), cuts it into 20 ms
windows and reports overall RMS, peak, and how much of it is "voiced" (window
RMS above a floor). Speech from espeak-ng prompts gives long voiced stretches;
silence, comfort noise or a dead RTP stream give none.

With --reference PROMPT.wav it also finds where the prompt's energy envelope best
matches the recording (normalised correlation and lag): proof that this prompt,
not just any sound, reached the caller.

With --hears HZ (and --not-hears HZ,...) it answers "whose signal is this?": each
party of a call plays its own sine tone, and a Goertzel filter per tone measures
which share of the recording's energy (within --start/--end seconds) sits at each
tone. The recording must be dominated by the HZ tone (the other party), carry
next to nothing at the --not-hears tones (its own signal echoed back, or a third
party), and the HZ tone must carry most of the energy (so hold music or prompts
are not what made the sound).

Usage: audio_check.py FILE.wav [--min-voiced-s 0.5] [--floor 300]
                      [--reference PROMPT.wav [--max-lag-s S] [--min-correlation 0.7]]
       audio_check.py FILE.wav --hears HZ [--not-hears HZ,HZ] [--start S] [--end S]
                      [--min-present 0.6] [--min-share 0.6] [--max-foreign-share 0.05]
Prints one JSON object; exit 0 if the file holds speech (and matches the
reference / hears whom it should), 1 if not, 2 on error.
Plain Python (wave + array): no audioop, which is gone from Python 3.13.
"""

import argparse
import array
import json
import math
import sys
import wave


def analyse(path, floor=300.0):
    with wave.open(path, "rb") as w:
        channels = w.getnchannels()
        width = w.getsampwidth()
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: want 16-bit PCM, got {width * 8}-bit")
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    window = max(1, rate // 50)  # 20 ms
    voiced = 0
    windows = 0
    total_sq = 0.0
    peak = 0
    first_voiced_s = None
    longest_run = 0
    run = 0
    for start in range(0, len(samples) - window + 1, window):
        chunk = samples[start : start + window]
        sq = sum(s * s for s in chunk)
        total_sq += sq
        peak = max(peak, max(abs(s) for s in chunk))
        windows += 1
        if math.sqrt(sq / window) >= floor:
            voiced += 1
            run += 1
            longest_run = max(longest_run, run)
            if first_voiced_s is None:
                first_voiced_s = (start / rate)
        else:
            run = 0
    n = windows * window
    return {
        "file": path,
        "rate": rate,
        "duration_s": round(len(samples) / rate, 3) if rate else 0.0,
        "rms": round(math.sqrt(total_sq / n), 1) if n else 0.0,
        "peak": peak,
        "voiced_s": round(voiced * window / rate, 3) if rate else 0.0,
        "voiced_fraction": round(voiced / windows, 3) if windows else 0.0,
        "longest_voiced_run_s": round(longest_run * window / rate, 3) if rate else 0.0,
        "first_voiced_s": None if first_voiced_s is None else round(first_voiced_s, 3),
    }


def envelope(path):
    """Log energy per 20 ms window (rate independent, so recordings at 16 kHz line up
    with 8 kHz prompts)."""
    with wave.open(path, "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: want 16-bit PCM, got {width * 8}-bit")
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    window = max(1, rate // 50)
    env = []
    for start in range(0, len(samples) - window + 1, window):
        chunk = samples[start : start + window]
        env.append(math.log10(1.0 + math.sqrt(sum(s * s for s in chunk) / window)))
    return env


def _pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va <= 0 or vb <= 0:
        return 0.0
    return cov / math.sqrt(va * vb)


def correlate(recording, reference, max_lag_s=None):
    """Best normalised correlation of the reference's energy envelope against the
    recording at any lag (or up to max_lag_s): ~0.9 when the reference was played
    into the call, well under 0.5 for other speech or silence."""
    rec, ref = envelope(recording), envelope(reference)
    if not ref or len(rec) < len(ref):
        return {"correlation": 0.0, "lag_s": None}
    last = len(rec) - len(ref)
    if max_lag_s is not None:
        last = min(last, int(max_lag_s * 50))
    best, best_lag = -1.0, 0
    for lag in range(0, last + 1):
        c = _pearson(rec[lag : lag + len(ref)], ref)
        if c > best:
            best, best_lag = c, lag
    return {"correlation": round(best, 3), "lag_s": round(best_lag / 50.0, 2)}


def read_mono(path):
    with wave.open(path, "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: want 16-bit PCM, got {width * 8}-bit")
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) - len(frames) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    return samples, rate


def goertzel_power(chunk, coeff):
    """|X(f)|^2 of one window at the frequency whose 2*cos(2*pi*f/rate) is coeff."""
    s1 = s2 = 0.0
    for x in chunk:
        s0 = x + coeff * s1 - s2
        s2 = s1
        s1 = s0
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_shares(path, tones, start_s=0.0, end_s=None, floor=300.0):
    """Per tone: the share of the window's energy at that tone (energy-weighted over
    the 20 ms windows between start_s and end_s), and the fraction of voiced windows
    (RMS >= floor) in which that tone holds more than half of the energy.
    A pure tone gives share ~1.0; speech, music or noise give a few per cent."""
    samples, rate = read_mono(path)
    window = max(1, rate // 50)
    first = int(max(0.0, start_s) * rate)
    last = len(samples) if end_s is None else min(len(samples), int(end_s * rate))
    coeffs = {t: 2.0 * math.cos(2.0 * math.pi * t / rate) for t in tones}
    total = 0.0
    at_tone = {t: 0.0 for t in tones}
    dominant = {t: 0 for t in tones}
    windows = voiced = 0
    for begin in range(first, last - window + 1, window):
        chunk = samples[begin : begin + window]
        energy = float(sum(x * x for x in chunk))
        windows += 1
        total += energy
        loud = math.sqrt(energy / window) >= floor
        voiced += loud
        for t, c in coeffs.items():
            # Energy of a sine at the bin: |X|^2 = (A*N/2)^2, sum x^2 = A^2*N/2.
            e = 2.0 * goertzel_power(chunk, c) / window
            at_tone[t] += e
            if loud and e > 0.5 * energy:
                dominant[t] += 1
    return {
        "window_s": [round(first / rate, 2), round(last / rate, 2)],
        "windows": windows,
        "voiced_windows": voiced,
        "rms": round(math.sqrt(total / (windows * window)), 1) if windows else 0.0,
        "tones": {
            str(t): {
                "share": round(at_tone[t] / total, 3) if total > 0 else 0.0,
                "present": round(dominant[t] / windows, 3) if windows else 0.0,
            }
            for t in tones
        },
    }


def hears_check(result, hears, not_hears, min_present=0.6, min_share=0.6, max_foreign_share=0.05):
    """The verdict and, when it fails, why (one reason per failed clause)."""
    tones = result["tones"]
    reasons = []
    own = tones[str(hears)]
    if own["present"] < min_present:
        reasons.append(f"{hears} Hz dominates only {own['present']:.0%} of the windows (want {min_present:.0%})")
    if own["share"] < min_share:
        reasons.append(
            f"{hears} Hz carries only {own['share']:.0%} of the energy (want {min_share:.0%}): something else is loud"
        )
    for t in not_hears:
        if tones[str(t)]["share"] > max_foreign_share:
            reasons.append(f"{t} Hz carries {tones[str(t)]['share']:.0%} of the energy (want <= {max_foreign_share:.0%})")
    return reasons


def is_speech(result, min_voiced_s=0.5):
    return result["voiced_s"] >= min_voiced_s and result["rms"] > 30.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wav")
    ap.add_argument("--min-voiced-s", type=float, default=0.5)
    ap.add_argument("--floor", type=float, default=300.0, help="window RMS counted as voiced (int16 units)")
    ap.add_argument("--reference", help="WAV that should be in the recording (e.g. the greeting prompt)")
    ap.add_argument("--max-lag-s", type=float, help="only look for the reference this early")
    ap.add_argument("--min-correlation", type=float, default=0.7)
    ap.add_argument("--hears", type=float, help="tone (Hz) of the party this recording must carry")
    ap.add_argument("--not-hears", default="", help="comma-separated tones (Hz) it must not carry")
    ap.add_argument("--start", type=float, default=0.0, help="tone check: from this second")
    ap.add_argument("--end", type=float, help="tone check: up to this second")
    ap.add_argument("--min-present", type=float, default=0.6)
    ap.add_argument("--min-share", type=float, default=0.6)
    ap.add_argument("--max-foreign-share", type=float, default=0.05)
    args = ap.parse_args()
    if args.hears is not None:
        try:
            not_hears = [float(t) for t in args.not_hears.split(",") if t.strip()]
            result = {"file": args.wav, "hears": args.hears, "not_hears": not_hears}
            result.update(tone_shares(args.wav, [args.hears] + not_hears, args.start, args.end, args.floor))
        except (OSError, EOFError, ValueError, wave.Error) as e:
            print(json.dumps({"file": args.wav, "error": str(e)}))
            return 2
        result["failures"] = hears_check(
            result, args.hears, not_hears, args.min_present, args.min_share, args.max_foreign_share
        )
        print(json.dumps(result))
        return 0 if not result["failures"] else 1
    try:
        result = analyse(args.wav, args.floor)
    except (OSError, EOFError, ValueError, wave.Error) as e:
        print(json.dumps({"file": args.wav, "error": str(e)}))
        return 2
    result["speech"] = is_speech(result, args.min_voiced_s)
    ok = result["speech"]
    if args.reference:
        try:
            result.update(correlate(args.wav, args.reference, args.max_lag_s))
        except (OSError, EOFError, ValueError, wave.Error) as e:
            print(json.dumps({"file": args.wav, "error": str(e)}))
            return 2
        result["matches_reference"] = result["correlation"] >= args.min_correlation
        ok = ok and result["matches_reference"]
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
