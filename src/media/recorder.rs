//! Call recording: stereo 8 kHz 16-bit WAV (left = leg a, the caller; right = leg b, the
//! agent), written with hound on ONE writer thread for the whole media plane.
//!
//! The packet path only copies the G.711 payload into a message and `try_send`s it on a
//! bounded channel ([`RecorderTap::audio`]): no decoding, no file I/O, never blocking. When the
//! writer falls behind the chunk is dropped (counted), and the wall-clock alignment below
//! turns the hole into silence, so the two channels stay aligned. Control messages (begin,
//! end) are never dropped: when the channel is full they wait in the tap's own queue, which
//! the worker flushes every tick, and audio behind them waits its turn by being dropped.
//!
//! Alignment ([`Aligner`], sans-IO): each chunk is stamped with its arrival time. A chunk is
//! appended right after its channel's previous audio while that stays within `JITTER` of
//! where arrival time says it belongs (network jitter does not chop the audio); a longer
//! pause (silence suppression, hold, a silent side) is filled with silence up to where the
//! chunk belongs. The writer also fills a channel that has had nothing for `LAG` up to
//! `now - LAG`, so a side that sends nothing at all still advances with the wall clock and
//! frames can be written out.

use crate::clock::Clock;
use crate::engine::media::{Codec, LegId, MediaEvent};
use crate::engine::time::Millis;
use crate::proto::g711;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

pub const SAMPLE_RATE: u32 = 8000;
const SAMPLES_PER_MS: u64 = (SAMPLE_RATE / 1000) as u64;
/// Arrival jitter absorbed without inserting silence (samples).
pub const JITTER: u64 = 60 * SAMPLES_PER_MS;
/// How far behind the wall clock a silent channel is filled (samples).
pub const LAG: u64 = 200 * SAMPLES_PER_MS;
/// A channel this far ahead of the wall clock drops audio (a sender faster than real time).
pub const MAX_AHEAD: u64 = 1000 * SAMPLES_PER_MS;
/// Payload bytes carried per message (60 ms of G.711); longer payloads are split.
pub const CHUNK: usize = 480;
/// Messages the channel holds (about 10 s of audio for 50 recorded calls, 2.5 MB).
pub const CHANNEL_CAPACITY: usize = 5000;

/// Places both channels' audio on one timeline starting at `t0` (see the module docs).
#[derive(Debug)]
pub struct Aligner {
    t0: Millis,
    /// Frames already taken.
    written: u64,
    /// Per channel: samples from `written` on.
    pending: [VecDeque<i16>; 2],
    /// Per channel: audio is flowing (the next chunk follows on). False at the start and after
    /// wall-clock filling, so the next chunk is placed exactly where its arrival says.
    flowing: [bool; 2],
}

impl Aligner {
    pub fn new(t0: Millis) -> Aligner {
        Aligner {
            t0,
            written: 0,
            pending: [VecDeque::new(), VecDeque::new()],
            flowing: [false; 2],
        }
    }

    fn wall(&self, at: Millis) -> u64 {
        at.since(self.t0) * SAMPLES_PER_MS
    }

    /// Adds `samples` to channel `side` (0 left, 1 right) that arrived at `at`. False when
    /// dropped because the channel is already far ahead of the wall clock.
    pub fn push(&mut self, side: usize, at: Millis, samples: &[i16]) -> bool {
        let wall_end = self.wall(at);
        let written = self.written;
        let (Some(ch), Some(flowing)) = (self.pending.get_mut(side), self.flowing.get_mut(side))
        else {
            return false;
        };
        let pos = written + ch.len() as u64;
        if pos > wall_end + MAX_AHEAD {
            return false;
        }
        let start = wall_end.saturating_sub(samples.len() as u64);
        let tolerance = if *flowing { JITTER } else { 0 };
        *flowing = true;
        if start > pos + tolerance {
            ch.extend(std::iter::repeat_n(0, (start - pos) as usize));
        }
        ch.extend(samples.iter().copied());
        true
    }

    /// Fills channels that lag the wall clock by more than `LAG` with silence.
    pub fn advance(&mut self, now: Millis) {
        let horizon = self.wall(now).saturating_sub(LAG);
        let written = self.written;
        for (ch, flowing) in self.pending.iter_mut().zip(&mut self.flowing) {
            let pos = written + ch.len() as u64;
            if pos < horizon {
                ch.extend(std::iter::repeat_n(0, (horizon - pos) as usize));
                *flowing = false;
            }
        }
    }

    /// Appends every frame both channels have (interleaved L, R) to `out`.
    pub fn take(&mut self, out: &mut Vec<i16>) {
        let n = self.pending[0].len().min(self.pending[1].len());
        out.reserve(2 * n);
        let [l, r] = &mut self.pending;
        for (a, b) in l.drain(..n).zip(r.drain(..n)) {
            out.push(a);
            out.push(b);
        }
        self.written += n as u64;
    }

    /// The end: pads the shorter channel with silence and takes everything.
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        let n = self.pending[0].len().max(self.pending[1].len());
        for ch in &mut self.pending {
            let short = n - ch.len();
            ch.extend(std::iter::repeat_n(0, short));
        }
        self.take(out);
    }

    /// Frames taken so far.
    pub fn frames_written(&self) -> u64 {
        self.written
    }
}

/// Recording id: the `a` leg's id.
pub type RecordingId = LegId;

// Audio chunks carry the payload inline so the packet path does not allocate.
#[allow(clippy::large_enum_variant)]
pub enum RecMsg {
    Begin {
        id: RecordingId,
        path: PathBuf,
        t0: Millis,
    },
    Audio {
        id: RecordingId,
        side: u8,
        at: Millis,
        codec: Codec,
        len: u16,
        data: [u8; CHUNK],
    },
    End {
        id: RecordingId,
        reason: Option<String>,
    },
    Stop,
}

/// A worker's sending end (see the module docs for the drop/queue rules).
pub struct RecorderTap {
    tx: SyncSender<RecMsg>,
    pending: VecDeque<RecMsg>,
    dropped: Arc<AtomicU64>,
}

impl RecorderTap {
    pub fn begin(&mut self, id: RecordingId, path: PathBuf, t0: Millis) {
        self.pending.push_back(RecMsg::Begin { id, path, t0 });
        self.flush();
    }

    /// Ends a recording; `reason` is reported in `RecordingFinished` (None: stopped normally).
    pub fn end(&mut self, id: RecordingId, reason: Option<String>) {
        self.pending.push_back(RecMsg::End { id, reason });
        self.flush();
    }

    /// One received G.711 payload for channel `side`. Never blocks; false when dropped.
    pub fn audio(
        &mut self,
        id: RecordingId,
        side: u8,
        at: Millis,
        codec: Codec,
        payload: &[u8],
    ) -> bool {
        if !self.pending.is_empty() {
            self.flush();
        }
        let mut ok = true;
        for piece in payload.chunks(CHUNK) {
            let mut data = [0u8; CHUNK];
            data[..piece.len()].copy_from_slice(piece);
            let msg = RecMsg::Audio {
                id,
                side,
                at,
                codec,
                len: piece.len() as u16,
                data,
            };
            if !self.pending.is_empty() || self.tx.try_send(msg).is_err() {
                ok = false;
            }
        }
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ccswitch_recording_chunks_dropped_total").increment(1);
        }
        ok
    }

    /// Sends queued control messages as far as the channel takes them.
    pub fn flush(&mut self) {
        while let Some(msg) = self.pending.pop_front() {
            match self.tx.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    self.pending.push_front(msg);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// Sends queued control messages, waiting for room (worker exit only).
    pub fn flush_blocking(&mut self) {
        while let Some(msg) = self.pending.pop_front() {
            if self.tx.send(msg).is_err() {
                self.pending.clear();
            }
        }
    }
}

/// The writer thread.
pub struct Recorder {
    tx: SyncSender<RecMsg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    pub fn start(
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
        capacity: usize,
    ) -> std::io::Result<Recorder> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(16));
        let thread = std::thread::Builder::new()
            .name("ccswitch-recorder".into())
            .spawn(move || Writer::new(clock, events).run(rx))?;
        Ok(Recorder {
            tx,
            thread: Mutex::new(Some(thread)),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn tap(&self) -> RecorderTap {
        RecorderTap {
            tx: self.tx.clone(),
            pending: VecDeque::new(),
            dropped: self.dropped.clone(),
        }
    }

    /// Audio chunks dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Finalizes every open recording and stops the thread. Call after the workers stopped.
    pub fn shutdown(&self) {
        let _ = self.tx.send(RecMsg::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("recorder thread panicked");
            }
        }
    }
}

struct Recording {
    path: PathBuf,
    wav: Option<hound::WavWriter<BufWriter<File>>>,
    error: Option<String>,
    aligner: Aligner,
}

struct Writer {
    clock: Clock,
    events: UnboundedSender<MediaEvent>,
    open: HashMap<RecordingId, Recording>,
    decoded: Vec<i16>,
    frames: Vec<i16>,
}

impl Writer {
    fn new(clock: Clock, events: UnboundedSender<MediaEvent>) -> Writer {
        Writer {
            clock,
            events,
            open: HashMap::new(),
            decoded: Vec::with_capacity(CHUNK),
            frames: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<RecMsg>) {
        loop {
            // Everything queued first, so wall-clock filling never runs ahead of queued audio.
            let first = rx.recv_timeout(Duration::from_millis(100));
            let mut stop = false;
            match first {
                Ok(msg) => stop |= self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            while !stop {
                match rx.try_recv() {
                    Ok(msg) => stop |= self.handle(msg),
                    Err(_) => break,
                }
            }
            if stop {
                let ids: Vec<RecordingId> = self.open.keys().copied().collect();
                for id in ids {
                    self.end(id, Some("media plane shut down".into()));
                }
                return;
            }
            let now = self.clock.now();
            for rec in self.open.values_mut() {
                rec.aligner.advance(now);
                write_frames(rec, &mut self.frames);
            }
        }
    }

    /// True on Stop.
    fn handle(&mut self, msg: RecMsg) -> bool {
        match msg {
            RecMsg::Begin { id, path, t0 } => {
                if self.open.contains_key(&id) {
                    self.end(id, Some("replaced by a new recording".into()));
                }
                let spec = hound::WavSpec {
                    channels: 2,
                    sample_rate: SAMPLE_RATE,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                match hound::WavWriter::create(&path, spec) {
                    Ok(wav) => {
                        self.open.insert(
                            id,
                            Recording {
                                path,
                                wav: Some(wav),
                                error: None,
                                aligner: Aligner::new(t0),
                            },
                        );
                    }
                    Err(e) => {
                        let _ = self.events.send(MediaEvent::RecordingFinished {
                            leg: id,
                            path,
                            ok: false,
                            reason: Some(format!("cannot create the file: {e}")),
                        });
                    }
                }
            }
            RecMsg::Audio {
                id,
                side,
                at,
                codec,
                len,
                data,
            } => {
                if let Some(rec) = self.open.get_mut(&id) {
                    self.decoded.clear();
                    let bytes = data.get(..usize::from(len)).unwrap_or(&[]);
                    g711::decode(codec, bytes, &mut self.decoded);
                    rec.aligner.push(usize::from(side), at, &self.decoded);
                }
            }
            RecMsg::End { id, reason } => self.end(id, reason),
            RecMsg::Stop => return true,
        }
        false
    }

    fn end(&mut self, id: RecordingId, reason: Option<String>) {
        let Some(mut rec) = self.open.remove(&id) else {
            return;
        };
        rec.frames_finish(&mut self.frames);
        let mut error = rec.error.take();
        if let Some(wav) = rec.wav.take() {
            if let Err(e) = wav.finalize() {
                error.get_or_insert(format!("cannot finalize: {e}"));
            }
        }
        let ok = error.is_none();
        let _ = self.events.send(MediaEvent::RecordingFinished {
            leg: id,
            path: rec.path,
            ok,
            reason: error.or(reason),
        });
    }
}

impl Recording {
    fn frames_finish(&mut self, frames: &mut Vec<i16>) {
        frames.clear();
        self.aligner.finish(frames);
        self.write(frames);
    }

    fn write(&mut self, frames: &[i16]) {
        let Some(wav) = self.wav.as_mut() else {
            return;
        };
        let mut w = wav.get_i16_writer(frames.len() as u32);
        for &s in frames {
            w.write_sample(s);
        }
        let result = w.flush();
        if let Err(e) = result {
            // A disk error ends writing; the event reports it when the recording ends.
            self.error = Some(format!("write failed: {e}"));
            self.wav = None;
        }
    }
}

fn write_frames(rec: &mut Recording, frames: &mut Vec<i16>) {
    frames.clear();
    rec.aligner.take(frames);
    if !frames.is_empty() {
        rec.write(frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(a: &mut Aligner) -> Vec<(i16, i16)> {
        let mut out = Vec::new();
        a.take(&mut out);
        out.chunks(2).map(|c| (c[0], c[1])).collect()
    }

    #[test]
    fn both_channels_line_up_on_arrival_time_and_jitter_does_not_chop() {
        let mut a = Aligner::new(Millis(1000));
        // Left sends 20 ms frames of 1 arriving at 1020, 1040 (+5 ms jitter), 1060.
        assert!(a.push(0, Millis(1020), &[1; 160]));
        assert!(a.push(0, Millis(1045), &[1; 160]));
        assert!(a.push(0, Millis(1060), &[1; 160]));
        // Right starts talking at 1040 (its first frame covers 1020..1040).
        assert!(a.push(1, Millis(1040), &[2; 160]));
        let f = frames(&mut a);
        assert_eq!(f.len(), 320, "both channels have 320 samples from t0");
        assert!(
            f[..160].iter().all(|&(l, r)| l == 1 && r == 0),
            "right silent first"
        );
        assert!(f[160..].iter().all(|&(l, r)| l == 1 && r == 2));
        // Left pauses (silence suppression) for 200 ms: its next frame is placed by time.
        assert!(a.push(1, Millis(1060), &[2; 160]));
        assert!(a.push(0, Millis(1280), &[3; 160]));
        a.advance(Millis(1500));
        let f = frames(&mut a);
        // Left: 160 samples of 1 (1040..1060), silence to 1260, then 3s from 1260 (sample 2080).
        let base = 320; // frames already taken
        assert_eq!(f[0], (1, 2));
        let at = |ms: u64| (ms - 1000) as usize * 8 - base;
        assert_eq!(f[at(1100)].0, 0);
        assert_eq!(f[at(1265)].0, 3);
        // Right sent nothing after 1060: silence by wall clock up to now - LAG.
        assert_eq!(f[at(1200)].1, 0);
        assert_eq!(a.frames_written() as usize, (1500 - 1000 - 200) * 8);
    }

    #[test]
    fn a_silent_side_still_advances_and_finish_pads() {
        let mut a = Aligner::new(Millis(0));
        for i in 1..=50u64 {
            a.push(0, Millis(20 * i), &[7; 160]);
        }
        assert!(frames(&mut a).is_empty(), "right has nothing yet");
        a.advance(Millis(1000));
        assert_eq!(frames(&mut a).len(), 800 * 8);
        let mut out = Vec::new();
        a.finish(&mut out);
        assert_eq!(out.len(), 2 * 200 * 8);
        assert!(out.chunks(2).all(|c| c == [7, 0]));
        // Far ahead of the wall clock: dropped.
        let mut b = Aligner::new(Millis(0));
        let mut accepted = 0;
        for _ in 0..100 {
            if b.push(1, Millis(20), &[1; 160]) {
                accepted += 1;
            }
        }
        assert!(accepted < 100 && accepted > 40);
        assert!(!b.push(2, Millis(20), &[1; 160]), "no such channel");
    }

    #[test]
    fn writer_thread_writes_a_stereo_wav_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let clock = Clock::new();
        let rec = Recorder::start(clock, tx, 64).unwrap();
        let mut tap = rec.tap();
        let t0 = clock.now();
        tap.begin(1, path.clone(), t0);
        // mu-law 0x80 = +32124 on the left, A-law 0x2A = -32256 on the right, same times.
        for i in 1..=10u64 {
            assert!(tap.audio(1, 0, t0.plus(20 * i), Codec::Pcmu, &[0x80; 160]));
            assert!(tap.audio(1, 1, t0.plus(20 * i), Codec::Pcma, &[0x2A; 160]));
        }
        tap.end(1, None);
        // A file that cannot be created is reported.
        tap.begin(2, dir.path().join("no/such/dir.wav"), t0);
        let mut got = Vec::new();
        for _ in 0..300 {
            while let Ok(ev) = rx.try_recv() {
                got.push(ev);
            }
            if got.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        rec.shutdown();
        assert!(got.contains(&MediaEvent::RecordingFinished {
            leg: 1,
            path: path.clone(),
            ok: true,
            reason: None
        }));
        assert!(got.iter().any(|e| matches!(e,
            MediaEvent::RecordingFinished { leg: 2, ok: false, reason: Some(r), .. } if r.contains("cannot create"))));
        let mut r = hound::WavReader::open(&path).unwrap();
        let spec = r.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        let s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        assert_eq!(s.len(), 2 * 1600);
        assert!(s.chunks(2).all(|c| c == [32124, -32256]));
    }
}
