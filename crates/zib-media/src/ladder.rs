//! The HLS ladder: which rungs a source gets and how each is encoded; and the ladder
//! of an aspect variant (a centre crop of the source).

use zib_proto::jobs::{RenditionPlan, VideoProbe};

use crate::MediaError;

/// One rung of the ladder with its encoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Rung {
    pub plan: RenditionPlan,
    /// Target average video bitrate (`-b:v`).
    pub video_kbps: u32,
    /// Peak the rate control may not pass (`-maxrate`): capped VBR keeps a variant
    /// near the bandwidth the master playlist promises.
    pub maxrate_kbps: u32,
    /// VBV buffer (`-bufsize`).
    pub bufsize_kbps: u32,
    /// AAC bitrate when the source has audio.
    pub audio_kbps: u32,
    /// x264 profile: `main` for the lowest rung (older phones), `high` above.
    pub profile: &'static str,
    /// H.264 level, `3.0` … `5.2`, the lowest the rung's size and frame rate fit.
    pub level: &'static str,
    /// The centred window of the source (display pixels) cut out before scaling: an
    /// aspect variant's rungs; `None` for the main ladder.
    pub crop: Option<Crop>,
}

/// A centred crop of the source, in display pixels (rotation and pixel aspect applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub width: u32,
    pub height: u32,
}

/// The standard rungs by their short side, with video and audio bitrates at ≤30 fps.
/// Figures follow the common H.264 ladders (Apple's HLS authoring guide, rounded):
/// enough for screen content and camera footage at `veryfast`.
const LADDER: [(u32, u32, u32); 5] = [
    (360, 800, 96),
    (480, 1400, 96),
    (720, 2800, 128),
    (1080, 5000, 128),
    (2160, 16000, 128),
];

/// Above this a rung is encoded at this frame rate (ffmpeg's `fps` filter): HLS
/// players and the levels below 5.2 stop here.
pub(crate) const MAX_FPS: f64 = 60.0;

/// The rungs for this source, lowest first: 360p, 480p, 720p, 1080p, 2160p by the
/// short side, none above the source (a source below 360p gets one rung at its own
/// size, even dimensions), orientation kept (portrait: width is the short side).
pub fn plan_ladder(probe: &VideoProbe) -> Vec<Rung> {
    let (w, h) = (probe.width.max(2), probe.height.max(2));
    let portrait = w < h;
    let (short, long) = if portrait { (w, h) } else { (h, w) };
    let fps = output_fps(probe.frame_rate);
    let has_audio = probe.has_audio();
    let mut rungs: Vec<Rung> = LADDER
        .iter()
        .filter(|(s, _, _)| *s <= short)
        .map(|&(s, v, a)| {
            let l = even(f64::from(s) * f64::from(long) / f64::from(short)).min(floor_even(long));
            rung(format!("{s}p"), s, l, portrait, fps, v, a, has_audio)
        })
        .collect();
    if rungs.is_empty() {
        // Below the lowest rung: one rung at the source's own size, with the lowest
        // rung's bitrate scaled down by area.
        let (s, l) = (floor_even(short), floor_even(long));
        let (_, v360, a360) = LADDER[0];
        let area = f64::from(s) * f64::from(l) / (360.0 * 640.0);
        let v = ((f64::from(v360) * area) as u32).max(150);
        rungs.push(rung(
            format!("{s}p"),
            s,
            l,
            portrait,
            fps,
            v,
            a360,
            has_audio,
        ));
    }
    rungs
}

#[allow(clippy::too_many_arguments)]
fn rung(
    name: String,
    short: u32,
    long: u32,
    portrait: bool,
    fps: f64,
    video_kbps: u32,
    audio_kbps: u32,
    has_audio: bool,
) -> Rung {
    let (width, height) = if portrait {
        (short, long)
    } else {
        (long, short)
    };
    // More frames need more bits; 1.5× at 60 fps is the usual rule of thumb.
    let video_kbps = if fps > 30.5 {
        video_kbps * 3 / 2
    } else {
        video_kbps
    };
    let profile = if short <= 360 { "main" } else { "high" };
    let maxrate_kbps = video_kbps * 107 / 100;
    let bufsize_kbps = video_kbps * 2;
    let level = h264_level(width, height, fps, maxrate_kbps, profile);
    Rung {
        plan: RenditionPlan {
            name,
            width,
            height,
            codecs: rfc6381_codecs(profile, level, has_audio),
            frame_rate: fps,
        },
        video_kbps,
        maxrate_kbps,
        bufsize_kbps,
        audio_kbps,
        profile,
        level,
        crop: None,
    }
}

/// The aspect ratios a variant may have, as (width, height) units.
fn variant_ratio(ratio: &str) -> Result<(u32, u32), MediaError> {
    match ratio.trim() {
        "9:16" => Ok((9, 16)),
        other => Err(MediaError::Invalid(format!(
            "aspect ratio {other:?} is not one ZiB encodes (only \"9:16\")"
        ))),
    }
}

/// The exact 9:16 rungs by their short side (width), with video and audio bitrates at
/// ≤30 fps: the main ladder's figures, 540 instead of 480 (480×853⅓ is not exact).
const VARIANT_LADDER: [(u32, u32, u32); 5] = [
    (360, 800, 96),
    (540, 2000, 96),
    (720, 2800, 128),
    (1080, 5000, 128),
    (2160, 16000, 128),
];

/// The crop of an aspect variant for this source: the largest centred window of that
/// display aspect (`"9:16"` is the only one; anything else is
/// [`MediaError::Invalid`]), even dimensions. The rungs scale it to exact sizes, so
/// the ≤1 px of rounding here never shows as a distortion.
pub fn variant_crop(probe: &VideoProbe, ratio: &str) -> Result<Crop, MediaError> {
    let (rw, rh) = variant_ratio(ratio)?;
    let (w, h) = (probe.width.max(2), probe.height.max(2));
    let (w64, h64) = (u64::from(w), u64::from(h));
    let (cw, ch) = if w64 * u64::from(rh) > h64 * u64::from(rw) {
        // Wider than the ratio: full height, the width cut.
        let ch = floor_even(h);
        (
            even(f64::from(ch) * f64::from(rw) / f64::from(rh)).min(floor_even(w)),
            ch,
        )
    } else {
        let cw = floor_even(w);
        (
            cw,
            even(f64::from(cw) * f64::from(rh) / f64::from(rw)).min(floor_even(h)),
        )
    };
    Ok(Crop {
        width: cw,
        height: ch,
    })
}

/// The rungs of an aspect variant, lowest first: exact 9:16 sizes (360×640, 540×960,
/// 720×1280, 1080×1920, 2160×3840) no taller than the crop ([`variant_crop`]); a crop
/// shorter than the lowest gets one rung at the largest exact 9:16 size that fits it
/// (even dimensions). Every rung carries the crop; names by the short side, like the
/// main ladder (`360p`, `540p`, …).
pub fn plan_variant_ladder(probe: &VideoProbe, ratio: &str) -> Result<Vec<Rung>, MediaError> {
    let crop = variant_crop(probe, ratio)?;
    let (rw, rh) = variant_ratio(ratio)?;
    let fps = output_fps(probe.frame_rate);
    let has_audio = probe.has_audio();
    let mut rungs: Vec<Rung> = VARIANT_LADDER
        .iter()
        .map(|&(s, v, a)| (s, s * rh / rw, v, a))
        .filter(|&(_, l, _, _)| l <= crop.height)
        .map(|(s, l, v, a)| rung(format!("{s}p"), s, l, true, fps, v, a, has_audio))
        .collect();
    if rungs.is_empty() {
        // The largest even exact size: (2·rw·m) × (2·rh·m).
        let m = (crop.width / (2 * rw)).min(crop.height / (2 * rh)).max(1);
        let (s, l) = (2 * rw * m, 2 * rh * m);
        let (s360, v360, a360) = VARIANT_LADDER[0];
        let area = f64::from(s) * f64::from(l) / (f64::from(s360) * f64::from(s360 * rh / rw));
        let v = ((f64::from(v360) * area) as u32).max(150);
        rungs.push(rung(format!("{s}p"), s, l, true, fps, v, a360, has_audio));
    }
    for r in &mut rungs {
        r.crop = Some(crop);
    }
    Ok(rungs)
}

/// The frame rate a rung is encoded at: the source's, capped at [`MAX_FPS`]; 30 when
/// the source does not say.
pub(crate) fn output_fps(source: f64) -> f64 {
    if source.is_finite() && source > 0.0 {
        source.min(MAX_FPS)
    } else {
        30.0
    }
}

/// Rounds to the nearest even number ≥ 2 (yuv420p needs even dimensions).
fn even(x: f64) -> u32 {
    let n = (x / 2.0).round() as u32 * 2;
    n.max(2)
}

/// The even number at or below `x`, at least 2.
fn floor_even(x: u32) -> u32 {
    (x & !1).max(2)
}

/// H.264 Table A-1: (level, max macroblocks/s, max frame size in macroblocks, max
/// bitrate in kbit/s for Main; High allows 1.25×).
const LEVELS: [(&str, u64, u64, u64); 9] = [
    ("3.0", 40_500, 1_620, 10_000),
    ("3.1", 108_000, 3_600, 14_000),
    ("3.2", 216_000, 5_120, 20_000),
    ("4.0", 245_760, 8_192, 20_000),
    ("4.1", 245_760, 8_192, 50_000),
    ("4.2", 522_240, 8_704, 50_000),
    ("5.0", 589_824, 22_080, 135_000),
    ("5.1", 983_040, 36_864, 240_000),
    ("5.2", 2_073_600, 36_864, 240_000),
];

/// The lowest level the frame size, macroblock rate and peak bitrate fit.
fn h264_level(width: u32, height: u32, fps: f64, maxrate_kbps: u32, profile: &str) -> &'static str {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let mbps = (mbs as f64 * fps).ceil() as u64;
    let rate = u64::from(maxrate_kbps);
    LEVELS
        .iter()
        .find(|(_, max_mbps, max_fs, max_br)| {
            let max_br = if profile == "high" {
                max_br * 5 / 4
            } else {
                *max_br
            };
            mbps <= *max_mbps && mbs <= *max_fs && rate <= max_br
        })
        .map(|(l, ..)| *l)
        .unwrap_or("5.2")
}

/// RFC 6381 codecs string for a rung: `avc1.PPCCLL` (profile_idc, constraint flags,
/// level_idc as x264 writes them), plus `,mp4a.40.2` (AAC-LC) with audio.
pub fn rfc6381_codecs(profile: &str, level: &str, has_audio: bool) -> String {
    // x264 sets constraint_set1 (Main-compatible) for Main and none for High.
    let (profile_idc, constraints) = match profile {
        "baseline" => (0x42, 0xc0),
        "main" => (0x4d, 0x40),
        _ => (0x64, 0x00),
    };
    let level_idc: u32 = level
        .split_once('.')
        .and_then(|(major, minor)| {
            Some(major.parse::<u32>().ok()? * 10 + minor.parse::<u32>().ok()?)
        })
        .unwrap_or(40);
    let video = format!("avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}");
    if has_audio {
        format!("{video},mp4a.40.2")
    } else {
        video
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_the_usual_rungs() {
        assert_eq!(h264_level(640, 360, 30.0, 856, "main"), "3.0");
        assert_eq!(h264_level(1280, 720, 30.0, 2996, "high"), "3.1");
        assert_eq!(h264_level(1280, 720, 60.0, 4494, "high"), "3.2");
        assert_eq!(h264_level(1920, 1080, 30.0, 5350, "high"), "4.0");
        assert_eq!(h264_level(1920, 1080, 60.0, 8025, "high"), "4.2");
        assert_eq!(h264_level(3840, 2160, 30.0, 17120, "high"), "5.1");
        assert_eq!(h264_level(3840, 2160, 60.0, 25680, "high"), "5.2");
    }

    #[test]
    fn codecs_strings_are_the_ones_players_know() {
        assert_eq!(rfc6381_codecs("main", "3.0", true), "avc1.4d401e,mp4a.40.2");
        assert_eq!(rfc6381_codecs("high", "3.1", false), "avc1.64001f");
        assert_eq!(rfc6381_codecs("high", "4.0", true), "avc1.640028,mp4a.40.2");
        assert_eq!(rfc6381_codecs("high", "5.1", false), "avc1.640033");
    }
}
