#!/usr/bin/env python3
"""Is a recording speech or silence?

Reads a 16-bit PCM WAV (what PJSUA2's recorder writes), cuts it into 20 ms
windows and reports overall RMS, peak, and how much of it is "voiced" (window
RMS above a floor). Speech from espeak-ng prompts gives long voiced stretches;
silence, comfort noise or a dead RTP stream give none.

With --reference PROMPT.wav it also finds where the prompt's energy envelope best
matches the recording (normalised correlation and lag): proof that this prompt,
not just any sound, reached the caller.

Usage: audio_check.py FILE.wav [--min-voiced-s 0.5] [--floor 300]
                      [--reference PROMPT.wav [--max-lag-s S] [--min-correlation 0.7]]
Prints one JSON object; exit 0 if the file holds speech (and matches the
reference), 1 if not, 2 on error.
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
    args = ap.parse_args()
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
