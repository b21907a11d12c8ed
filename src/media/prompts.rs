//! Prompts, read once at startup: any PCM WAV hound reads is downmixed to mono, resampled to
//! 8 kHz (rubato) and pre-encoded into 20 ms PCMU and PCMA frames, so playback copies slices.

use crate::engine::media::{Codec, PromptKey};
use crate::proto::g711;
use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Telephone-band sample rate every prompt is converted to.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (= bytes of G.711) in one 20 ms RTP frame.
pub const FRAME_SAMPLES: usize = 160;
/// Longest prompt accepted, so a wrong file cannot eat the memory (10 minutes).
const MAX_SECONDS: u64 = 600;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct PromptError {
    pub file: PathBuf,
    pub reason: String,
}

fn err(file: &Path, reason: impl Into<String>) -> PromptError {
    PromptError {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// One prompt as whole 20 ms frames in both G.711 laws (the last frame padded with silence).
#[derive(Debug)]
pub struct Prompt {
    pcmu: Vec<u8>,
    pcma: Vec<u8>,
    frames: usize,
}

impl Prompt {
    /// Encodes 8 kHz mono samples. Empty input gives a prompt with no frames.
    pub fn from_samples(samples: &[i16]) -> Prompt {
        let frames = samples.len().div_ceil(FRAME_SAMPLES);
        let mut padded = samples.to_vec();
        padded.resize(frames * FRAME_SAMPLES, 0);
        let mut pcmu = Vec::new();
        let mut pcma = Vec::new();
        g711::encode(Codec::Pcmu, &padded, &mut pcmu);
        g711::encode(Codec::Pcma, &padded, &mut pcma);
        Prompt { pcmu, pcma, frames }
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame `i` (160 bytes) in `codec`, None past the end.
    pub fn frame(&self, codec: Codec, i: usize) -> Option<&[u8]> {
        let bytes = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        let start = i.checked_mul(FRAME_SAMPLES)?;
        bytes.get(start..start.checked_add(FRAME_SAMPLES)?)
    }
}

/// Every loaded prompt by (id, language).
#[derive(Debug, Default)]
pub struct PromptSet {
    prompts: HashMap<PromptKey, Arc<Prompt>>,
}

impl PromptSet {
    pub fn new() -> PromptSet {
        PromptSet::default()
    }

    pub fn has(&self, k: &PromptKey) -> bool {
        self.prompts.contains_key(k)
    }

    pub fn get(&self, k: &PromptKey) -> Option<&Arc<Prompt>> {
        self.prompts.get(k)
    }

    /// Adds (or replaces) a prompt from 8 kHz mono samples (tests, benches, synthesised audio).
    pub fn insert_samples(&mut self, k: PromptKey, samples_8k: &[i16]) {
        self.prompts
            .insert(k, Arc::new(Prompt::from_samples(samples_8k)));
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &PromptKey> {
        self.prompts.keys()
    }
}

/// Reads every `<dir>/<lang>/<id>.wav` for the given languages. Any unreadable, non-PCM or
/// empty file fails the whole load with an error naming the file.
pub fn load_prompts(dir: &Path, languages: &[String]) -> Result<PromptSet, PromptError> {
    let mut set = PromptSet::new();
    for lang in languages {
        let lang_dir = dir.join(lang);
        let entries = std::fs::read_dir(&lang_dir)
            .map_err(|e| err(&lang_dir, format!("cannot read prompt directory: {e}")))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| err(&lang_dir, format!("cannot list prompt directory: {e}")))?
                .path();
            let is_wav = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            if is_wav && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(err(&lang_dir, "no .wav prompts in directory"));
        }
        files.sort();
        for path in files {
            let id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| err(&path, "file name is not UTF-8"))?
                .to_string();
            let samples = read_wav_8k_mono(&path)?;
            set.insert_samples(
                PromptKey {
                    id,
                    lang: lang.clone(),
                },
                &samples,
            );
        }
    }
    Ok(set)
}

/// Reads one WAV as 8 kHz mono 16-bit samples.
pub fn read_wav_8k_mono(path: &Path) -> Result<Vec<i16>, PromptError> {
    let mut reader = hound::WavReader::open(path)
        .map_err(|e| err(path, format!("not a readable PCM WAV: {e}")))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(err(
            path,
            "WAV header has zero channels or zero sample rate",
        ));
    }
    if u64::from(reader.duration()) > MAX_SECONDS * u64::from(spec.sample_rate) {
        return Err(err(path, format!("longer than {MAX_SECONDS} s")));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(path, format!("bad sample data: {e}")))?
        }
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(|v| if v.is_finite() { v } else { 0.0 }))
            .collect::<Result<_, _>>()
            .map_err(|e| err(path, format!("bad sample data: {e}")))?,
        (format, bits) => {
            return Err(err(
                path,
                format!("unsupported sample format {format:?} {bits}-bit"),
            ))
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(err(path, "no audio samples"));
    }
    let resampled = if spec.sample_rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate).map_err(|reason| err(path, reason))?
    };
    Ok(resampled
        .iter()
        .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Band-limited sinc resampling of mono audio to 8 kHz, with the filter delay removed.
fn resample(input: &[f32], rate_in: u32) -> Result<Vec<f32>, String> {
    const CHUNK: usize = 1024;
    let ratio = f64::from(SAMPLE_RATE) / f64::from(rate_in);
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: 0.925,
        oversampling_factor: 128,
        interpolation: SincInterpolationType::Cubic,
        window: WindowFunction::BlackmanHarris2,
    };
    let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1)
        .map_err(|e| format!("cannot resample from {rate_in} Hz: {e}"))?;
    let expected = (input.len() as f64 * ratio).round() as usize;
    let delay = resampler.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + CHUNK);
    let fail = |e: rubato::ResampleError| format!("resampling failed: {e}");
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let res = resampler.process(&[chunk], None).map_err(fail)?;
        out.extend(res.into_iter().flatten());
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let res = resampler
            .process_partial(Some(&[rest]), None)
            .map_err(fail)?;
        out.extend(res.into_iter().flatten());
    }
    // Flush the filter tail; bounded: each call yields about CHUNK * ratio samples.
    let mut flushes = 0;
    while out.len() < expected + delay && flushes < 64 {
        let res = resampler
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(fail)?;
        out.extend(res.into_iter().flatten());
        flushes += 1;
    }
    let end = (delay + expected).min(out.len());
    Ok(out.get(delay..end).map(<[f32]>::to_vec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, secs: f32, freq: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    fn write_int(path: &Path, rate: u32, channels: u16, bits: u16, mono: &[f32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let full = ((1i64 << (bits - 1)) - 1) as f32;
        for &v in mono {
            for _ in 0..channels {
                let s = (v * full) as i32;
                if bits == 8 {
                    w.write_sample(s as i8).unwrap();
                } else {
                    w.write_sample(s).unwrap();
                }
            }
        }
        w.finalize().unwrap();
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    /// Zero crossings per second estimate the tone frequency after resampling.
    fn freq(s: &[i16]) -> f64 {
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (s.len() as f64 / 8000.0)
    }

    #[test]
    fn loads_varied_formats_and_resamples() {
        let dir = tempfile::tempdir().unwrap();
        let en = dir.path().join("en");
        std::fs::create_dir(&en).unwrap();
        write_int(
            &en.join("stereo24.wav"),
            44_100,
            2,
            24,
            &tone(44_100, 1.0, 440.0),
        );
        write_int(&en.join("eight.wav"), 8000, 1, 8, &tone(8000, 0.5, 440.0));
        write_int(
            &en.join("s16.wav"),
            22_050,
            1,
            16,
            &tone(22_050, 0.3, 440.0),
        );
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(en.join("float16k.wav"), spec).unwrap();
        for v in tone(16_000, 1.0, 440.0) {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();

        for (id, secs) in [
            ("stereo24", 1.0),
            ("eight", 0.5),
            ("float16k", 1.0),
            ("s16", 0.3),
        ] {
            let samples = read_wav_8k_mono(&en.join(format!("{id}.wav"))).unwrap();
            let want = (8000.0 * secs) as usize;
            assert!(
                samples.len().abs_diff(want) <= 2,
                "{id}: {} samples",
                samples.len()
            );
            let mid = &samples[samples.len() / 4..samples.len() * 3 / 4];
            // 0.5 amplitude sine: RMS ~ 0.354 * 32767 ~ 11585.
            assert!(
                (rms(mid) - 11_585.0).abs() < 600.0,
                "{id}: rms {}",
                rms(mid)
            );
            assert!((freq(mid) - 440.0).abs() < 15.0, "{id}: freq {}", freq(mid));
        }

        let set = load_prompts(dir.path(), &["en".to_string()]).unwrap();
        assert_eq!(set.len(), 4);
        let key = PromptKey {
            id: "stereo24".into(),
            lang: "en".into(),
        };
        assert!(set.has(&key));
        let p = set.get(&key).unwrap();
        assert_eq!(p.frames(), 50);
        assert_eq!(p.frame(Codec::Pcmu, 49).unwrap().len(), 160);
        assert!(p.frame(Codec::Pcma, 50).is_none());
        assert!(!set.has(&PromptKey {
            id: "stereo24".into(),
            lang: "zh".into()
        }));
    }

    #[test]
    fn last_frame_is_padded_with_silence() {
        let p = Prompt::from_samples(&[1000; 170]);
        assert_eq!(p.frames(), 2);
        let last = p.frame(Codec::Pcma, 1).unwrap();
        assert_ne!(last[9], g711::silence_byte(Codec::Pcma));
        assert!(last[10..]
            .iter()
            .all(|&b| b == g711::silence_byte(Codec::Pcma)));
    }

    #[test]
    fn refuses_bad_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let en = dir.path().join("en");
        std::fs::create_dir(&en).unwrap();
        write_int(&en.join("good.wav"), 8000, 1, 16, &tone(8000, 0.1, 300.0));
        std::fs::write(en.join("junk.wav"), b"RIFF\x10\x00\x00\x00WAVEnot really").unwrap();
        let e = load_prompts(dir.path(), &["en".to_string()]).unwrap_err();
        assert!(e.file.ends_with("junk.wav"), "{e}");
        assert!(e.to_string().contains("junk.wav"));
        std::fs::remove_file(en.join("junk.wav")).unwrap();

        write_int(&en.join("empty.wav"), 8000, 1, 16, &[]);
        let e = load_prompts(dir.path(), &["en".to_string()]).unwrap_err();
        assert!(
            e.file.ends_with("empty.wav") && e.reason.contains("no audio"),
            "{e}"
        );
        std::fs::remove_file(en.join("empty.wav")).unwrap();

        // A mu-law WAV (format tag 7) is not PCM: refused.
        let mut mulaw = Vec::new();
        mulaw.extend_from_slice(b"RIFF");
        mulaw.extend_from_slice(&(36u32 + 160).to_le_bytes());
        mulaw.extend_from_slice(b"WAVEfmt ");
        mulaw.extend_from_slice(&16u32.to_le_bytes());
        mulaw.extend_from_slice(&7u16.to_le_bytes());
        mulaw.extend_from_slice(&1u16.to_le_bytes());
        mulaw.extend_from_slice(&8000u32.to_le_bytes());
        mulaw.extend_from_slice(&8000u32.to_le_bytes());
        mulaw.extend_from_slice(&1u16.to_le_bytes());
        mulaw.extend_from_slice(&8u16.to_le_bytes());
        mulaw.extend_from_slice(b"data");
        mulaw.extend_from_slice(&160u32.to_le_bytes());
        mulaw.extend_from_slice(&[0xff; 160]);
        std::fs::write(en.join("mulaw.wav"), mulaw).unwrap();
        let e = load_prompts(dir.path(), &["en".to_string()]).unwrap_err();
        assert!(e.file.ends_with("mulaw.wav"), "{e}");
        std::fs::remove_file(en.join("mulaw.wav")).unwrap();

        assert!(load_prompts(dir.path(), &["en".to_string()]).is_ok());
        let e = load_prompts(dir.path(), &["zh".to_string()]).unwrap_err();
        assert!(e.file.ends_with("zh"), "{e}");
    }

    #[test]
    fn repository_prompts_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let set = load_prompts(&dir, &["en".to_string(), "zh".to_string()]).unwrap();
        for id in [
            "greeting",
            "language_menu",
            "main_menu",
            "hold_music",
            "digit_0",
            "goodbye",
        ] {
            for lang in ["en", "zh"] {
                let k = PromptKey {
                    id: id.into(),
                    lang: lang.into(),
                };
                assert!(set.get(&k).is_some_and(|p| p.frames() > 10), "{id}/{lang}");
            }
        }
    }
}
