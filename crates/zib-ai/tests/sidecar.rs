//! The ZibSidecar built from synthetic measurements (cuts, frame findings, a
//! transcript) with the real MiniLM model: its fields hold their invariants, survive a
//! JSON round trip, and empty or broken inputs still give a valid sidecar.

use zib_ai::embed::Embedder;
use zib_ai::ocr::TextLine;
use zib_ai::sidecar::{build, FrameFindings, VisionInputs};
use zib_ai::{ModelsDir, Segment, Transcript};
use zib_proto::pipeline::VisionTier;
use zib_proto::sidecar::{SidecarModels, ZibSidecar};

fn embedder() -> Embedder {
    let dir = ModelsDir::from_env().minilm();
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not installed in {}: run scripts/install-models.sh vision \
         (or point ZIB_MODELS_DIR at a models directory)",
        dir.display()
    );
    match Embedder::load(&dir) {
        Ok(e) => e,
        Err(e) => panic!("loading {}: {e}", dir.display()),
    }
}

fn models() -> SidecarModels {
    SidecarModels {
        ocr: "ppocr-v4".into(),
        nudity: "nudenet-320n".into(),
        embeddings: "minilm".into(),
        transcription: Some("tiny.en".into()),
        frames_sampled: 0,
    }
}

const DURATION: f64 = 130.0;
/// Where the talk moves from making pasta to planning a trip to Rome.
const TOPIC_CHANGE: f64 = 66.0;

/// Two minutes: a pasta recipe, then a trip to Rome, a call to action at the end.
fn transcript() -> Transcript {
    let lines = [
        (0.0, 6.0, "Want to know the secret to perfect fresh pasta?"),
        (
            6.0,
            13.0,
            "Today I will show you how to make it at home with just flour and eggs.",
        ),
        (
            13.0,
            21.0,
            "Pour two cups of flour on the board and crack three eggs into the middle.",
        ),
        (
            21.0,
            29.0,
            "Mix the eggs into the flour with a fork until a dough forms.",
        ),
        (
            29.0,
            38.0,
            "Knead the dough for ten minutes until it is smooth and elastic.",
        ),
        (
            38.0,
            46.0,
            "Let the dough rest while the tomato sauce simmers with garlic and basil.",
        ),
        (
            46.0,
            55.0,
            "Roll the pasta dough thin and cut it into long ribbons of tagliatelle.",
        ),
        (
            55.0,
            63.0,
            "Boil the noodles for two minutes and toss them with the tomato sauce.",
        ),
        (
            66.0,
            74.0,
            "Next week we fly to Rome to explore the city for our travel series.",
        ),
        (
            74.0,
            83.0,
            "We booked a small hotel near the Colosseum and the ancient forum.",
        ),
        (
            83.0,
            92.0,
            "Our flight lands early so we can walk through the old streets and piazzas.",
        ),
        (
            92.0,
            101.0,
            "We will visit the Vatican museums and climb the dome of Saint Peter's.",
        ),
        (
            101.0,
            110.0,
            "Pack comfortable shoes because sightseeing in Rome means walking all day.",
        ),
        (
            110.0,
            119.0,
            "Subscribe and hit the bell so you do not miss the Rome travel vlog.",
        ),
        (
            119.0,
            128.0,
            "And that is the whole plan, see you in Italy.",
        ),
    ];
    Transcript {
        language: "en".into(),
        segments: lines
            .iter()
            .map(|&(a, b, t)| Segment {
                start_secs: a,
                end_secs: b,
                text: t.into(),
            })
            .collect(),
    }
}

fn line(text: &str, confidence: f32) -> TextLine {
    TextLine {
        text: text.into(),
        confidence,
        bbox: [0.1, 0.8, 0.6, 0.1],
    }
}

fn inputs() -> VisionInputs {
    let cuts = vec![
        (12.5, 0.6),
        (28.7, 0.45),
        (45.2, 0.7),
        (65.8, 0.9),
        (82.4, 0.5),
        (100.3, 0.65),
        (118.9, 0.8),
    ];
    let frames = (0..65)
        .map(|i| {
            let t = f64::from(i) * 2.0;
            let mut text = Vec::new();
            if (0.0..6.0).contains(&t) {
                text.push(line("FRESH PASTA AT HOME", 0.95));
            }
            if (66.0..72.0).contains(&t) {
                text.push(line("Next stop: Rome", 0.9));
            }
            // A channel logo on every frame: never a title.
            text.push(line("@pastachannel", 0.8));
            FrameFindings {
                time_secs: t,
                text,
                nudity: if i == 40 { 0.35 } else { 0.02 },
                quality: 0.3 + 0.6 * ((f64::from(i) * 0.7).sin().abs() as f32),
            }
        })
        .collect::<Vec<_>>();
    VisionInputs {
        file_id: "file_0123".into(),
        tier: VisionTier::Standard,
        duration_secs: DURATION,
        cuts,
        frames,
        transcript: Some(transcript()),
        models: SidecarModels {
            frames_sampled: 65,
            ..models()
        },
    }
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

/// `MM:SS Title` or `H:MM:SS Title` → seconds.
fn parse_youtube_line(l: &str) -> Option<(u64, String)> {
    let (stamp, title) = l.split_once(' ')?;
    let mut secs = 0u64;
    for part in stamp.split(':') {
        if part.len() != 2 && !(secs == 0 && part.len() == 1) {
            return None;
        }
        secs = secs * 60 + part.parse::<u64>().ok()?;
    }
    (!title.trim().is_empty()).then(|| (secs, title.to_string()))
}

fn assert_valid(s: &ZibSidecar) {
    let d = s.duration_secs;
    assert!(d.is_finite() && d >= 0.0);
    // Scenes cover [0, duration] in order, each keyframe inside its scene.
    if d > 0.0 {
        assert_eq!(s.scenes.first().map(|x| x.start_secs), Some(0.0));
        assert_eq!(s.scenes.last().map(|x| x.end_secs), Some(d));
    }
    for (i, sc) in s.scenes.iter().enumerate() {
        assert_eq!(sc.index as usize, i);
        assert!(sc.start_secs < sc.end_secs, "{sc:?}");
        assert!(sc.keyframe_secs >= sc.start_secs && sc.keyframe_secs <= sc.end_secs);
        assert!(in_unit(sc.cut_score));
    }
    for w in s.scenes.windows(2) {
        assert_eq!(w[0].end_secs, w[1].start_secs);
    }
    // Chapters: from 0, contiguous, to the end; the YouTube lines say the same.
    if d > 0.0 {
        assert_eq!(s.chapters.first().map(|c| c.start_secs), Some(0.0));
        assert_eq!(s.chapters.last().map(|c| c.end_secs), Some(d));
    }
    for w in s.chapters.windows(2) {
        assert_eq!(w[0].end_secs, w[1].start_secs);
    }
    assert!(s.chapters.iter().all(|c| !c.title.trim().is_empty()));
    if !s.chapters_youtube_format.is_empty() {
        let lines: Vec<(u64, String)> = s
            .chapters_youtube_format
            .lines()
            .map(|l| parse_youtube_line(l).unwrap_or_else(|| panic!("bad line {l:?}")))
            .collect();
        assert!(lines.len() >= 3);
        assert_eq!(lines.len(), s.chapters.len());
        assert_eq!(lines[0].0, 0);
        assert!(lines.windows(2).all(|w| w[1].0 >= w[0].0 + 10));
    }
    for o in &s.on_screen_text {
        assert!(o.start_secs <= o.end_secs && o.end_secs <= d && in_unit(o.confidence));
    }
    let c = &s.content_classification;
    assert!(c
        .iab_categories
        .iter()
        .all(|x| in_unit(x.score) && (x.tier == 1 || x.tier == 2)));
    assert!(c
        .iab_categories
        .windows(2)
        .all(|w| w[0].score >= w[1].score));
    assert!(in_unit(c.garm.brand_safety_score) && in_unit(c.garm.nudity_score));
    assert!(["low", "medium", "high"].contains(&c.garm.risk_level.as_str()));
    for clip in &s.clip_suggestions {
        assert!(in_unit(clip.virality_score));
        assert!(clip.start_secs >= 0.0 && clip.end_secs <= d && clip.start_secs < clip.end_secs);
        let len = clip.end_secs - clip.start_secs;
        assert!(
            len <= 60.0 + 1e-9 && (len >= 15.0 - 1e-9 || len >= d - 1e-9),
            "{clip:?}"
        );
    }
    assert!(s
        .clip_suggestions
        .windows(2)
        .all(|w| w[0].virality_score >= w[1].virality_score));
    for t in &s.thumbnail_candidates {
        assert!(in_unit(t.score) && t.time_secs >= 0.0 && t.time_secs <= d);
    }
    assert!(s
        .thumbnail_candidates
        .windows(2)
        .all(|w| w[0].score >= w[1].score));
    let summary = &s.scene_understanding.executive_summary;
    assert!(summary.split_whitespace().count() <= 200);
    for intent in s.transcript.segments.iter().map(|x| x.intent.as_str()) {
        assert!(["hook", "setup", "payoff", "cta", "body"].contains(&intent));
    }
    // serde_json refuses NaN: the sidecar must serialise, and read back the same.
    let json = serde_json::to_string(s).expect("the sidecar serialises");
    let back: ZibSidecar = serde_json::from_str(&json).expect("and parses back");
    assert_eq!(&back, s);
}

#[test]
fn a_talk_with_cuts_and_text_fills_every_field() {
    let e = embedder();
    let inputs = inputs();
    let started = std::time::Instant::now();
    let s = build(&inputs, &e, "2026-11-26T20:00:00Z".into()).expect("build");
    eprintln!("built in {:?}", started.elapsed());
    eprintln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    assert_valid(&s);

    assert_eq!(s.file_id, "file_0123");
    assert_eq!(s.tier, "standard");
    assert_eq!(s.models.frames_sampled, 65);
    assert_eq!(s.scenes.len(), inputs.cuts.len() + 1);
    // Keyframes keep clear of the cuts when they can.
    for sc in &s.scenes {
        let near = inputs
            .cuts
            .iter()
            .any(|(c, _)| (sc.keyframe_secs - c).abs() < 0.3);
        assert!(!near, "keyframe at a cut: {sc:?}");
    }
    // Text runs: the title card is one entry; the logo too, over the whole video.
    let title: Vec<_> = s
        .on_screen_text
        .iter()
        .filter(|o| o.text == "FRESH PASTA AT HOME")
        .collect();
    assert_eq!(title.len(), 1);
    assert_eq!(title[0].start_secs, 0.0);
    assert!((title[0].end_secs - 6.0).abs() <= 2.0);

    // Transcript and intents.
    let segs = &s.transcript.segments;
    assert_eq!(segs.len(), 15);
    assert_eq!(s.transcript.language.as_deref(), Some("en"));
    assert_eq!(segs[0].intent, "hook");
    assert_eq!(segs[13].intent, "cta");
    assert_eq!(segs[14].intent, "payoff");
    assert!(segs.iter().any(|x| x.intent == "body"));
    assert!(s
        .transcript
        .full_text
        .starts_with("Want to know the secret"));

    // Chapters: one starts within a few seconds of where the talk turns to Rome.
    assert!(s.chapters.len() >= 2, "{:?}", s.chapters);
    let turn = s
        .chapters
        .iter()
        .skip(1)
        .map(|c| (c.start_secs - TOPIC_CHANGE).abs())
        .fold(f64::MAX, f64::min);
    assert!(
        turn <= 5.0,
        "no chapter near the topic change: {:?}",
        s.chapters
    );
    assert!(s.chapters.iter().all(|c| !c.title.contains("pastachannel")));
    assert!(
        !s.chapters_youtube_format.is_empty(),
        "4 chapters ≥ 20 s fit in 130 s"
    );

    // IAB: food and travel categories (tier 1 or their tier 2s) lead.
    let cats = zib_ai::iab::categories();
    let family = |id: &str| {
        cats.iter()
            .find(|c| c.id == id)
            .map(|c| c.parent.unwrap_or(c.id))
            .unwrap_or("")
            .to_string()
    };
    let top: Vec<String> = s
        .content_classification
        .iab_categories
        .iter()
        .map(|c| family(&c.id))
        .collect();
    assert!(
        top.iter().take(5).any(|f| f == "210"),
        "no Food & Drink in {top:?}"
    );
    assert!(
        top.iter().take(5).any(|f| f == "653"),
        "no Travel in {top:?}"
    );

    // GARM: the one frame at 0.35 makes the video medium risk, not flagged.
    let g = &s.content_classification.garm;
    assert_eq!(
        (g.nudity_score, g.brand_safety_score, g.risk_level.as_str()),
        (0.35, 0.65, "medium")
    );
    assert!(g.flagged_secs.is_empty());

    // Clips and thumbnails.
    assert!(!s.clip_suggestions.is_empty());
    assert!(s.clip_suggestions.len() <= 5);
    assert!(!s.thumbnail_candidates.is_empty());
    for t in &s.thumbnail_candidates {
        assert!(inputs
            .cuts
            .iter()
            .all(|(c, _)| (t.time_secs - c).abs() >= 0.3));
        // The channel logo on every frame earns no text bonus.
        let titled = t.time_secs < 6.0 || (66.0..72.0).contains(&t.time_secs);
        assert_eq!(t.reason.contains("on-screen text"), titled, "{t:?}");
    }

    // The summary is made of the transcript's own sentences, in order.
    let summary = &s.scene_understanding.executive_summary;
    assert!(!summary.is_empty());
    let mut from = 0;
    for sentence in summary
        .split_inclusive(['.', '?', '!'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
    {
        let at = s.transcript.full_text[from..]
            .find(sentence)
            .unwrap_or_else(|| panic!("{sentence:?} is not a transcript sentence (in order)"));
        from += at + sentence.len();
    }
    let words = summary.split_whitespace().count();
    let all = s.transcript.full_text.split_whitespace().count();
    assert!(words >= 150.min(all), "{words} words");

    let k = &s.scene_understanding.keywords;
    assert!(!k.is_empty() && k.len() <= 10);
    assert!(
        k.iter()
            .any(|w| w == "rome" || w == "dough" || w == "pasta"),
        "{k:?}"
    );
    assert!(!k
        .iter()
        .any(|w| ["the", "and", "you", "will"].contains(&w.as_str())));
}

#[test]
fn nothing_measured_still_gives_a_valid_sidecar() {
    let e = embedder();
    let mut inputs = VisionInputs {
        file_id: "f".into(),
        tier: VisionTier::Hq,
        duration_secs: 0.0,
        cuts: Vec::new(),
        frames: Vec::new(),
        transcript: None,
        models: SidecarModels {
            transcription: None,
            ..models()
        },
    };
    let s = build(&inputs, &e, "2026-11-26T20:00:00Z".into()).expect("build");
    assert_valid(&s);
    assert_eq!(s.tier, "hq");
    assert!(s.scenes.is_empty() && s.chapters.is_empty() && s.clip_suggestions.is_empty());
    assert_eq!(s.transcript.language, None);
    assert_eq!(s.transcript.full_text, "");
    assert_eq!(s.chapters_youtube_format, "");
    assert_eq!(s.scene_understanding.executive_summary, "");
    assert!(s.content_classification.iab_categories.is_empty());
    assert_eq!(s.content_classification.garm.brand_safety_score, 1.0);

    // A silent, textless 40 s video: one scene per shot, chapters, no words.
    inputs.duration_secs = 40.0;
    inputs.cuts = vec![(10.0, 0.5), (25.0, 0.8)];
    inputs.frames = (0..20)
        .map(|i| FrameFindings {
            time_secs: f64::from(i) * 2.0,
            text: Vec::new(),
            nudity: 0.0,
            quality: 0.5,
        })
        .collect();
    inputs.transcript = Some(Transcript {
        language: "en".into(),
        segments: Vec::new(),
    });
    let s = build(&inputs, &e, "2026-11-26T20:00:00Z".into()).expect("build");
    assert_valid(&s);
    assert_eq!(s.scenes.len(), 3);
    assert_eq!(
        s.chapters.len(),
        1,
        "40 s holds one chapter of ≥ 20 s per 30 s"
    );
    assert_eq!(s.chapters_youtube_format, "", "YouTube needs 3 chapters");
    assert!(s.scene_understanding.keywords.is_empty());
    assert!(!s.thumbnail_candidates.is_empty());
}

#[test]
fn broken_measurements_never_make_nan() {
    let e = embedder();
    let mut inputs = inputs();
    inputs.duration_secs = f64::NAN;
    inputs.cuts.push((f64::NAN, f64::INFINITY));
    inputs.cuts.push((-3.0, -1.0));
    inputs.frames.push(FrameFindings {
        time_secs: f64::INFINITY,
        text: vec![line("", f32::NAN)],
        nudity: f32::NAN,
        quality: f32::NEG_INFINITY,
    });
    inputs.frames.push(FrameFindings {
        time_secs: 500.0,
        text: vec![line("late text", 2.0)],
        nudity: 7.0,
        quality: f32::NAN,
    });
    if let Some(t) = inputs.transcript.as_mut() {
        t.segments.push(Segment {
            start_secs: f64::NAN,
            end_secs: 1.0,
            text: "broken".into(),
        });
        t.segments.push(Segment {
            start_secs: 5.0,
            end_secs: 4.0,
            text: "   ".into(),
        });
    }
    let s = build(&inputs, &e, "2026-11-26T20:00:00Z".into()).expect("build");
    assert_valid(&s);
    assert_eq!(
        s.duration_secs, 500.0,
        "an unknown duration is the last thing seen"
    );
    assert_eq!(s.content_classification.garm.nudity_score, 1.0);
}
