//! Scrub-bar sprites: tiles packed in 10×10 JPEG sheets, and the WebVTT track that
//! points a player at each tile (`#xywh=`).

use std::fmt::Write as _;

use tokio_util::sync::CancellationToken;
use zib_proto::jobs::{VideoProbe, MAX_ARTIFACT_BYTES};

use crate::images::{display_filters, run, split_jpegs, Line};
use crate::{MediaError, Tools};

/// Tiles per sheet row and per sheet column.
pub const SPRITE_GRID: u32 = 10;

/// JPEG quality of a sheet (`-q:v`): tiles are small and seen for a moment.
const SPRITE_QUALITY: &str = "5";

/// `showinfo`'s lines start with its instance name; one per frame (tile) has `n:` and
/// `pts_time:`, the others (configuration, side data) are skipped.
fn tile_line(line: &str) -> Line {
    if !line.contains("Parsed_showinfo") {
        Line::Keep
    } else if line.contains(" n:") && line.contains(" pts_time:") {
        Line::Count
    } else {
        Line::Skip
    }
}

/// The sheets of one video, in order, and how to find a tile in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpriteSheets {
    /// JPEGs, each `columns × tile_width` by `rows × tile_height`; the last one may be
    /// partly empty (black).
    pub sheets: Vec<Vec<u8>>,
    pub tile_width: u32,
    pub tile_height: u32,
    /// [`SPRITE_GRID`].
    pub columns: u32,
    /// [`SPRITE_GRID`].
    pub rows: u32,
    pub interval_secs: u32,
    /// Tiles in all sheets; tile `k` is the frame at `k × interval_secs`.
    pub tile_count: u32,
}

impl SpriteSheets {
    /// (sheet index, x, y) of tile `k`, row-major within its sheet.
    pub fn tile_position(&self, k: u32) -> (usize, u32, u32) {
        let per_sheet = (self.columns * self.rows).max(1);
        let (sheet, i) = (k / per_sheet, k % per_sheet);
        let columns = self.columns.max(1);
        (
            sheet as usize,
            (i % columns) * self.tile_width,
            (i / columns) * self.tile_height,
        )
    }
}

/// The tile size for `width_px`: that wide (at least 2), the height keeping the
/// source's display aspect, even.
pub fn tile_size(probe: &VideoProbe, width_px: u32) -> (u32, u32) {
    let w = width_px.max(2);
    let (dw, dh) = (
        f64::from(probe.width.max(1)),
        f64::from(probe.height.max(1)),
    );
    let h = ((f64::from(w) * dh / dw / 2.0).round() as u32 * 2).max(2);
    (w, h)
}

/// Scrub-bar sprites in one ffmpeg run: one tile every `interval_secs` from 0 (the
/// tile of cue `[k·I, (k+1)·I)` is the frame shown at `k·I`: `fps` with upward
/// rounding picks it), `width_px` wide ([`tile_size`]), packed row-major into 10×10
/// JPEG sheets (the last may be partial). ffmpeg decodes the whole video but keeps
/// only the sheet it is filling, and the sheets come back on its stdout: memory is
/// the sheets (a 10 h video at 1 s and 160 px is 36 000 tiles, 360 sheets of
/// ~100–200 KB). A picture shorter than the file (sound outlasting it) gets tiles
/// for the picture only: `tile_count` says how many, and [`sprite_vtt`] stretches the
/// last cue to the end. Kills ffmpeg when `cancel` fires ([`MediaError::Cancelled`]).
pub async fn sprite_sheets(
    tools: &Tools,
    input: &str,
    probe: &VideoProbe,
    interval_secs: u32,
    width_px: u32,
    cancel: CancellationToken,
) -> Result<SpriteSheets, MediaError> {
    let interval = interval_secs.max(1);
    let (tw, th) = tile_size(probe, width_px);
    // `fps` (rounding up) emits one frame per started interval of the picture; `trim`
    // caps that at one per started interval of the probed duration, a guard against a
    // picture running past what the container says.
    let expected = expected_tiles(probe.duration_secs, interval);
    let filters = format!(
        "fps=1/{interval}:round=up,trim=end_frame={expected},showinfo,{},tile={SPRITE_GRID}x{SPRITE_GRID}",
        display_filters((probe.width, probe.height), None, (tw, th)),
    );
    let args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        // `showinfo` reports each tile at the info level: that is how tiles are counted.
        "-v",
        "info",
        "-i",
        input,
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-vf",
        &filters,
        // One sheet per filter output, none duplicated or dropped for a frame rate.
        "-vsync",
        "passthrough",
        "-pix_fmt",
        "yuvj420p",
        "-c:v",
        "mjpeg",
        "-q:v",
        SPRITE_QUALITY,
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    .map(String::from)
    .to_vec();
    let per_sheet = (SPRITE_GRID * SPRITE_GRID) as usize;
    let max_bytes = MAX_ARTIFACT_BYTES.saturating_mul(expected.div_ceil(per_sheet as u32) as usize);
    let done = run(tools, &args, tile_line, max_bytes, cancel).await?;
    let sheets = split_jpegs(&done.stdout).map_err(|e| MediaError::Ffmpeg {
        status: "exit status: 0".into(),
        stderr: format!("its sprite sheets are not JPEGs: {e}"),
    })?;
    let tile_count = u32::try_from(done.counted)
        .unwrap_or(u32::MAX)
        .min(expected);
    let needed = (tile_count as usize).div_ceil(per_sheet);
    if tile_count == 0 || sheets.len() < needed {
        return Err(MediaError::Ffmpeg {
            status: "exit status: 0".into(),
            stderr: format!(
                "it made {} sprite sheet(s) for {tile_count} tile(s) of a {:.3} s video",
                sheets.len(),
                probe.duration_secs
            ),
        });
    }
    if let Some(big) = sheets.iter().find(|s| s.len() > MAX_ARTIFACT_BYTES) {
        return Err(MediaError::Ffmpeg {
            status: "exit status: 0".into(),
            stderr: format!(
                "a sprite sheet of {} bytes is above the {MAX_ARTIFACT_BYTES}-byte artefact limit (tiles {tw}×{th})",
                big.len()
            ),
        });
    }
    Ok(SpriteSheets {
        sheets: sheets.into_iter().take(needed).collect(),
        tile_width: tw,
        tile_height: th,
        columns: SPRITE_GRID,
        rows: SPRITE_GRID,
        interval_secs: interval,
        tile_count,
    })
}

/// One tile per started interval of the duration, at least one.
fn expected_tiles(duration_secs: f64, interval: u32) -> u32 {
    let d = if duration_secs.is_finite() {
        duration_secs.max(0.0)
    } else {
        0.0
    };
    let n = (d / f64::from(interval.max(1)) - 1e-9).ceil();
    (n.min(f64::from(u32::MAX)) as u32).max(1)
}

/// The WebVTT track: `WEBVTT`, then one cue per tile, `start --> end`, covering
/// `[0, duration]` without gaps (cue `k` is `[k·I, (k+1)·I)`, the last one ends at the
/// duration), body `<sheet url>#xywh=x,y,w,h`. `sheet_urls[i]` is sheet `i`'s URL
/// (one per sheet; a missing one leaves the cue's URL empty).
pub fn sprite_vtt(sprites: &SpriteSheets, sheet_urls: &[String], duration_secs: f64) -> String {
    let interval = u64::from(sprites.interval_secs.max(1)) * 1000;
    let duration_ms = if duration_secs.is_finite() {
        (duration_secs.max(0.0) * 1000.0).round() as u64
    } else {
        0
    };
    let mut vtt = String::from("WEBVTT\n");
    let count = u64::from(sprites.tile_count);
    for k in 0..count {
        let start = k * interval;
        if k > 0 && start >= duration_ms {
            break;
        }
        let end = if k + 1 == count {
            duration_ms.max(start + 1)
        } else {
            ((k + 1) * interval).min(duration_ms.max(start + 1))
        };
        let (sheet, x, y) = sprites.tile_position(k as u32);
        let url = sheet_urls.get(sheet).map(String::as_str).unwrap_or("");
        let _ = write!(
            vtt,
            "\n{} --> {}\n{url}#xywh={x},{y},{},{}\n",
            vtt_time(start),
            vtt_time(end),
            sprites.tile_width,
            sprites.tile_height
        );
    }
    vtt
}

/// `HH:MM:SS.mmm`.
fn vtt_time(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    format!("{h:02}:{m:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheets(tile_count: u32, interval_secs: u32) -> SpriteSheets {
        SpriteSheets {
            sheets: vec![Vec::new(); tile_count.div_ceil(100) as usize],
            tile_width: 160,
            tile_height: 90,
            columns: 10,
            rows: 10,
            interval_secs,
            tile_count,
        }
    }

    #[test]
    fn only_showinfo_frame_lines_are_tiles() {
        let p = "[Parsed_showinfo_2 @ 0x563d3b9baa80]";
        assert_eq!(
            tile_line(&format!("{p} n:   0 pts:      0 pts_time:0       pos: 48")),
            Line::Count
        );
        assert_eq!(
            tile_line(&format!("{p} n:  12 pts:     12 pts_time:60 fmt:yuv420p")),
            Line::Count
        );
        assert_eq!(
            tile_line(&format!("{p} config in time_base: 5/1, frame_rate: 1/5")),
            Line::Skip
        );
        assert_eq!(
            tile_line(&format!("{p}   side data - User Data Unregistered:")),
            Line::Skip
        );
        assert_eq!(
            tile_line(&format!("{p} UUID=dc45e9bd-e6d9-48b7-962c-d820d923eeef")),
            Line::Skip
        );
        assert_eq!(
            tile_line("Error while decoding stream #0:0: Invalid data"),
            Line::Keep
        );
    }

    #[test]
    fn tiles_are_counted_per_started_interval() {
        assert_eq!(expected_tiles(23.0, 5), 5);
        assert_eq!(expected_tiles(20.0, 5), 4);
        assert_eq!(expected_tiles(20.001, 5), 5);
        assert_eq!(expected_tiles(0.4, 5), 1);
        assert_eq!(expected_tiles(120.0, 1), 120);
    }

    #[test]
    fn cues_cover_the_duration_and_point_at_their_tiles() {
        let s = sheets(5, 5);
        let urls = vec!["https://cdn/objects/a".to_string()];
        let vtt = sprite_vtt(&s, &urls, 23.4567);
        let expected = "WEBVTT\n\
            \n00:00:00.000 --> 00:00:05.000\nhttps://cdn/objects/a#xywh=0,0,160,90\n\
            \n00:00:05.000 --> 00:00:10.000\nhttps://cdn/objects/a#xywh=160,0,160,90\n\
            \n00:00:10.000 --> 00:00:15.000\nhttps://cdn/objects/a#xywh=320,0,160,90\n\
            \n00:00:15.000 --> 00:00:20.000\nhttps://cdn/objects/a#xywh=480,0,160,90\n\
            \n00:00:20.000 --> 00:00:23.457\nhttps://cdn/objects/a#xywh=640,0,160,90\n";
        assert_eq!(vtt, expected);
    }

    #[test]
    fn the_second_sheet_starts_at_tile_100() {
        let s = sheets(120, 1);
        assert_eq!(s.tile_position(0), (0, 0, 0));
        assert_eq!(s.tile_position(11), (0, 160, 90));
        assert_eq!(s.tile_position(99), (0, 1440, 810));
        assert_eq!(s.tile_position(100), (1, 0, 0));
        let urls = vec!["s0".to_string(), "s1".to_string()];
        let vtt = sprite_vtt(&s, &urls, 3725.0);
        assert!(vtt.contains("\n00:01:40.000 --> 00:01:41.000\ns1#xywh=0,0,160,90\n"));
        assert!(vtt.ends_with("\n00:01:59.000 --> 01:02:05.000\ns1#xywh=1440,90,160,90\n"));
    }
}
