//! Whisper's input: 80-bin log-mel spectrogram of 16 kHz mono audio (25 ms windows,
//! 10 ms hop), with the mel filter bank computed here rather than shipped.
//!
//! The same steps as OpenAI's `log_mel_spectrogram`: the window zero-padded to 30 s,
//! a centred STFT (reflect padding, periodic Hann, n_fft 400, hop 160) keeping 3000
//! frames, power spectrum through Slaney-style mel filters (librosa's default, which
//! is what Whisper's `mel_filters.npz` holds), `log10` clamped at 1e-10 and to 8 below
//! the maximum, then `(x + 4) / 4`.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// One window: 30 s of 16 kHz samples.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = WINDOW_SAMPLES / HOP_LENGTH;
/// Frequency bins of one frame's power spectrum.
pub const N_BINS: usize = N_FFT / 2 + 1;

/// Computes log-mel spectrograms of one window; build once, use from any thread.
pub struct LogMel {
    n_mels: usize,
    /// `n_mels × N_BINS`, row-major.
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
}

impl LogMel {
    pub fn new(n_mels: usize) -> Self {
        let window = (0..N_FFT)
            .map(|i| {
                let x = 2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64;
                (0.5 * (1.0 - x.cos())) as f32
            })
            .collect();
        Self {
            n_mels,
            filters: mel_filters(SAMPLE_RATE as f64, N_FFT, n_mels),
            window,
            fft: FftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// `n_mels × N_FRAMES` values, mel-major (the `[1, n_mels, 3000]` layout the
    /// encoder takes). Samples past one window are ignored.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let samples = &samples[..samples.len().min(WINDOW_SAMPLES)];
        // The window is zero-padded to 30 s, then reflect-padded by n_fft/2 each side.
        let at = |j: isize| -> f32 {
            let n = WINDOW_SAMPLES as isize;
            let i = if j < 0 {
                -j
            } else if j >= n {
                2 * n - 2 - j
            } else {
                j
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| samples.get(i))
                .copied()
                .unwrap_or(0.0)
        };
        let half = (N_FFT / 2) as isize;
        let mut mel = vec![0f32; self.n_mels * N_FRAMES];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut scratch = vec![Complex::new(0f32, 0f32); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0f32; N_BINS];
        for frame in 0..N_FRAMES {
            let start = (frame * HOP_LENGTH) as isize - half;
            for (k, slot) in buf.iter_mut().enumerate() {
                *slot = Complex::new(at(start + k as isize) * self.window[k], 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buf) {
                *p = c.norm_sqr();
            }
            for m in 0..self.n_mels {
                let row = &self.filters[m * N_BINS..(m + 1) * N_BINS];
                let sum: f32 = row.iter().zip(&power).map(|(f, p)| f * p).sum();
                mel[m * N_FRAMES + frame] = sum.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut mel {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

/// Slaney's mel scale (librosa `htk=False`): linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        mel * F_SP
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)` (fmin 0, fmax sr/2, Slaney area
/// normalisation): `n_mels × (n_fft/2 + 1)`, row-major.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|i| i as f64 * sample_rate / n_fft as f64)
        .collect();
    let max_mel = hz_to_mel(sample_rate / 2.0);
    let mel_freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (lo, mid, hi) = (mel_freqs[m], mel_freqs[m + 1], mel_freqs[m + 2]);
        let norm = 2.0 / (hi - lo);
        for (b, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            out[m * n_bins + b] = (lower.min(upper).max(0.0) * norm) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_the_spectrum_like_librosa() {
        let f = mel_filters(16_000.0, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        // Every filter has some weight and none reaches past its neighbours.
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().any(|v| *v > 0.0), "filter {m} is empty");
            assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)[0, 1] = 0.02486259.
        assert!((f[1] - 0.024_862_59).abs() < 1e-5, "{}", f[1]);
        // The Nyquist bin is outside every filter.
        assert_eq!(f[79 * 201 + 200], 0.0);
    }

    #[test]
    fn a_tone_lights_up_its_mel_band() {
        let mel = LogMel::new(80);
        let tone: Vec<f32> = (0..SAMPLE_RATE as usize)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let out = mel.compute(&tone);
        assert_eq!(out.len(), 80 * N_FRAMES);
        assert!(out.iter().all(|v| v.is_finite()));
        // Frame 50 (0.5 s): the loudest band is the one around 440 Hz.
        let column: Vec<f32> = (0..80).map(|m| out[m * N_FRAMES + 50]).collect();
        let loudest = (0..80)
            .max_by(|a, b| column[*a].total_cmp(&column[*b]))
            .unwrap_or(0);
        let centre = mel_to_hz(hz_to_mel(8000.0) * (loudest + 1) as f64 / 81.0);
        assert!(
            (centre - 440.0).abs() < 60.0,
            "band {loudest} at {centre} Hz"
        );
        // Past the tone (padding) everything sits at the floor: max - 8 → (x+4)/4.
        let floor = out.iter().copied().fold(f32::INFINITY, f32::min);
        assert!((out[2000] - floor).abs() < 1e-6);
    }

    #[test]
    fn silence_is_flat_and_finite() {
        // log10(1e-10) everywhere: (-10 + 4) / 4.
        let out = LogMel::new(80).compute(&[]);
        assert!(out.iter().all(|v| (*v + 1.5).abs() < 1e-6), "{}", out[0]);
    }
}
