//! NudeNet 320n through tract: ordinary frames (a colour, ffmpeg's test pattern,
//! on-screen text) score low on exposed classes, any shape of frame runs, a malformed
//! frame is an error. (No explicit images live in the repository.) Prints the time a
//! frame takes.

mod frames;

use std::time::Instant;

use frames::{models, render, text_frame};
use zib_ai::nudity::NudityDetector;
use zib_ai::{AiError, RgbFrame};

fn load() -> NudityDetector {
    let dir = models().nudenet();
    NudityDetector::load(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot load NudeNet from {} ({e}): run scripts/install-models.sh vision",
            dir.display()
        )
    })
}

#[test]
fn ordinary_frames_are_not_exposed() {
    let det = load();
    let frames = [
        ("colour", render(640, 360, "color=c=0x3060a0", "null")),
        ("testsrc", render(640, 360, "testsrc2", "null")),
        ("portrait testsrc", render(360, 640, "testsrc", "null")),
        (
            "text",
            text_frame(640, 360, &[("FRESH PASTA RECIPE", 48, "150")]),
        ),
    ];
    for (i, (name, frame)) in frames.iter().enumerate() {
        let t = Instant::now();
        let score = det.score(frame).expect("score");
        eprintln!("NudeNet {name} frame: {:?}: {score:?}", t.elapsed());
        assert!(score.exposed < 0.2, "{name}: {score:?}");
        assert!((0.0..=1.0).contains(&score.exposed));
        for (label, conf) in &score.detections {
            assert!(zib_ai::nudity::LABELS.contains(&label.as_str()));
            assert!(*conf >= 0.25 && *conf <= 1.0, "{name}: {score:?}");
        }
        if i == 0 {
            // The same frame again: the same answer.
            assert_eq!(det.score(frame).expect("score"), score);
        }
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let det = load();
    let got = det.score(&RgbFrame {
        width: 4,
        height: 4,
        data: vec![0; 47],
    });
    assert!(matches!(got, Err(AiError::Input(_))), "{got:?}");
    let tiny = render(2, 2, "color=c=red", "null");
    assert!(det.score(&tiny).expect("tiny").exposed < 0.2);
}
