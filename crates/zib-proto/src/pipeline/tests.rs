use serde_json::json;

use super::*;

fn parse(v: Value) -> Result<Pipeline, PipelineError> {
    Pipeline::from_json(Some(&v))
}

/// The field an invalid declaration is refused for.
fn refused(v: Value) -> PipelineError {
    match parse(v.clone()) {
        Ok(p) => panic!("{v} was accepted as {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn absent_null_and_empty_declare_nothing() {
    for p in [
        Pipeline::from_json(None),
        parse(Value::Null),
        parse(json!({})),
    ] {
        let p = p.unwrap();
        assert_eq!(p, Pipeline::default());
        assert!(p.required_capabilities().is_empty());
        assert!(p.stages().is_empty());
        assert_eq!(p.thumbnails, Thumbnails::On(ThumbnailSettings::default()));
    }
}

#[test]
fn the_reference_example_parses_with_every_field() {
    let p = parse(json!({
        "encode": true,
        "transcription": "recommended",
        "vision": "standard",
        "thumbnails": { "poster": { "at": "10%" }, "sprite": { "interval": 5, "width": 160 } },
        "aspect_variants": ["9:16"],
        "webhook_url": "https://yourapp.com/api/zib-pipeline-event",
        "webhook_secret": "whsec_abc",
    }))
    .unwrap();
    assert_eq!(
        p,
        Pipeline {
            encode: true,
            transcription: Some(TranscriptionTier::Recommended),
            vision: Some(VisionTier::Standard),
            thumbnails: Thumbnails::On(ThumbnailSettings {
                poster_at: Some(PosterAt::Percent(10.0)),
                sprite_interval_secs: Some(5),
                sprite_width_px: Some(160),
            }),
            aspect_variants: vec![AspectRatio::Vertical9x16],
            webhook_url: Some("https://yourapp.com/api/zib-pipeline-event".into()),
            webhook_secret: Some("whsec_abc".into()),
            capabilities: vec![],
        }
    );
    assert_eq!(
        p.required_capabilities(),
        ["encode", "transcription:recommended", "vision:standard"]
    );
    assert_eq!(
        p.stages(),
        [Stage::Encoding, Stage::Transcription, Stage::Vision]
    );
}

#[test]
fn every_tier_maps_to_its_capability() {
    for t in TranscriptionTier::ALL {
        let p = parse(json!({ "transcription": t.as_str() })).unwrap();
        assert_eq!(p.transcription, Some(t));
        assert_eq!(
            p.required_capabilities(),
            [format!("transcription:{}", t.as_str())]
        );
    }
    for v in VisionTier::ALL {
        let p = parse(json!({ "vision": v.as_str() })).unwrap();
        assert_eq!(p.vision, Some(v));
        assert_eq!(
            p.required_capabilities(),
            [format!("vision:{}", v.as_str())]
        );
    }
    assert_eq!(
        parse(json!({"encode": true}))
            .unwrap()
            .required_capabilities(),
        ["encode"]
    );
    let off = parse(json!({"encode": false, "transcription": null, "vision": null})).unwrap();
    assert!(off.required_capabilities().is_empty());
}

#[test]
fn unknown_tiers_name_their_field() {
    let e = refused(json!({"transcription": "ultra"}));
    assert_eq!(e.field, "pipeline.transcription");
    assert_eq!(
        e.to_string(),
        "pipeline.transcription: unknown tier \"ultra\" (expected fastest, recommended, accurate)"
    );
    let e = refused(json!({"vision": "4k"}));
    assert_eq!(e.field, "pipeline.vision");
    assert!(e.reason.contains("standard, hq"), "{e}");
    assert_eq!(refused(json!({"vision": true})).field, "pipeline.vision");
    assert_eq!(
        refused(json!({"transcription": 3})).field,
        "pipeline.transcription"
    );
    // Tier names are exact.
    assert_eq!(
        refused(json!({"transcription": "Accurate"})).field,
        "pipeline.transcription"
    );
}

#[test]
fn encode_must_be_a_boolean() {
    let e = refused(json!({"encode": "yes"}));
    assert_eq!(e.field, "pipeline.encode");
    assert_eq!(e.reason, "must be true or false");
}

#[test]
fn the_older_encoding_key_means_encode() {
    assert!(parse(json!({"encoding": true})).unwrap().encode);
    assert_eq!(
        parse(json!({"encoding": null})).unwrap(),
        Pipeline::default()
    );
    assert_eq!(
        refused(json!({"encoding": "hls"})).field,
        "pipeline.encoding"
    );
}

#[test]
fn a_non_object_or_an_unknown_field_is_refused() {
    for v in [json!([]), json!("encode"), json!(true), json!(1)] {
        let e = refused(v);
        assert_eq!(e.field, "pipeline");
        assert_eq!(e.reason, "must be an object");
    }
    let e = refused(json!({"encode": true, "upscale": "4k"}));
    assert_eq!(e.field, "pipeline");
    assert!(e.reason.starts_with("unknown field \"upscale\""), "{e}");
    assert!(e.reason.contains("aspect_variants"), "{e}");
}

#[test]
fn thumbnails_take_all_four_documented_shapes() {
    let on = Thumbnails::On(ThumbnailSettings::default());
    assert_eq!(parse(json!({})).unwrap().thumbnails, on);
    assert_eq!(parse(json!({"thumbnails": true})).unwrap().thumbnails, on);
    assert_eq!(parse(json!({"thumbnails": null})).unwrap().thumbnails, on);
    assert_eq!(
        parse(json!({"thumbnails": false})).unwrap().thumbnails,
        Thumbnails::Off
    );
    // Any subset of the fields; the rest keep their defaults.
    let p = parse(json!({"thumbnails": {"poster": {"at": "5s"}}})).unwrap();
    let Thumbnails::On(s) = p.thumbnails else {
        panic!("thumbnails off")
    };
    assert_eq!(s.poster_at, Some(PosterAt::Seconds(5.0)));
    assert_eq!(s.sprite_interval_secs(), 5);
    assert_eq!(s.sprite_width_px(), 160);
    let p = parse(json!({"thumbnails": {"sprite": {"width": 320}}})).unwrap();
    let Thumbnails::On(s) = p.thumbnails else {
        panic!("thumbnails off")
    };
    assert_eq!(s.poster_at, None);
    assert_eq!(s.sprite_interval_secs(), 5);
    assert_eq!(s.sprite_width_px(), 320);
    // Thumbnails alone run nothing: they come with an encode.
    assert!(p.required_capabilities().is_empty());
}

#[test]
fn bad_thumbnail_values_name_the_nested_field() {
    for (v, field) in [
        (json!("yes"), "pipeline.thumbnails"),
        (json!({"cover": {}}), "pipeline.thumbnails"),
        (json!({"poster": "10%"}), "pipeline.thumbnails.poster"),
        (
            json!({"poster": {"time": "10%"}}),
            "pipeline.thumbnails.poster",
        ),
        (
            json!({"poster": {"at": "150%"}}),
            "pipeline.thumbnails.poster.at",
        ),
        (
            json!({"poster": {"at": "-1s"}}),
            "pipeline.thumbnails.poster.at",
        ),
        (
            json!({"poster": {"at": "10"}}),
            "pipeline.thumbnails.poster.at",
        ),
        (
            json!({"poster": {"at": 10}}),
            "pipeline.thumbnails.poster.at",
        ),
        (
            json!({"poster": {"at": "infs"}}),
            "pipeline.thumbnails.poster.at",
        ),
        (
            json!({"sprite": {"interval": 0}}),
            "pipeline.thumbnails.sprite.interval",
        ),
        (
            json!({"sprite": {"interval": 2.5}}),
            "pipeline.thumbnails.sprite.interval",
        ),
        (
            json!({"sprite": {"width": 8}}),
            "pipeline.thumbnails.sprite.width",
        ),
        (
            json!({"sprite": {"width": "160"}}),
            "pipeline.thumbnails.sprite.width",
        ),
        (
            json!({"sprite": {"height": 90}}),
            "pipeline.thumbnails.sprite",
        ),
    ] {
        assert_eq!(refused(json!({ "thumbnails": v })).field, field, "{v}");
    }
}

#[test]
fn aspect_variants_accept_only_9_16_and_need_the_encoder() {
    let p = parse(json!({"aspect_variants": ["9:16", "9:16"]})).unwrap();
    assert_eq!(p.aspect_variants, [AspectRatio::Vertical9x16]);
    assert_eq!(p.required_capabilities(), ["encode"]);
    assert!(parse(json!({"aspect_variants": []}))
        .unwrap()
        .aspect_variants
        .is_empty());
    for v in [json!(["4:5"]), json!("9:16"), json!([916]), json!(["16:9"])] {
        let e = refused(json!({ "aspect_variants": v }));
        assert_eq!(e.field, "pipeline.aspect_variants", "{v}");
    }
    assert!(refused(json!({"aspect_variants": ["4:5"]}))
        .reason
        .contains("\"4:5\""));
}

#[test]
fn webhook_fields_keep_their_rules() {
    let p = parse(json!({"webhook_url": "https://a.example/h", "webhook_secret": "s"})).unwrap();
    assert_eq!(p.webhook_url.as_deref(), Some("https://a.example/h"));
    assert_eq!(p.webhook_secret.as_deref(), Some("s"));
    // Blank is absent.
    let p = parse(json!({"webhook_url": "  ", "webhook_secret": ""})).unwrap();
    assert_eq!((p.webhook_url, p.webhook_secret), (None, None));
    let e = refused(json!({"webhook_url": 5}));
    assert_eq!(e.to_string(), "pipeline.webhook_url: must be a string");
    let e = refused(json!({"webhook_url": "https://a.example/h", "webhook_secret": []}));
    assert_eq!(e.to_string(), "pipeline.webhook_secret: must be a string");
    let e = refused(json!({"webhook_secret": "whsec_x"}));
    assert_eq!(
        e.to_string(),
        "pipeline.webhook_secret: is only meaningful with pipeline.webhook_url"
    );
    // Webhooks alone run nothing.
    let p = parse(json!({"webhook_url": "https://a.example/h"})).unwrap();
    assert!(p.required_capabilities().is_empty());
}

#[test]
fn legacy_capabilities_are_honoured() {
    let p = parse(json!({"capabilities": ["encode", "transcription", "vision"]})).unwrap();
    assert_eq!(
        p.required_capabilities(),
        ["encode", "transcription:recommended", "vision:standard"]
    );
    let p = parse(json!({"capabilities": ["vision:hq", "encoding", "encode"]})).unwrap();
    assert_eq!(
        p.capabilities,
        [Capability::Vision(VisionTier::Hq), Capability::Encode]
    );
    assert_eq!(p.required_capabilities(), ["encode", "vision:hq"]);
    // A declared tier wins over the legacy entry for the same stage.
    let p = parse(json!({"transcription": "accurate", "capabilities": ["transcription"]})).unwrap();
    assert_eq!(p.required_capabilities(), ["transcription:accurate"]);
    for v in [
        json!(["ocr"]),
        json!(["transcription:ultra"]),
        json!("encode"),
        json!([1]),
    ] {
        let e = refused(json!({ "capabilities": v }));
        assert_eq!(e.field, "pipeline.capabilities", "{v}");
    }
}

#[test]
fn a_top_level_legacy_array_joins_the_declaration() {
    let p = Pipeline::from_json(Some(&json!({"encode": true})))
        .and_then(|p| p.with_legacy_capabilities(Some(&json!(["vision", "encode"]))))
        .unwrap();
    assert_eq!(p.required_capabilities(), ["encode", "vision:standard"]);
    let e = Pipeline::default()
        .with_legacy_capabilities(Some(&json!(["teleport"])))
        .unwrap_err();
    assert_eq!(e.field, "capabilities");
    let none = Pipeline::default().with_legacy_capabilities(None).unwrap();
    assert_eq!(none, Pipeline::default());
}

#[test]
fn capability_strings_round_trip() {
    let all = [Capability::Encode]
        .into_iter()
        .chain(TranscriptionTier::ALL.map(Capability::Transcription))
        .chain(VisionTier::ALL.map(Capability::Vision));
    for c in all {
        assert_eq!(c.to_string().parse::<Capability>(), Ok(c));
    }
    assert_eq!(
        "vision".parse(),
        Ok(Capability::Vision(VisionTier::Standard))
    );
    assert!("encode:fast".parse::<Capability>().is_err());
}

#[test]
fn json_round_trips_and_declared_hides_the_secret() {
    for v in [
        json!({}),
        json!({"encode": true, "transcription": "fastest", "vision": "hq"}),
        json!({"thumbnails": false}),
        json!({"thumbnails": {"poster": {"at": "2.5s"}, "sprite": {"interval": 10}}}),
        json!({"aspect_variants": ["9:16"], "capabilities": ["encode", "vision:hq"]}),
        json!({"webhook_url": "https://a.example/h", "webhook_secret": "whsec_x"}),
    ] {
        let p = parse(v.clone()).unwrap();
        assert_eq!(p.to_json(), v);
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
        assert_eq!(serde_json::from_value::<Pipeline>(v.clone()).unwrap(), p);
        assert_eq!(Pipeline::try_from(&v).unwrap(), p);
    }
    let p =
        parse(json!({"webhook_url": "https://a.example/h", "webhook_secret": "whsec_x"})).unwrap();
    assert_eq!(p.declared(), json!({"webhook_url": "https://a.example/h"}));
    // Serde refusals carry the same sentence.
    let err = serde_json::from_value::<Pipeline>(json!({"vision": "x"})).unwrap_err();
    assert!(err.to_string().starts_with("pipeline.vision: "), "{err}");
}

/// `poster.at` is read by the grammar the OpenAPI document states as a pattern
/// (`^([0-9]+(\.[0-9]+)?s|0*[0-9]{1,2}(\.[0-9]+)?%|0*100(\.0+)?%)$`), so schemathesis
/// finds no string one accepts and the other refuses.
#[test]
fn poster_at_follows_the_documented_pattern_exactly() {
    let at =
        |s: &str| match parse(json!({"thumbnails": {"poster": {"at": s}}})).map(|p| p.thumbnails) {
            Ok(Thumbnails::On(t)) => t.poster_at,
            _ => None,
        };
    assert_eq!(at("100%"), Some(PosterAt::Percent(100.0)));
    assert_eq!(at("0100.000%"), Some(PosterAt::Percent(100.0)));
    assert_eq!(at("99.999%"), Some(PosterAt::Percent(99.999)));
    assert_eq!(at("0%"), Some(PosterAt::Percent(0.0)));
    assert_eq!(at("2.5s"), Some(PosterAt::Seconds(2.5)));
    assert!(
        matches!(at(&format!("{}s", "9".repeat(400))), Some(PosterAt::Seconds(s)) if s.is_finite())
    );
    for refused in [
        "100.0000000000000001%",
        "101%",
        " 5s",
        "5s ",
        "5s\n",
        "+5s",
        ".5s",
        "5.s",
        "1e2s",
        "5",
        "%",
        "s",
    ] {
        assert_eq!(at(refused), None, "{refused:?} should be refused");
    }
}

/// Blank is empty or ASCII whitespace (`^[ \t\n\f\r]*$` in the document); other
/// whitespace is text, for the URL check to refuse.
#[test]
fn blank_webhook_fields_are_ascii_whitespace() {
    let p = parse(json!({"webhook_url": " \t\n\u{c}\r"})).unwrap();
    assert_eq!(p.webhook_url, None);
    let p = parse(json!({"webhook_url": "\u{a0}", "webhook_secret": "\u{b}"})).unwrap();
    assert_eq!(p.webhook_url.as_deref(), Some("\u{a0}"));
    assert_eq!(p.webhook_secret.as_deref(), Some("\u{b}"));
}
