// The ring tone (generated with WebAudio: no sound file to download) and the three-ring
// countdown of an offered call. `ringProgress` is pure, for the node tests.

/// Where an offer is after `elapsedMs` of `timeoutMs` split into `rings` rings:
/// {ring: 1..rings, leftSecs, fraction: 0..1 of the whole offer gone}.
export function ringProgress(elapsedMs, timeoutMs, rings = 3) {
  const total = Math.max(1, timeoutMs);
  const e = Math.min(Math.max(0, elapsedMs), total);
  const cycle = total / rings;
  const ring = Math.min(rings, Math.floor(e / cycle) + 1);
  return { ring, leftSecs: Math.ceil((total - e) / 1000), fraction: e / total };
}

/// A two-tone ring (440 + 480 Hz, as on North American and many desk phones) for the first
/// `onMs` of each ring cycle. Needs an AudioContext made after a user gesture (sign-in).
export class Ringer {
  constructor() {
    this.ctx = null;
    this.timer = null;
    this.nodes = [];
    this.playing = false;
  }

  /// Call from a click handler: browsers start audio only after a user gesture.
  unlock() {
    if (!this.ctx) {
      const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
      if (!Ctx) return;
      this.ctx = new Ctx();
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
  }

  start(cycleMs = 6000) {
    this.stop();
    this.unlock();
    this.playing = true;
    const onMs = Math.min(2000, cycleMs * 0.4);
    const burst = () => this.burst(onMs);
    burst();
    this.timer = setInterval(burst, cycleMs);
  }

  burst(onMs) {
    const ctx = this.ctx;
    if (!ctx) return;
    const gain = ctx.createGain();
    const t0 = ctx.currentTime;
    gain.gain.setValueAtTime(0, t0);
    gain.gain.linearRampToValueAtTime(0.15, t0 + 0.02);
    gain.gain.setValueAtTime(0.15, t0 + onMs / 1000 - 0.02);
    gain.gain.linearRampToValueAtTime(0, t0 + onMs / 1000);
    gain.connect(ctx.destination);
    for (const f of [440, 480]) {
      const osc = ctx.createOscillator();
      osc.frequency.value = f;
      osc.connect(gain);
      osc.start(t0);
      osc.stop(t0 + onMs / 1000 + 0.05);
      this.nodes.push(osc);
      osc.onended = () => {
        this.nodes = this.nodes.filter((n) => n !== osc);
      };
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.playing = false;
    for (const n of this.nodes) {
      try {
        n.stop();
      } catch {
        // already stopped
      }
    }
    this.nodes = [];
  }
}
