//! Reading what ffmpeg's HLS muxer writes.

/// Segment URIs and durations (seconds) from an HLS media playlist ffmpeg wrote, in
/// playlist order. A URI without a preceding `#EXTINF` is skipped (not a segment).
pub fn parse_media_playlist(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut duration: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let number = rest.split(',').next().unwrap_or("").trim();
            duration = number
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d >= 0.0);
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else if let Some(d) = duration.take() {
            out.push((line.to_string(), d));
        }
    }
    out
}

/// The file name ffmpeg gives segment `seq` of rung `name`: `{name}_{seq:05}.ts`.
pub fn segment_file_name(name: &str, seq: u32) -> String {
    format!("{name}_{seq:05}.ts")
}

/// The media sequence number of a segment file of rung `name` (`720p_00003.ts` → 3),
/// or `None` when `file` is not one of that rung's segments. Accepts a path or URL
/// ending in the file name.
pub fn segment_seq(name: &str, file: &str) -> Option<u32> {
    let file = file.rsplit('/').next().unwrap_or(file);
    let digits = file
        .strip_prefix(name)?
        .strip_prefix('_')?
        .strip_suffix(".ts")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ffmpeg_vod_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n\
                    #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n\
                    #EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:4.000000,\n360p_00000.ts\n\
                    #EXTINF:4.000000,\n360p_00001.ts\n#EXTINF:1.500000,\n360p_00002.ts\n\
                    #EXT-X-ENDLIST\n";
        assert_eq!(
            parse_media_playlist(text),
            vec![
                ("360p_00000.ts".to_string(), 4.0),
                ("360p_00001.ts".to_string(), 4.0),
                ("360p_00002.ts".to_string(), 1.5),
            ]
        );
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name("720p", 3), "720p_00003.ts");
        assert_eq!(segment_seq("720p", "720p_00003.ts"), Some(3));
        assert_eq!(
            segment_seq("720p", "http://127.0.0.1:9/out/720p_00012.ts"),
            Some(12)
        );
        assert_eq!(segment_seq("720p", "1080p_00003.ts"), None);
        assert_eq!(segment_seq("720p", "720p.m3u8"), None);
        assert_eq!(segment_seq("720p", "720p_.ts"), None);
        assert_eq!(segment_seq("720p", "720p_0x1.ts"), None);
    }
}
