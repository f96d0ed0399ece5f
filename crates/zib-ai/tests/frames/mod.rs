//! What the vision tests share: the installed models (a missing model fails loudly)
//! and frames rendered by real ffmpeg straight to memory (`rawvideo` on stdout).
#![allow(dead_code)]

use std::process::Command;

use zib_ai::{ModelsDir, RgbFrame};

/// The models directory (`$ZIB_MODELS_DIR` or `~/.cache/zib/models`).
pub fn models() -> ModelsDir {
    ModelsDir::from_env()
}

/// One `w`×`h` frame of the lavfi `source` (e.g. `color=c=black`, `testsrc2`) after
/// the filters `vf`, as RGB24.
pub fn render(w: u32, h: u32, source: &str, vf: &str) -> RgbFrame {
    let sep = if source.contains('=') { ':' } else { '=' };
    let input = format!("{source}{sep}size={w}x{h}:rate=1:duration=1");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(&input)
        .args([
            "-vf",
            vf,
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
        ])
        .arg("pipe:1")
        .output()
        .expect("run ffmpeg (scripts/install-media-deps.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {input} {vf}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), (w * h * 3) as usize, "one RGB frame");
    RgbFrame {
        width: w,
        height: h,
        data: out.stdout,
    }
}

/// A bold DejaVu font (fonts-dejavu-core), found with `fc-match`.
pub fn font() -> String {
    let out = Command::new("fc-match")
        .args(["-f", "%{file}", "DejaVu Sans:bold"])
        .output()
        .expect("run fc-match (apt-get install fontconfig fonts-dejavu-core)");
    let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        file.ends_with(".ttf") && std::path::Path::new(&file).exists(),
        "no DejaVu font ({file:?}): apt-get install fonts-dejavu-core"
    );
    file
}

/// A dark `w`×`h` frame with white `texts` (text, font size, y expression), each
/// centred horizontally.
pub fn text_frame(w: u32, h: u32, texts: &[(&str, u32, &str)]) -> RgbFrame {
    let font = font();
    let vf = texts
        .iter()
        .map(|(text, size, y)| {
            format!(
                "drawtext=fontfile={font}:text='{text}':fontcolor=white:fontsize={size}:x=(w-text_w)/2:y={y}"
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    render(w, h, "color=c=0x1c2430", &vf)
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
