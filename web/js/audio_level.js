// The received audio level of a call, for the person on it and for the browser tests: RMS
// of the last 1024 samples, read through WebAudio every 100 ms into `el.dataset.level`
// (now) and `el.dataset.max` (highest since the start).

/// Starts measuring `stream` into `el`; returns a function that stops it. `ctx`: an
/// AudioContext made after a user gesture (browsers start audio only after one), or null
/// to make one here.
export function measureLevel(stream, el, ctx = null) {
  try {
    const context = ctx || new AudioContext();
    const src = context.createMediaStreamSource(stream);
    const an = context.createAnalyser();
    an.fftSize = 1024;
    src.connect(an);
    const buf = new Float32Array(an.fftSize);
    el.dataset.max = "0";
    const timer = setInterval(() => {
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const rms = Math.sqrt(sum / buf.length);
      el.dataset.level = rms.toFixed(4);
      el.dataset.max = Math.max(Number(el.dataset.max || 0), rms).toFixed(4);
    }, 100);
    return () => {
      clearInterval(timer);
      src.disconnect();
    };
  } catch {
    return () => {}; // no WebAudio: no level
  }
}
