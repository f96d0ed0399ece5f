//! The whole chain a player sees: a rung from `encode_rung`, each segment encrypted
//! by `zib_crypto::hls` with the sequence-number IV, a playlist naming only the key
//! (no IV attribute) — and ffmpeg's HLS demuxer plays it back frame for frame.

mod common;

use std::path::Path;
use std::process::Command;

use common::{clip, files, make_clip, sink, tools, wait_for_rung, FileOpts};
use tokio_util::sync::CancellationToken;
use zib_crypto::hls::{encrypt_segment, iv_for_sequence};
use zib_media::{
    encode_rung, parse_media_playlist, plan_ladder, probe, segment_seq, RungJob, SEGMENT_SECS,
};

/// ffmpeg's `framemd5` of every decoded frame of `playlist`, or its error output.
fn decoded_frames(playlist: &Path) -> Result<String, String> {
    let out = Command::new(tools().ffmpeg)
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-allowed_extensions",
            "ALL",
            "-i",
        ])
        .arg(playlist)
        .args(["-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let frames = stdout.lines().filter(|l| !l.starts_with('#')).count();
    if out.status.success() && frames > 0 {
        Ok(stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// ffprobe's list of every packet of `playlist` (timing, size, position, stream id,
/// payload MD5), or its error output.
fn packets(playlist: &Path) -> Result<String, String> {
    let out = Command::new(tools().ffprobe)
        .args(["-v", "error", "-allowed_extensions", "ALL", "-show_packets"])
        .args(["-show_data_hash", "md5", "-of", "csv"])
        .arg(playlist)
        .output()
        .expect("run ffprobe");
    if out.status.success() && !out.stdout.is_empty() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Drops the SDT, PAT and PMT packets a segment starts with, so the segment's first
/// 16 bytes (the only ones a wrong IV garbles in CBC) are the header of a video PES
/// packet, whose damage the demuxer cannot hide. The stream stays playable: one
/// MPEG-TS demuxer reads the whole playlist and has the tables from segment 0.
fn strip_leading_tables(ts: &[u8]) -> &[u8] {
    let mut rest = ts;
    while rest.len() >= 188
        && matches!(
            u16::from(rest[1] & 0x1f) << 8 | u16::from(rest[2]),
            0x0000 | 0x0011 | 0x1000
        )
    {
        rest = &rest[188..];
    }
    rest
}

#[tokio::test]
async fn ffmpeg_plays_segments_we_encrypt_with_the_sequence_number_iv() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(dir.path(), "src.mp4", clip(320, 180, 6.0, true), &[]);
    let source = files(dir.path(), FileOpts::default()).await;
    let (out, received) = sink().await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    let rung = plan_ladder(&p).remove(0);
    let job = RungJob {
        tools: &tools,
        input: &input,
        rung: &rung,
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &out.url("hls"),
    };
    encode_rung(job, |_| {}, CancellationToken::new())
        .await
        .expect("encode");
    let name = &rung.plan.name;
    let playlist = wait_for_rung(&received, "hls", &format!("{name}.m3u8")).await;
    let segments = parse_media_playlist(&playlist);
    assert_eq!(segments.len(), 2, "{playlist}");

    let key: [u8; 16] = *b"zib-hls-test-key";
    let key_path = dir.path().join("key.bin");
    std::fs::write(&key_path, key).expect("write key");
    for (file, _) in &segments {
        let plain = received.get(&format!("hls/{file}")).expect("segment");
        let seq = segment_seq(name, file).expect("a segment name");
        // Segment 0's IV is zero in any byte order; from segment 1 on, the IV decides.
        let plain = if seq > 0 {
            strip_leading_tables(&plain).to_vec()
        } else {
            plain.to_vec()
        };
        assert_eq!(plain.first(), Some(&0x47), "{file} starts on a TS packet");
        std::fs::write(dir.path().join(format!("plain_{file}")), &plain).expect("write");
        let sealed = encrypt_segment(&key, &iv_for_sequence(u64::from(seq)), &plain);
        assert_ne!(sealed[..188], plain[..188]);
        std::fs::write(dir.path().join(format!("enc_{file}")), sealed).expect("write");
    }
    // What the CDN serves: ffmpeg's playlist with the key line before the segments.
    let key_line = format!(
        "#EXT-X-KEY:METHOD=AES-128,URI=\"file://{}\"",
        key_path.display()
    );
    let mut plain_list = String::new();
    let mut enc_list = String::new();
    for line in playlist.lines() {
        if line.starts_with("#EXTINF") && !enc_list.contains("#EXT-X-KEY") {
            enc_list.push_str(&key_line);
            enc_list.push('\n');
        }
        let is_uri = !line.starts_with('#') && !line.trim().is_empty();
        plain_list.push_str(&if is_uri {
            format!("plain_{line}")
        } else {
            line.to_string()
        });
        enc_list.push_str(&if is_uri {
            format!("enc_{line}")
        } else {
            line.to_string()
        });
        plain_list.push('\n');
        enc_list.push('\n');
    }
    let plain_m3u8 = dir.path().join("plain.m3u8");
    let enc_m3u8 = dir.path().join("enc.m3u8");
    std::fs::write(&plain_m3u8, plain_list).expect("write");
    std::fs::write(&enc_m3u8, &enc_list).expect("write");
    assert!(
        !enc_list.contains("IV="),
        "the IV is the HLS default, never written"
    );

    let expected = decoded_frames(&plain_m3u8).expect("the plain rung plays");
    let got = decoded_frames(&enc_m3u8).expect("the encrypted rung plays");
    assert!(
        got == expected,
        "decrypted frames differ from the encoded frames"
    );
    assert!(
        got.lines().filter(|l| l.starts_with("0,")).count() >= 150,
        "6 s of 30 fps video"
    );
    let (got_packets, want_packets) = (
        packets(&enc_m3u8).expect("the encrypted rung demuxes"),
        packets(&plain_m3u8).expect("the plain rung demuxes"),
    );
    let first_difference = got_packets
        .lines()
        .zip(want_packets.lines())
        .find(|(g, w)| g != w);
    assert_eq!(
        first_difference, None,
        "the demuxer reads exactly the plain segments back"
    );
    assert_eq!(got_packets.lines().count(), want_packets.lines().count());

    // The wrong key does not play (or not the same pictures).
    std::fs::write(&key_path, [0u8; 16]).expect("write key");
    assert!(
        decoded_frames(&enc_m3u8).ok() != Some(expected),
        "a wrong key must not play"
    );
}
