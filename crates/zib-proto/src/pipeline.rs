//! The typed `pipeline` declaration of `POST /v1/api/upload/initiate` (API reference:
//! "Upload Pipeline", "Node selection", "Thumbnails", "Aspect variants", "Compute /
//! AI"), and the node capabilities it requires.
//!
//! Parsing is by hand from a [`serde_json::Value`] rather than by derived serde so
//! that every refusal names the exact field (`pipeline.transcription`,
//! `pipeline.thumbnails.sprite.width`, ...) the way every other 400 of the API does:
//! a [`PipelineError`] carries that path and a sentence, ready for the server's
//! `ApiError::invalid(e.field, e.reason)`. Policy that needs I/O (is the webhook URL
//! reachable and public, is the secret acceptable) stays in the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

/// Why a declaration was refused: the field path (e.g. `pipeline.transcription`) and a
/// sentence. Renders like the API's `invalid_field` errors: `field: reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PipelineError {
    pub field: &'static str,
    pub reason: String,
}

impl PipelineError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A stage that runs on a node after the upload, named as in the `stages` of
/// `GET /v1/api/pipeline/{file_id}` (and in the 503 "no storage nodes available that
/// can run pipeline stage \"transcription\""). Ordered as they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Encoding,
    Transcription,
    Vision,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Encoding => "encoding",
            Stage::Transcription => "transcription",
            Stage::Vision => "vision",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Speech-to-text quality tiers ("Compute / AI": Quality tiers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptionTier {
    /// Highest throughput, lower accuracy.
    Fastest,
    /// The balance; the default.
    #[default]
    Recommended,
    /// Best accuracy, slower.
    Accurate,
}

/// Vision analysis quality tiers ("Compute / AI": Quality tiers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionTier {
    /// Fast scene analysis; the default.
    #[default]
    Standard,
    /// Deeper analysis, slower.
    Hq,
}

impl TranscriptionTier {
    pub const ALL: [Self; 3] = [Self::Fastest, Self::Recommended, Self::Accurate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fastest => "fastest",
            Self::Recommended => "recommended",
            Self::Accurate => "accurate",
        }
    }
}

impl VisionTier {
    pub const ALL: [Self; 2] = [Self::Standard, Self::Hq];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Hq => "hq",
        }
    }
}

impl FromStr for TranscriptionTier {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

impl FromStr for VisionTier {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

/// What a node must advertise (in `RegisterRequest::capabilities`) to take an upload
/// whose pipeline runs a stage: `encode` (ffmpeg present), `transcription:<tier>` and
/// `vision:<tier>` (that tier's model loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Encode,
    Transcription(TranscriptionTier),
    Vision(VisionTier),
}

impl Capability {
    pub fn stage(self) -> Stage {
        match self {
            Capability::Encode => Stage::Encoding,
            Capability::Transcription(_) => Stage::Transcription,
            Capability::Vision(_) => Stage::Vision,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Encode => f.write_str("encode"),
            Capability::Transcription(t) => write!(f, "transcription:{}", t.as_str()),
            Capability::Vision(v) => write!(f, "vision:{}", v.as_str()),
        }
    }
}

/// Reads a node capability or a legacy `capabilities` entry: the advertised form
/// (`encode`, `transcription:accurate`) or a bare stage name, which means its
/// default tier (`transcription` → `transcription:recommended`, `vision` →
/// `vision:standard`; `encoding` is `encode`).
impl FromStr for Capability {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.split_once(':') {
            None => match s {
                "encode" | "encoding" => Ok(Capability::Encode),
                "transcription" => Ok(Capability::Transcription(Default::default())),
                "vision" => Ok(Capability::Vision(Default::default())),
                _ => Err(()),
            },
            Some(("transcription", tier)) => tier.parse().map(Capability::Transcription),
            Some(("vision", tier)) => tier.parse().map(Capability::Vision),
            Some(_) => Err(()),
        }
    }
}

/// An extra rendition of the encode ("Aspect variants"); v1 has only 9:16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AspectRatio {
    /// `"9:16"`: a centre-cropped vertical rendition.
    Vertical9x16,
}

impl AspectRatio {
    pub const ALL: [Self; 1] = [Self::Vertical9x16];

    pub fn as_str(self) -> &'static str {
        match self {
            AspectRatio::Vertical9x16 => "9:16",
        }
    }
}

/// Where the poster frame is taken ("Thumbnails": `poster.at`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PosterAt {
    /// `"N%"` of the duration, 0–100.
    Percent(f64),
    /// `"Ns"` seconds from the start.
    Seconds(f64),
}

impl fmt::Display for PosterAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PosterAt::Percent(p) => write!(f, "{p}%"),
            PosterAt::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

/// Overrides of the thumbnail defaults; a `None` keeps the default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThumbnailSettings {
    /// Default: 10 % of the duration, clamped to 1–10 s.
    pub poster_at: Option<PosterAt>,
    /// Seconds between sprite tiles; default [`ThumbnailSettings::DEFAULT_SPRITE_INTERVAL_SECS`].
    pub sprite_interval_secs: Option<u32>,
    /// Tile width in pixels; default [`ThumbnailSettings::DEFAULT_SPRITE_WIDTH_PX`].
    pub sprite_width_px: Option<u32>,
}

impl ThumbnailSettings {
    pub const DEFAULT_SPRITE_INTERVAL_SECS: u32 = 5;
    pub const DEFAULT_SPRITE_WIDTH_PX: u32 = 160;
    /// Accepted `sprite.interval` values (seconds).
    pub const SPRITE_INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 1..=600;
    /// Accepted `sprite.width` values (pixels).
    pub const SPRITE_WIDTH_RANGE: std::ops::RangeInclusive<u32> = 16..=1920;

    pub fn sprite_interval_secs(&self) -> u32 {
        self.sprite_interval_secs
            .unwrap_or(Self::DEFAULT_SPRITE_INTERVAL_SECS)
    }

    pub fn sprite_width_px(&self) -> u32 {
        self.sprite_width_px
            .unwrap_or(Self::DEFAULT_SPRITE_WIDTH_PX)
    }
}

/// `thumbnails`: on with defaults unless declared otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Thumbnails {
    /// `false`: no poster, no sprites; the job's `thumbnails` stays null.
    Off,
    /// Omitted, `true`, or an object overriding some fields.
    On(ThumbnailSettings),
}

impl Default for Thumbnails {
    fn default() -> Self {
        Thumbnails::On(ThumbnailSettings::default())
    }
}

/// A parsed `pipeline`. [`Default`] is the empty declaration (no stage, thumbnails
/// on with defaults, no per-request webhook).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pipeline {
    /// HLS encoding.
    pub encode: bool,
    pub transcription: Option<TranscriptionTier>,
    pub vision: Option<VisionTier>,
    pub thumbnails: Thumbnails,
    /// Extra renditions of the encode, without duplicates, in declaration order.
    pub aspect_variants: Vec<AspectRatio>,
    /// Per-request webhook target (blank counts as absent). Its reachability and
    /// safety are the server's to check.
    pub webhook_url: Option<String>,
    /// Only with `webhook_url`; its length and alphabet are the server's to check.
    pub webhook_secret: Option<String>,
    /// The legacy capabilities array: stages without tiers. A stage the declaration
    /// also names keeps the declared tier.
    pub capabilities: Vec<Capability>,
}

/// Every key a `pipeline` object may have, for the "unknown field" sentence.
/// `encoding` is the older spelling of `encode`, still accepted.
const FIELDS: &str =
    "encode, transcription, vision, thumbnails, aspect_variants, webhook_url, webhook_secret, capabilities";

impl Pipeline {
    /// Reads the `pipeline` field of an initiate: absent or `null` is the empty
    /// declaration; anything else must be an object of the documented fields.
    pub fn from_json(value: Option<&Value>) -> Result<Self, PipelineError> {
        let map = match value {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(PipelineError::new("pipeline", "must be an object")),
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !FIELDS.split(", ").any(|f| f == k.as_str()) && *k != "encoding")
        {
            return Err(PipelineError::new(
                "pipeline",
                format!("unknown field {unknown:?} (expected {FIELDS})"),
            ));
        }
        let encode = parse_bool(map, "encode", "pipeline.encode")?
            .or(parse_bool(map, "encoding", "pipeline.encoding")?)
            .unwrap_or(false);
        let webhook_url = parse_text(map, "webhook_url", "pipeline.webhook_url")?;
        let webhook_secret = parse_text(map, "webhook_secret", "pipeline.webhook_secret")?;
        if webhook_url.is_none() && webhook_secret.is_some() {
            return Err(PipelineError::new(
                "pipeline.webhook_secret",
                "is only meaningful with pipeline.webhook_url",
            ));
        }
        Ok(Self {
            encode,
            transcription: parse_tier(map, "transcription", "pipeline.transcription")?,
            vision: parse_tier(map, "vision", "pipeline.vision")?,
            thumbnails: parse_thumbnails(map.get("thumbnails"))?,
            aspect_variants: parse_aspect_variants(map.get("aspect_variants"))?,
            webhook_url,
            webhook_secret,
            capabilities: parse_capabilities(map.get("capabilities"), "pipeline.capabilities")?,
        })
    }

    /// Adds a legacy top-level `capabilities` array of an initiate body (outside
    /// `pipeline`); errors name the field `capabilities`.
    pub fn with_legacy_capabilities(
        mut self,
        value: Option<&Value>,
    ) -> Result<Self, PipelineError> {
        for c in parse_capabilities(value, "capabilities")? {
            if !self.capabilities.contains(&c) {
                self.capabilities.push(c);
            }
        }
        Ok(self)
    }

    /// The capabilities the declaration needs, one per stage: the declared tiers,
    /// then legacy entries for stages the declaration leaves out. Aspect variants are
    /// renditions of the encode, so they need the encoder too.
    pub fn requested(&self) -> Vec<Capability> {
        let mut out = Vec::new();
        if self.encode || !self.aspect_variants.is_empty() {
            out.push(Capability::Encode);
        }
        out.extend(self.transcription.map(Capability::Transcription));
        out.extend(self.vision.map(Capability::Vision));
        for c in &self.capabilities {
            if !out.iter().any(|o| o.stage() == c.stage()) {
                out.push(*c);
            }
        }
        out.sort_by_key(|c| c.stage());
        out
    }

    /// What `placement::eligible_originators` needs: the strings a node must
    /// advertise to take this upload (empty: any node).
    pub fn required_capabilities(&self) -> Vec<String> {
        self.requested().iter().map(Capability::to_string).collect()
    }

    /// The stages that will run, in pipeline order.
    pub fn stages(&self) -> Vec<Stage> {
        self.requested()
            .into_iter()
            .map(Capability::stage)
            .collect()
    }

    /// The canonical JSON of this declaration; omits what is the default, so the
    /// empty declaration is `{}`. Parses back to an equal `Pipeline`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.encode {
            m.insert("encode".into(), Value::Bool(true));
        }
        if let Some(t) = self.transcription {
            m.insert("transcription".into(), t.as_str().into());
        }
        if let Some(v) = self.vision {
            m.insert("vision".into(), v.as_str().into());
        }
        match self.thumbnails {
            Thumbnails::Off => {
                m.insert("thumbnails".into(), Value::Bool(false));
            }
            Thumbnails::On(s) if s == ThumbnailSettings::default() => {}
            Thumbnails::On(s) => {
                m.insert("thumbnails".into(), thumbnails_json(&s));
            }
        }
        if !self.aspect_variants.is_empty() {
            let list = self.aspect_variants.iter().map(|a| a.as_str().into());
            m.insert("aspect_variants".into(), Value::Array(list.collect()));
        }
        if let Some(url) = &self.webhook_url {
            m.insert("webhook_url".into(), url.clone().into());
        }
        if let Some(secret) = &self.webhook_secret {
            m.insert("webhook_secret".into(), secret.clone().into());
        }
        if !self.capabilities.is_empty() {
            let list = self.capabilities.iter().map(|c| c.to_string().into());
            m.insert("capabilities".into(), Value::Array(list.collect()));
        }
        Value::Object(m)
    }

    /// What `GET /v1/api/pipeline/{file_id}` may echo as `declared`: [`Self::to_json`]
    /// without the webhook secret, which is never shown back.
    pub fn declared(&self) -> Value {
        let mut v = self.to_json();
        if let Value::Object(m) = &mut v {
            m.remove("webhook_secret");
        }
        v
    }
}

impl TryFrom<Value> for Pipeline {
    type Error = PipelineError;
    fn try_from(value: Value) -> Result<Self, PipelineError> {
        Self::from_json(Some(&value))
    }
}

impl TryFrom<&Value> for Pipeline {
    type Error = PipelineError;
    fn try_from(value: &Value) -> Result<Self, PipelineError> {
        Self::from_json(Some(value))
    }
}

impl Serialize for Pipeline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pipeline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(Some(&value)).map_err(serde::de::Error::custom)
    }
}

fn parse_bool(
    map: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<bool>, PipelineError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(PipelineError::new(field, "must be true or false")),
    }
}

/// The webhook fields' rule since they were introduced: blank is absent. Blank is
/// empty or ASCII whitespace only (`^[ \t\n\f\r]*$` in the OpenAPI document), so the
/// document can state it exactly.
fn parse_text(
    map: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, PipelineError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_whitespace()) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PipelineError::new(field, "must be a string")),
    }
}

/// Both tier enums, so they parse with one function.
trait Tier: Copy + FromStr<Err = ()> {
    /// The accepted names, for error sentences.
    fn names() -> String;
}

impl Tier for TranscriptionTier {
    fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl Tier for VisionTier {
    fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

fn parse_tier<T: Tier>(
    map: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<T>, PipelineError> {
    let expected = T::names();
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|()| {
            PipelineError::new(field, format!("unknown tier {s:?} (expected {expected})"))
        }),
        Some(_) => Err(PipelineError::new(
            field,
            format!("must be a tier name, one of {expected}"),
        )),
    }
}

fn parse_thumbnails(value: Option<&Value>) -> Result<Thumbnails, PipelineError> {
    const FIELD: &str = "pipeline.thumbnails";
    let map = match value {
        None | Some(Value::Null) | Some(Value::Bool(true)) => return Ok(Thumbnails::default()),
        Some(Value::Bool(false)) => return Ok(Thumbnails::Off),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(PipelineError::new(
                FIELD,
                "must be true, false or an object with poster and/or sprite",
            ))
        }
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !["poster", "sprite"].contains(&k.as_str()))
    {
        return Err(PipelineError::new(
            FIELD,
            format!("unknown field {unknown:?} (expected poster, sprite)"),
        ));
    }
    let poster = sub_object(map, "poster", "pipeline.thumbnails.poster", &["at"])?;
    let sprite = sub_object(
        map,
        "sprite",
        "pipeline.thumbnails.sprite",
        &["interval", "width"],
    )?;
    let poster_at = match poster.and_then(|p| p.get("at")) {
        None | Some(Value::Null) => None,
        Some(at) => Some(parse_poster_at(at)?),
    };
    let bounded =
        |key: &str, field: &'static str, range: std::ops::RangeInclusive<u32>, unit| match sprite
            .and_then(|s| s.get(key))
        {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| range.contains(n))
                .map(Some)
                .ok_or_else(|| {
                    PipelineError::new(
                        field,
                        format!(
                            "must be a whole number of {unit} from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        };
    Ok(Thumbnails::On(ThumbnailSettings {
        poster_at,
        sprite_interval_secs: bounded(
            "interval",
            "pipeline.thumbnails.sprite.interval",
            ThumbnailSettings::SPRITE_INTERVAL_RANGE,
            "seconds",
        )?,
        sprite_width_px: bounded(
            "width",
            "pipeline.thumbnails.sprite.width",
            ThumbnailSettings::SPRITE_WIDTH_RANGE,
            "pixels",
        )?,
    }))
}

/// `map[key]` as an object with only `allowed` keys (absent or null: `None`).
fn sub_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
    allowed: &[&str],
) -> Result<Option<&'a Map<String, Value>>, PipelineError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(sub)) => match sub.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(PipelineError::new(
                field,
                format!(
                    "unknown field {unknown:?} (expected {})",
                    allowed.join(", ")
                ),
            )),
            None => Ok(Some(sub)),
        },
        Some(_) => Err(PipelineError::new(field, "must be an object")),
    }
}

/// `"N%"` (0 to 100) or `"Ns"`, N being digits with an optional fraction
/// (`^[0-9]+(\.[0-9]+)?(s|%)$` in the OpenAPI document, plus the 100 % ceiling). Read
/// from the text, not through `f64`, so no rounding lets `100.000…01%` in.
fn parse_poster_at(at: &Value) -> Result<PosterAt, PipelineError> {
    let invalid = || {
        PipelineError::new(
            "pipeline.thumbnails.poster.at",
            "must be a percentage of the duration (\"10%\", 0 to 100) or seconds (\"5s\")",
        )
    };
    let text = at.as_str().ok_or_else(invalid)?;
    let (number, percent) = match (text.strip_suffix('%'), text.strip_suffix('s')) {
        (Some(n), _) => (n, true),
        (None, Some(n)) => (n, false),
        (None, None) => return Err(invalid()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    if !percent {
        // Digits too many for an f64 are still a (silly) number of seconds.
        return Ok(PosterAt::Seconds(value.min(f64::MAX)));
    }
    let whole = whole.trim_start_matches('0');
    let at_most_100 = whole.len() < 3
        || (whole == "100" && fraction.is_none_or(|f| f.bytes().all(|b| b == b'0')));
    if at_most_100 {
        Ok(PosterAt::Percent(value.min(100.0)))
    } else {
        Err(invalid())
    }
}

fn thumbnails_json(s: &ThumbnailSettings) -> Value {
    let mut m = Map::new();
    if let Some(at) = s.poster_at {
        m.insert("poster".into(), serde_json::json!({ "at": at.to_string() }));
    }
    let mut sprite = Map::new();
    if let Some(i) = s.sprite_interval_secs {
        sprite.insert("interval".into(), i.into());
    }
    if let Some(w) = s.sprite_width_px {
        sprite.insert("width".into(), w.into());
    }
    if !sprite.is_empty() {
        m.insert("sprite".into(), Value::Object(sprite));
    }
    Value::Object(m)
}

fn parse_aspect_variants(value: Option<&Value>) -> Result<Vec<AspectRatio>, PipelineError> {
    parse_name_list(
        value,
        "pipeline.aspect_variants",
        "must be a list of ratios such as [\"9:16\"]",
        |s| AspectRatio::ALL.into_iter().find(|a| a.as_str() == s),
        |item| format!("unsupported ratio {item} (only \"9:16\" is accepted)"),
    )
}

fn parse_capabilities(
    value: Option<&Value>,
    field: &'static str,
) -> Result<Vec<Capability>, PipelineError> {
    parse_name_list(
        value,
        field,
        "must be a list of stage names such as [\"encode\", \"transcription\"]",
        |s| s.parse::<Capability>().ok(),
        |item| {
            format!(
                "unknown capability {item} (expected encode, transcription, vision, \
                 transcription:<tier> or vision:<tier>)"
            )
        },
    )
}

/// A JSON list of names read into distinct values in first-seen order: absent or
/// `null` is empty, anything but a list is refused with `not_a_list`, and an item
/// that is not a string `parse` accepts with `bad_item(item)`.
fn parse_name_list<T: PartialEq>(
    value: Option<&Value>,
    field: &'static str,
    not_a_list: &str,
    parse: impl Fn(&str) -> Option<T>,
    bad_item: impl Fn(&Value) -> String,
) -> Result<Vec<T>, PipelineError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(PipelineError::new(field, not_a_list)),
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = item
            .as_str()
            .and_then(&parse)
            .ok_or_else(|| PipelineError::new(field, bad_item(item)))?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}
