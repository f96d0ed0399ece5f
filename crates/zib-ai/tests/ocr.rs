//! PP-OCRv4 through tract on frames rendered by ffmpeg's `drawtext`: the words on the
//! screen are read (allowing one wrong character a word), lines come top to bottom
//! with boxes where the text is, a blank frame has no text, a malformed frame is an
//! error. Prints the time a frame takes.

mod frames;

use std::time::Instant;

use frames::{edit_distance, models, render, text_frame};
use zib_ai::ocr::Ocr;
use zib_ai::{AiError, RgbFrame};

fn load() -> Ocr {
    let dir = models().ocr();
    Ocr::load(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot load the OCR models from {} ({e}): run scripts/install-models.sh vision",
            dir.display()
        )
    })
}

/// Every word of `lines`, upper-cased.
fn words(lines: &[zib_ai::ocr::TextLine]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.text.split_whitespace())
        .map(str::to_uppercase)
        .collect()
}

fn found(words: &[String], want: &str) -> bool {
    words.iter().any(|w| edit_distance(w, want) <= 1)
}

#[test]
fn words_on_screen_are_read_and_a_blank_frame_has_none() {
    let ocr = load();
    let frame = text_frame(640, 360, &[("FRESH PASTA RECIPE", 48, "(h-text_h)/2")]);
    let first = Instant::now();
    let lines = ocr.read(&frame).expect("ocr");
    let cold = first.elapsed();
    let again = Instant::now();
    let lines2 = ocr.read(&frame).expect("ocr");
    let warm = again.elapsed();
    eprintln!(
        "OCR 640x360 frame: {:?} cold (plans made), {:?} warm: {lines:?}",
        cold, warm
    );
    assert_eq!(lines, lines2, "the same frame reads the same");
    let words = words(&lines);
    for want in ["FRESH", "PASTA", "RECIPE"] {
        assert!(found(&words, want), "{want} not in {words:?}");
    }
    for l in &lines {
        assert!(l.confidence >= 0.5 && l.confidence <= 1.0, "{l:?}");
        // The text is in the middle band of the frame.
        let [_, y, _, h] = l.bbox;
        assert!(y > 0.25 && y + h < 0.75, "{l:?}");
    }

    let blank = render(640, 360, "color=c=0x1c2430", "null");
    let t = Instant::now();
    let none = ocr.read(&blank).expect("ocr");
    eprintln!("OCR blank 640x360 frame: {:?}", t.elapsed());
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn lines_come_top_to_bottom_with_their_boxes() {
    let ocr = load();
    let frame = text_frame(
        960,
        540,
        &[
            ("BREAKING NEWS", 56, "60"),
            ("MARKETS CLOSE HIGHER", 40, "400"),
        ],
    );
    let t = Instant::now();
    let lines = ocr.read(&frame).expect("ocr");
    eprintln!("OCR 960x540 frame: {:?}: {lines:?}", t.elapsed());
    assert!(lines.len() >= 2, "{lines:?}");
    let top: Vec<String> = words(&lines[..1]);
    let bottom: Vec<String> = words(&lines[lines.len() - 1..]);
    assert!(found(&top, "BREAKING") && found(&top, "NEWS"), "{lines:?}");
    assert!(
        found(&bottom, "MARKETS") && found(&bottom, "HIGHER"),
        "{lines:?}"
    );
    let (t, b) = (lines[0].bbox, lines[lines.len() - 1].bbox);
    assert!(t[1] < 0.25 && b[1] > 0.6, "{t:?} {b:?}");
    for l in &lines {
        let [x, y, w, h] = l.bbox;
        assert!(
            x >= 0.0 && y >= 0.0 && x + w <= 1.0001 && y + h <= 1.0001,
            "{l:?}"
        );
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let ocr = load();
    for frame in [
        RgbFrame {
            width: 10,
            height: 10,
            data: vec![0; 299],
        },
        RgbFrame {
            width: 0,
            height: 0,
            data: vec![],
        },
    ] {
        let got = ocr.read(&frame);
        assert!(matches!(got, Err(AiError::Input(_))), "{got:?}");
    }
    // Tiny and very wide frames still work.
    let tiny = render(8, 8, "color=c=white", "null");
    assert!(ocr.read(&tiny).expect("tiny").is_empty());
    let wide = render(1600, 40, "color=c=black", "null");
    assert!(ocr.read(&wide).is_ok());
}
